//! The bytes of one message, from its plan and its own random stream.

use chrono::{DateTime, Duration, FixedOffset};

use crate::encode::{
    base64_input_for, base64_lines, encoded_words_b, encoded_words_q, latin1, qp_line,
    rfc2231_value,
};
use crate::rng::Rng;
use crate::spec::{EightBit, IdMode, Kind, Plan, Role, STREAM_BODY, STREAM_MSGID};
use crate::words::{Lang, MAILERS, MTAS, PEOPLE};

const OWNER: (&str, &str, &str) = ("Max Mustermann", "max.mustermann", "example.org");

/// The Message-Id of message `g` (with angle brackets), a pure function of (seed, g).
pub fn message_id(seed: u64, g: usize) -> String {
    let mut r = Rng::derive(seed, STREAM_MSGID, g as u64);
    match r.below(4) {
        0 => format!(
            "<{:016x}.{:06}@mail.example.com>",
            r.next_u64(),
            r.below(1_000_000)
        ),
        1 => {
            let mut b = [0u8; 24];
            r.fill_bytes(&mut b);
            let s: String = b
                .iter()
                .map(|x| B64URL[(*x & 63) as usize] as char)
                .collect();
            format!("<CA+{s}@mail.gmail.example>")
        }
        2 => format!(
            "<AM{}PR{:02}MB{:04}{:012X}@AM{}PR{:02}MB{:04}.eurprd{:02}.prod.outlook.example>",
            r.below(9),
            r.below(99),
            r.below(9999),
            r.next_u64() >> 16,
            r.below(9),
            r.below(99),
            r.below(9999),
            r.below(99)
        ),
        _ => format!(
            "<{}.{}.{}@{}.example.de>",
            r.below(1 << 31),
            r.below(100_000),
            g,
            ["mx", "webmail", "app"][r.below(3) as usize]
        ),
    }
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Person {
    name: &'static str,
    local: &'static str,
    domain: &'static str,
    lang: Lang,
}

fn person(r: &mut Rng) -> Person {
    let (name, local, domain, lang) = *r.pick(PEOPLE);
    Person {
        name,
        local,
        domain,
        lang,
    }
}

fn owner() -> Person {
    Person {
        name: OWNER.0,
        local: OWNER.1,
        domain: OWNER.2,
        lang: Lang::En,
    }
}

fn rfc2822(d: &DateTime<FixedOffset>) -> String {
    d.format("%a, %-d %b %Y %H:%M:%S %z").to_string()
}

/// One header field line (or folded lines), CRLF-terminated.
fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn quoted(name: &str) -> String {
    let special = name.bytes().any(|b| b"()<>[]:;@\\,.\"".contains(&b));
    if special {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_string()
    }
}

/// A header phrase (display name or subject) in the chosen representation.
fn phrase(text: &str, eight: Option<EightBit>, r: &mut Rng, display_name: bool) -> Vec<u8> {
    if text.is_ascii() {
        return if display_name {
            quoted(text).into_bytes()
        } else {
            text.as_bytes().to_vec()
        };
    }
    match eight {
        Some(EightBit::Utf8) => {
            if display_name {
                format!("\"{text}\"").into_bytes()
            } else {
                text.as_bytes().to_vec()
            }
        }
        Some(EightBit::Latin1) => {
            let mut v = Vec::new();
            if display_name {
                v.push(b'"');
            }
            v.extend(latin1(text));
            if display_name {
                v.push(b'"');
            }
            v
        }
        None => {
            let latin = text.chars().all(|c| (c as u32) < 256);
            match r.below(3) {
                0 if latin => encoded_words_q("ISO-8859-1", &latin1(text)).into_bytes(),
                1 => encoded_words_q("UTF-8", text.as_bytes()).into_bytes(),
                _ => encoded_words_b(text).into_bytes(),
            }
        }
    }
}

fn mailbox(p: &Person, eight: Option<EightBit>, r: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    if !p.name.is_empty() {
        v.extend(phrase(p.name, eight, r, true));
        v.push(b' ');
    }
    v.extend_from_slice(format!("<{}@{}>", p.local, p.domain).as_bytes());
    v
}

fn ip(r: &mut Rng) -> String {
    match r.below(4) {
        0 => format!("IPv6:2001:db8:{:x}::{:x}", r.below(0xffff), r.below(0xffff)),
        1 => format!("198.51.100.{}", r.range(1, 254)),
        2 => format!("203.0.113.{}", r.range(1, 254)),
        _ => format!("192.0.2.{}", r.range(1, 254)),
    }
}

fn queue_id(r: &mut Rng) -> String {
    (0..10)
        .map(|_| b"0123456789ABCDEF"[r.below(16) as usize] as char)
        .collect()
}

fn subject_text(r: &mut Rng, lang: Lang, need_non_ascii: bool) -> String {
    let pool: Vec<&str> = lang
        .subjects()
        .iter()
        .copied()
        .filter(|s| !need_non_ascii || !s.is_ascii())
        .collect();
    let pool = if pool.is_empty() {
        lang.subjects().to_vec()
    } else {
        pool
    };
    let t = *r.pick(&pool);
    t.replace("{n}", &r.range(100, 99_999).to_string())
        .replace("{y}", &r.range(2009, 2025).to_string())
}

/// Endless lines of plain text in one language (no line ends), wrapped near 72 columns.
struct TextGen<'a> {
    r: &'a mut Rng,
    lang: Lang,
    line_in_par: u32,
    par_len: u32,
}

impl<'a> TextGen<'a> {
    fn new(r: &'a mut Rng, lang: Lang) -> Self {
        TextGen {
            r,
            lang,
            line_in_par: 0,
            par_len: 3,
        }
    }

    fn line(&mut self) -> String {
        if self.line_in_par >= self.par_len {
            self.line_in_par = 0;
            self.par_len = self.r.range(2, 8) as u32;
            return String::new();
        }
        self.line_in_par += 1;
        let words = self.lang.words();
        let max_chars = if self.lang == Lang::Ja { 34 } else { 72 };
        let mut s = String::new();
        let mut chars = 0;
        loop {
            let w = *self.r.pick(words);
            let wc = w.chars().count();
            let sep = if self.lang.spaced() && !s.is_empty() {
                1
            } else {
                0
            };
            if chars + sep + wc > max_chars && !s.is_empty() {
                break;
            }
            if sep == 1 {
                s.push(' ');
            }
            s.push_str(w);
            chars += sep + wc;
        }
        if self.lang.spaced() && self.r.chance(300) {
            s.push('.');
        }
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cte {
    SevenBit,
    EightBit,
    Qp,
    Base64,
}

impl Cte {
    fn name(self) -> &'static str {
        match self {
            Cte::SevenBit => "7bit",
            Cte::EightBit => "8bit",
            Cte::Qp => "quoted-printable",
            Cte::Base64 => "base64",
        }
    }
}

/// Choose charset and transfer encoding for text in `lang`.
fn text_encoding(r: &mut Rng, lang: Lang) -> (&'static str, Cte) {
    match lang {
        Lang::En => {
            if r.chance(700) {
                ("us-ascii", Cte::SevenBit)
            } else {
                ("utf-8", Cte::Qp)
            }
        }
        Lang::De | Lang::Fr => match r.below(4) {
            0 | 1 => ("utf-8", Cte::Qp),
            2 => ("utf-8", Cte::EightBit),
            _ => ("iso-8859-1", Cte::Qp),
        },
        Lang::Ru | Lang::Ja => {
            if r.chance(600) {
                ("utf-8", Cte::Base64)
            } else {
                ("utf-8", Cte::EightBit)
            }
        }
    }
}

fn charset_bytes(charset: &str, s: &str) -> Vec<u8> {
    if charset == "iso-8859-1" {
        latin1(s)
    } else {
        s.as_bytes().to_vec()
    }
}

/// Text lines (greeting, paragraphs, closing, signature) encoded until about `budget` bytes.
fn text_body(
    r: &mut Rng,
    lang: Lang,
    greet: &str,
    signer: &str,
    (charset, cte): (&str, Cte),
    budget: usize,
    out: &mut Vec<u8>,
) {
    let first = greet.split(' ').next().unwrap_or("");
    let head = match lang {
        Lang::Ja => vec![
            format!("{first} 様"),
            lang.greeting().to_string(),
            String::new(),
        ],
        Lang::Ru => vec![
            format!("{} {first}!", lang.greeting().trim_end_matches(',')),
            String::new(),
        ],
        _ if first.is_empty() => vec![format!("{},", lang.greeting()), String::new()],
        _ => vec![format!("{} {first},", lang.greeting()), String::new()],
    };
    let tail = [
        String::new(),
        lang.closing().to_string(),
        signer.to_string(),
        String::new(),
        "-- ".to_string(),
        format!("{signer} | +49 30 1234567"),
    ];
    let start = out.len();
    match cte {
        Cte::Base64 => {
            let raw_budget = base64_input_for(budget);
            let mut raw = Vec::with_capacity(raw_budget + 200);
            for l in &head {
                raw.extend(charset_bytes(charset, l));
                raw.extend_from_slice(b"\r\n");
            }
            let mut g = TextGen::new(r, lang);
            while raw.len() + 120 < raw_budget {
                raw.extend(charset_bytes(charset, &g.line()));
                raw.extend_from_slice(b"\r\n");
            }
            for l in &tail {
                raw.extend(charset_bytes(charset, l));
                raw.extend_from_slice(b"\r\n");
            }
            base64_lines(&raw, out);
        }
        _ => {
            let emit = |line: &str, out: &mut Vec<u8>| {
                let bytes = charset_bytes(charset, line);
                if cte == Cte::Qp {
                    qp_line(&bytes, out);
                } else {
                    out.extend_from_slice(&bytes);
                    out.extend_from_slice(b"\r\n");
                }
            };
            for l in &head {
                emit(l, out);
            }
            let mut g = TextGen::new(r, lang);
            while out.len() - start + 120 < budget {
                let l = g.line();
                emit(&l, out);
            }
            for l in &tail {
                emit(l, out);
            }
        }
    }
}

fn html_body(r: &mut Rng, lang: Lang, budget: usize, out: &mut Vec<u8>) {
    let start = out.len();
    qp_line(b"<!DOCTYPE html>", out);
    qp_line(b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>", out);
    qp_line(
        b"<body style=\"font-family: Calibri, Arial, sans-serif; font-size: 11pt;\">",
        out,
    );
    let mut g = TextGen::new(r, lang);
    qp_line(b"<p>", out);
    while out.len() - start + 100 < budget {
        let l = g.line();
        if l.is_empty() {
            qp_line(b"</p><p>", out);
        } else {
            qp_line(l.as_bytes(), out);
        }
    }
    qp_line(b"</p>", out);
    qp_line(b"</body></html>", out);
}

struct Attachment {
    ctype: &'static str,
    magic: &'static [u8],
    name: String,
}

fn attachment_kind(r: &mut Rng) -> Attachment {
    let n = r.range(1, 9999);
    let y = r.range(2009, 2025);
    match r.below(7) {
        0 => Attachment {
            ctype: "application/pdf",
            magic: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
            name: format!("Rechnung März {n}.pdf"),
        },
        1 => Attachment {
            ctype: "application/pdf",
            magic: b"%PDF-1.4\n",
            name: format!("report-{y}-Q{}.pdf", r.range(1, 4)),
        },
        2 => Attachment {
            ctype: "image/jpeg",
            magic: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
            name: format!("IMG_{n:04}.JPG"),
        },
        3 => Attachment {
            ctype: "image/png",
            magic: b"\x89PNG\r\n\x1a\n",
            name: "写真.png".to_string(),
        },
        4 => Attachment {
            ctype: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            magic: b"PK\x03\x04\x14\x00\x06\x00",
            name: format!("Отчёт {y}.xlsx"),
        },
        5 => Attachment {
            ctype: "application/zip",
            magic: b"PK\x03\x04\x0a\x00",
            name: format!("logs & traces {n}.zip"),
        },
        _ => Attachment {
            ctype: "text/csv",
            magic: b"",
            name: format!("export_{y}.csv"),
        },
    }
}

/// An attachment part (headers + body) of about `budget` bytes.
fn attachment_part(r: &mut Rng, budget: usize, out: &mut Vec<u8>) {
    let a = attachment_kind(r);
    let ascii_name = a.name.is_ascii();
    if ascii_name {
        header(
            out,
            "Content-Type",
            format!("{}; name=\"{}\"", a.ctype, a.name).as_bytes(),
        );
    } else {
        // Outlook style: RFC 2047 in name=, RFC 2231 in filename*=.
        header(
            out,
            "Content-Type",
            format!(
                "{};\r\n\tname=\"{}\"",
                a.ctype,
                encoded_words_b(&a.name).replace("\r\n ", " ")
            )
            .as_bytes(),
        );
    }
    let start = out.len();
    if a.ctype == "text/csv" && r.chance(500) {
        header(
            out,
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", a.name).as_bytes(),
        );
        header(out, "Content-Transfer-Encoding", b"7bit");
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(b"id;date;amount;comment\r\n");
        let mut i = 1;
        while out.len() - start < budget {
            out.extend_from_slice(
                format!(
                    "{i};2024-{:02}-{:02};{}.{:02};\"item {}\"\r\n",
                    r.range(1, 12),
                    r.range(1, 28),
                    r.below(10_000),
                    r.below(100),
                    r.below(1000)
                )
                .as_bytes(),
            );
            i += 1;
        }
        return;
    }
    if ascii_name {
        header(
            out,
            "Content-Disposition",
            format!(
                "attachment; filename=\"{}\"; size={}",
                a.name,
                base64_input_for(budget)
            )
            .as_bytes(),
        );
    } else {
        header(
            out,
            "Content-Disposition",
            format!("attachment;\r\n\tfilename*={}", rfc2231_value(&a.name)).as_bytes(),
        );
    }
    header(out, "Content-Transfer-Encoding", b"base64");
    if r.chance(300) {
        header(
            out,
            "Content-ID",
            format!(
                "<part{}.{:08x}@example.com>",
                r.below(10),
                r.next_u64() as u32
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    let mut data = vec![
        0u8;
        base64_input_for(budget.saturating_sub(out.len() - start))
            .max(a.magic.len() + 16)
    ];
    r.fill_bytes(&mut data);
    data[..a.magic.len()].copy_from_slice(a.magic);
    if a.ctype == "text/csv" {
        for b in data.iter_mut() {
            *b = b"0123456789;,abcdef\n"[(*b % 19) as usize];
        }
    }
    base64_lines(&data, out);
}

fn boundary(r: &mut Rng) -> String {
    match r.below(3) {
        0 => format!(
            "----=_Part_{}_{}.{}",
            r.below(100_000),
            r.below(1 << 30),
            r.below(1 << 40)
        ),
        1 => format!("_000_{:016X}EXAMPLE_", r.next_u64()),
        _ => format!("=-{:012x}", r.next_u64() >> 16),
    }
}

fn text_part(r: &mut Rng, lang: Lang, greet: &str, signer: &str, budget: usize, out: &mut Vec<u8>) {
    let (charset, cte) = text_encoding(r, lang);
    let ct = if r.chance(300) {
        format!("text/plain; charset={charset}; format=flowed")
    } else {
        format!("text/plain; charset=\"{charset}\"")
    };
    header(out, "Content-Type", ct.as_bytes());
    header(out, "Content-Transfer-Encoding", cte.name().as_bytes());
    out.extend_from_slice(b"\r\n");
    text_body(r, lang, greet, signer, (charset, cte), budget, out);
}

fn alternative(
    r: &mut Rng,
    lang: Lang,
    greet: &str,
    signer: &str,
    budget: usize,
    out: &mut Vec<u8>,
) -> String {
    // Returns the Content-Type value; writes the body.
    let b = boundary(r);
    let plain = budget * 2 / 5;
    let html = budget.saturating_sub(plain + 300);
    out.extend_from_slice(format!("--{b}\r\n").as_bytes());
    text_part(r, lang, greet, signer, plain, out);
    out.extend_from_slice(format!("--{b}\r\n").as_bytes());
    header(out, "Content-Type", b"text/html; charset=\"utf-8\"");
    header(out, "Content-Transfer-Encoding", b"quoted-printable");
    out.extend_from_slice(b"\r\n");
    html_body(r, lang, html, out);
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    format!("multipart/alternative;\r\n\tboundary=\"{b}\"")
}

/// Render message `g` (never an exact copy: the caller resolves those).
pub fn render(plan: &Plan, g: usize) -> Vec<u8> {
    let m = &plan.messages[g];
    let role = plan.folders[m.folder].role;
    let mut r = Rng::derive(plan.seed, STREAM_BODY, g as u64);
    let outgoing = matches!(role, Role::Sent | Role::Drafts);
    let other = person(&mut r);
    let (from, to) = if outgoing {
        (owner(), other)
    } else {
        (other, owner())
    };
    let mut lang = if outgoing { to.lang } else { from.lang };
    if r.chance(150) {
        lang = *r.pick(&[Lang::En, Lang::De, Lang::Fr, Lang::Ru, Lang::Ja]);
    }
    match m.eight_bit {
        Some(EightBit::Latin1) if !matches!(lang, Lang::De | Lang::Fr) => lang = Lang::De,
        Some(EightBit::Utf8) if lang == Lang::En => {
            lang = *r.pick(&[Lang::De, Lang::Ru, Lang::Ja, Lang::Fr])
        }
        _ => {}
    }
    let eight = m.eight_bit;

    let idate = m.internaldate;
    let sent_zone = if r.chance(500) {
        *idate.offset()
    } else {
        FixedOffset::east_opt([0, 3600, 7200, -18000, 32400, 19800, -28800][r.below(7) as usize])
            .expect("zone")
    };
    let date = (idate - Duration::seconds(r.range_i64(3, 900))).with_timezone(&sent_zone);

    let mut h = Vec::with_capacity(2048);
    if role != Role::Drafts {
        header(
            &mut h,
            "Return-Path",
            format!("<{}@{}>", from.local, from.domain).as_bytes(),
        );
        let hops = r.range(1, 4);
        let mut t = idate;
        for hop in 0..hops {
            let by = if hop == 0 {
                format!("mx{}.example.org", r.range(1, 3))
            } else {
                format!("relay{}.{}", r.range(1, 20), from.domain)
            };
            let fromhost = format!(
                "{}.{}",
                ["mail-out", "smtp", "mta", "out"][r.below(4) as usize],
                from.domain
            );
            let v = if hop + 1 == hops && r.chance(400) {
                format!(
                    "by {by} with SMTP id {}\r\n\tfor <{}@{}>; {}",
                    queue_id(&mut r),
                    to.local,
                    to.domain,
                    rfc2822(&t)
                )
            } else {
                format!(
                    "from {fromhost} ({fromhost} [{}])\r\n\tby {by} ({}) with ESMTPS id {}\r\n\tfor <{}@{}>; {}",
                    ip(&mut r),
                    r.pick(MTAS),
                    queue_id(&mut r),
                    to.local,
                    to.domain,
                    rfc2822(&t)
                )
            };
            header(&mut h, "Received", v.as_bytes());
            t -= Duration::seconds(r.range_i64(1, 40));
        }
        if r.chance(300) {
            let mut sig = vec![0u8; 256];
            r.fill_bytes(&mut sig);
            let mut b = Vec::new();
            base64_lines(&sig, &mut b);
            let b: String = String::from_utf8(b)
                .expect("ascii")
                .replace("\r\n", "\r\n\t ");
            let b = b.trim_end();
            header(
                &mut h,
                "DKIM-Signature",
                format!(
                    "v=1; a=rsa-sha256; c=relaxed/relaxed; d={};\r\n\ts=sel{}; t={}; h=from:to:subject:date:message-id;\r\n\tbh={}=;\r\n\tb={}",
                    from.domain,
                    r.range(1, 9),
                    idate.timestamp(),
                    queue_id(&mut r),
                    b
                )
                .as_bytes(),
            );
        }
    }
    match m.id {
        IdMode::Own => header(&mut h, "Message-ID", message_id(plan.seed, g).as_bytes()),
        IdMode::SameIdAs(s) => header(&mut h, "Message-ID", message_id(plan.seed, s).as_bytes()),
        IdMode::Missing | IdMode::ExactCopyOf(_) => {}
    }
    let mut d = rfc2822(&date);
    if date.offset().local_minus_utc() == 3600 && r.chance(300) {
        d.push_str(" (CET)");
    }
    header(&mut h, "Date", d.as_bytes());
    header(&mut h, "From", &mailbox(&from, eight, &mut r));
    let mut tov = mailbox(&to, eight, &mut r);
    for _ in 0..r.weighted(&[70, 20, 10]) {
        tov.extend_from_slice(b",\r\n\t");
        let p = person(&mut r);
        tov.extend(mailbox(&p, None, &mut r));
    }
    header(&mut h, "To", &tov);
    if r.chance(150) {
        let p = person(&mut r);
        header(&mut h, "Cc", &mailbox(&p, None, &mut r));
    }
    let reply = r.chance(250);
    let subj = subject_text(&mut r, lang, eight.is_some());
    let prefix: &[u8] = if reply {
        if lang == Lang::De {
            b"AW: "
        } else {
            b"Re: "
        }
    } else if r.chance(50) {
        b"Fwd: "
    } else {
        b""
    };
    let mut sv = prefix.to_vec();
    sv.extend(phrase(&subj, eight, &mut r, false));
    header(&mut h, "Subject", &sv);
    if reply {
        let parent = message_id(plan.seed ^ 0x5EED, g);
        let mut refs = String::new();
        for i in 0..r.below(6) {
            refs.push_str(&message_id(plan.seed ^ 0xF00D, g * 8 + i as usize));
            refs.push_str("\r\n ");
        }
        refs.push_str(&parent);
        header(&mut h, "In-Reply-To", parent.as_bytes());
        header(&mut h, "References", refs.as_bytes());
    }
    header(&mut h, "MIME-Version", b"1.0");
    if r.chance(600) {
        header(
            &mut h,
            if r.chance(500) {
                "X-Mailer"
            } else {
                "User-Agent"
            },
            r.pick(MAILERS).as_bytes(),
        );
    }
    if role == Role::Lists {
        header(
            &mut h,
            "List-Id",
            b"Rust & Go weekly <rust-go.lists.example.org>",
        );
        header(
            &mut h,
            "List-Unsubscribe",
            b"<mailto:unsubscribe@lists.example.org>, <https://lists.example.org/u?id=1>",
        );
        header(&mut h, "Precedence", b"list");
    }
    if role == Role::Junk {
        header(
            &mut h,
            "X-Spam-Status",
            format!("Yes, score={}.{} required=5.0", r.range(5, 30), r.below(10)).as_bytes(),
        );
    }

    let signer = if outgoing { OWNER.0 } else { from.name };
    let greet = to.name;
    let budget = (m.size as usize).saturating_sub(h.len() + 160);
    let mut body = Vec::with_capacity(budget + 1024);
    match m.kind {
        Kind::Plain => {
            let (charset, cte) = text_encoding(&mut r, lang);
            header(
                &mut h,
                "Content-Type",
                format!("text/plain; charset=\"{charset}\"").as_bytes(),
            );
            header(&mut h, "Content-Transfer-Encoding", cte.name().as_bytes());
            text_body(
                &mut r,
                lang,
                greet,
                signer,
                (charset, cte),
                budget,
                &mut body,
            );
        }
        Kind::Alternative => {
            let ct = alternative(&mut r, lang, greet, signer, budget, &mut body);
            header(&mut h, "Content-Type", ct.as_bytes());
        }
        Kind::Attachments | Kind::Big => {
            let b = boundary(&mut r);
            header(
                &mut h,
                "Content-Type",
                format!("multipart/mixed;\r\n\tboundary=\"{b}\"").as_bytes(),
            );
            body.extend_from_slice(b"This is a multi-part message in MIME format.\r\n\r\n");
            let text_budget = if m.kind == Kind::Big {
                r.range(600, 3000) as usize
            } else {
                (budget / 5).clamp(400, 6000)
            };
            body.extend_from_slice(format!("--{b}\r\n").as_bytes());
            if r.chance(500) {
                let mut inner = Vec::new();
                let ct = alternative(&mut r, lang, greet, signer, text_budget, &mut inner);
                header(&mut body, "Content-Type", ct.as_bytes());
                body.extend_from_slice(b"\r\n");
                body.extend(inner);
            } else {
                text_part(&mut r, lang, greet, signer, text_budget, &mut body);
            }
            let rest = budget.saturating_sub(body.len() + 100);
            let parts = if m.kind == Kind::Big || rest < 4000 {
                1
            } else {
                r.range(1, 2) as usize
            };
            for i in 0..parts {
                body.extend_from_slice(format!("--{b}\r\n").as_bytes());
                let share = if i + 1 == parts {
                    budget.saturating_sub(body.len() + 60)
                } else {
                    rest / 2
                };
                attachment_part(&mut r, share, &mut body);
            }
            body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        }
    }
    h.extend_from_slice(b"\r\n");
    h.extend(body);
    h
}
