//! `--regextrans2 's/x/y/flags'`: Perl-style substitutions with the `regex` crate.
//!
//! Accepted syntax: `s`, any punctuation character as delimiter (`s/a/b/`, `s,a,b,`, `s|a|b|`),
//! pattern, replacement, flags. Flags: `g` (every match, else only the first), `i` (case-insensitive),
//! and `m`, `s`, `x` (the `regex` crate's inline flags). In the pattern, `\<delimiter>` is a
//! literal delimiter. In the replacement: `$1`, `${1}`, `\1` are capture groups, `$&` is the whole
//! match, `${name}` a named group; `\$`, `\\` and `\<delimiter>` are literal characters; a `$` not
//! followed by a group reference is a literal `$`. Perl features the `regex` crate lacks
//! (look-around, back-references inside the pattern, `e`) are refused with an error.

use regex::Regex;

use super::MappingError;

/// One parsed, compiled `s/x/y/flags` expression.
#[derive(Debug, Clone)]
pub struct RegexTrans {
    re: Regex,
    /// Replacement in the `regex` crate's syntax (`${1}`, `$$`).
    replacement: String,
    global: bool,
}

impl RegexTrans {
    /// Parse and compile `expr`.
    pub fn parse(expr: &str) -> Result<RegexTrans, MappingError> {
        let bad = |reason: &str| MappingError::BadRegextrans {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = expr
            .trim()
            .strip_prefix('s')
            .ok_or_else(|| bad("must look like s/pattern/replacement/flags"))?;
        let delim = rest
            .chars()
            .next()
            .ok_or_else(|| bad("missing delimiter after s"))?;
        if delim.is_alphanumeric() || delim.is_whitespace() || delim == '\\' {
            return Err(bad("the delimiter must be a punctuation character"));
        }
        let body = &rest[delim.len_utf8()..];
        let (pattern, after_pattern) =
            split_at_delimiter(body, delim).ok_or_else(|| bad("unterminated pattern"))?;
        let (replacement, flags) = split_at_delimiter(after_pattern, delim)
            .ok_or_else(|| bad("unterminated replacement"))?;
        let (inline, global) =
            parse_flags(flags).map_err(|f| bad(&format!("unsupported flag {f:?}")))?;
        let pattern = format!("{inline}{}", unescape_pattern(pattern, delim));
        let re = Regex::new(&pattern).map_err(|e| bad(&e.to_string()))?;
        Ok(RegexTrans {
            re,
            replacement: convert_replacement(replacement, delim),
            global,
        })
    }

    /// Apply to one name.
    pub fn apply(&self, name: &str) -> String {
        if self.global {
            self.re
                .replace_all(name, self.replacement.as_str())
                .into_owned()
        } else {
            self.re
                .replace(name, self.replacement.as_str())
                .into_owned()
        }
    }
}

/// Split `s` at the first delimiter not escaped by a backslash: (before, after).
fn split_at_delimiter(s: &str, delim: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == delim => return Some((&s[..i], &s[i + delim.len_utf8()..])),
            _ => {}
        }
    }
    None
}

/// Flags to the `regex` crate's inline group (e.g. `(?i)`) and the `g` switch.
fn parse_flags(flags: &str) -> Result<(String, bool), char> {
    let mut inline = String::new();
    let mut global = false;
    for f in flags.chars() {
        match f {
            'g' => global = true,
            'i' | 'm' | 's' | 'x' => inline.push(f),
            other => return Err(other),
        }
    }
    let inline = if inline.is_empty() {
        inline
    } else {
        format!("(?{inline})")
    };
    Ok((inline, global))
}

/// `\<delimiter>` becomes the delimiter, escaped for the `regex` crate if it is a meta character;
/// every other escape is left to the `regex` crate.
fn unescape_pattern(pattern: &str, delim: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(d) if d == delim => out.push_str(&regex::escape(&d.to_string())),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Perl replacement text to the `regex` crate's syntax.
fn convert_replacement(perl: &str, delim: char) -> String {
    let mut out = String::with_capacity(perl.len() + 8);
    let mut chars = perl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => out.push_str(&format!("${{{d}}}")),
                Some('$') => out.push_str("$$"),
                Some(other) if other == delim || other == '\\' => out.push(other),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '$' => out.push_str(&group_reference(&mut chars)),
            other => out.push(other),
        }
    }
    out
}

/// After a `$`: `1`/`12` -> `${1}`/`${12}`, `&` -> `${0}`, `{name}` kept, anything else a literal `$`.
fn group_reference(chars: &mut std::iter::Peekable<std::str::Chars>) -> String {
    match chars.peek() {
        Some(d) if d.is_ascii_digit() => {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            format!("${{{digits}}}")
        }
        Some('&') => {
            chars.next();
            "${0}".to_owned()
        }
        Some('{') => "$".to_owned(),
        _ => "$$".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(expr: &str, name: &str) -> String {
        RegexTrans::parse(expr).unwrap().apply(name)
    }

    #[test]
    fn first_match_or_all_with_g() {
        assert_eq!(apply("s/ /_/", "a b c"), "a_b c");
        assert_eq!(apply("s/ /_/g", "a b c"), "a_b_c");
    }

    #[test]
    fn case_insensitive_with_i() {
        assert_eq!(apply("s/^inbox\\.//i", "INBOX.Sent"), "Sent");
        assert_eq!(apply("s/^inbox\\.//", "INBOX.Sent"), "INBOX.Sent");
    }

    #[test]
    fn backreferences_perl_and_dollar_style() {
        assert_eq!(apply("s/^(\\w+)\\.(\\w+)$/$2-$1/", "Old.Mail"), "Mail-Old");
        assert_eq!(
            apply("s/^(\\w+)\\.(\\w+)$/\\2-\\1/", "Old.Mail"),
            "Mail-Old"
        );
        // `$1x` is group 1 then "x" (Perl), not a group named "1x".
        assert_eq!(apply("s/(a)/$1x/", "a"), "ax");
        assert_eq!(apply("s/(?P<w>b)/<${w}>/", "abc"), "a<b>c");
        assert_eq!(apply("s/b/[$&]/", "abc"), "a[b]c");
    }

    #[test]
    fn other_delimiters_and_escaped_delimiters() {
        assert_eq!(apply("s,/,.,g", "a/b/c"), "a.b.c");
        assert_eq!(apply("s/\\//./g", "a/b"), "a.b");
        assert_eq!(apply("s/a/\\//", "xa"), "x/");
        assert_eq!(apply("s|a\\|b|c|", "a|b"), "c");
        assert_eq!(apply("s#^#Archive/#", "2019"), "Archive/2019");
    }

    #[test]
    fn dollar_signs_in_the_replacement_are_literal() {
        assert_eq!(apply("s/x/\\$/", "x"), "$");
        assert_eq!(apply("s/x/a$ b/", "x"), "a$ b");
    }

    #[test]
    fn bad_expressions_are_refused() {
        for expr in [
            "",
            "x/a/b/",
            "s",
            "s/a/b",
            "s/a",
            "s/(/x/",
            "s/a/b/q",
            "s/a/b/e",
            "saba",
            "s/(?=a)/b/",
        ] {
            assert!(
                matches!(
                    RegexTrans::parse(expr),
                    Err(MappingError::BadRegextrans { .. })
                ),
                "{expr:?} should be refused"
            );
        }
    }
}
