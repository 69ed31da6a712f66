//! Transfer encodings for generated mail: base64 in 76-column lines, quoted-printable, RFC 2047
//! encoded-words and RFC 2231 parameters. All output uses CRLF line ends.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Base64 of `data` in lines of 76 characters, each ended by CRLF.
pub fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    let mut buf = String::with_capacity(80);
    for chunk in data.chunks(57) {
        buf.clear();
        STANDARD.encode_string(chunk, &mut buf);
        out.extend_from_slice(buf.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Bytes of input that `base64_lines` turns into about `encoded` bytes of output.
pub fn base64_input_for(encoded: usize) -> usize {
    encoded / 78 * 57
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Quoted-printable of one text line (without its line end), with soft breaks at 76 columns,
/// followed by CRLF.
pub fn qp_line(line: &[u8], out: &mut Vec<u8>) {
    let mut col = 0usize;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
        let width = if literal { 1 } else { 3 };
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.push(b'=');
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        col += width;
    }
    out.extend_from_slice(b"\r\n");
}

/// `=?UTF-8?B?...?=` words (each at most 75 characters), separated by CRLF SP (folded).
pub fn encoded_words_b(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in text.chars() {
        if chunk.len() + ch.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// `=?CHARSET?Q?...?=` words for text already in `charset`'s bytes.
pub fn encoded_words_q(charset: &str, bytes: &[u8]) -> String {
    let mut words = Vec::new();
    let mut cur = String::new();
    let limit = 75 - charset.len() - 7;
    let mut i = 0;
    while i < bytes.len() {
        // Keep UTF-8 sequences within one word.
        let b = bytes[i];
        let seq = if charset.eq_ignore_ascii_case("UTF-8") && b >= 0xC0 {
            if b >= 0xF0 {
                4
            } else if b >= 0xE0 {
                3
            } else {
                2
            }
        } else {
            1
        };
        let mut piece = String::new();
        for &c in &bytes[i..(i + seq).min(bytes.len())] {
            if c == b' ' {
                piece.push('_');
            } else if c.is_ascii_alphanumeric() || b"!*+-/".contains(&c) {
                piece.push(c as char);
            } else {
                piece.push('=');
                piece.push(HEX[(c >> 4) as usize] as char);
                piece.push(HEX[(c & 15) as usize] as char);
            }
        }
        if cur.len() + piece.len() > limit {
            words.push(format!("=?{charset}?Q?{cur}?="));
            cur.clear();
        }
        cur.push_str(&piece);
        i += seq;
    }
    if !cur.is_empty() || words.is_empty() {
        words.push(format!("=?{charset}?Q?{cur}?="));
    }
    words.join("\r\n ")
}

/// RFC 2231 extended parameter value: `UTF-8''percent%20encoded`.
pub fn rfc2231_value(text: &str) -> String {
    let mut out = String::from("UTF-8''");
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Latin-1 bytes of `text` (characters above U+00FF become `?`).
pub fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            if (c as u32) < 256 {
                c as u32 as u8
            } else {
                b'?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_soft_breaks_and_escapes() {
        let mut out = Vec::new();
        qp_line("Grüße = 100% ".as_bytes(), &mut out);
        assert_eq!(out, b"Gr=C3=BC=C3=9Fe =3D 100%=20\r\n");
        let mut long = Vec::new();
        qp_line(&[b'a'; 200], &mut long);
        for l in long.split(|b| *b == b'\n') {
            assert!(l.len() <= 77);
        }
    }

    #[test]
    fn words_are_short() {
        let w = encoded_words_b("Отправленные сообщения за последний квартал и ещё немного текста");
        for part in w.split("\r\n ") {
            assert!(part.len() <= 75, "{part}");
        }
        let q = encoded_words_q(
            "ISO-8859-1",
            &latin1("Grüße aus München, schöne Tage und ein langer Betreff"),
        );
        for part in q.split("\r\n ") {
            assert!(part.len() <= 75, "{part}");
        }
        assert_eq!(rfc2231_value("März 1.pdf"), "UTF-8''M%C3%A4rz%201.pdf");
    }
}
