//! Errors of the IMAP layer, classified so the engine can decide what to do (retry, skip, end the account).

use std::time::Duration;

/// What went wrong talking to one server.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// TCP connect / DNS failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// TLS handshake or certificate verification failed.
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    /// The server refused our credentials (or no usable mechanism).
    #[error("authentication failed for {user}: {reason}")]
    Auth { user: String, reason: String },
    /// Tagged NO for a command. `code` is the response code text without brackets (e.g. `OVERQUOTA`, `LIMIT`).
    #[error("{command} refused: NO {}{text}", code.as_ref().map(|c| format!("[{c}] ")).unwrap_or_default())]
    No {
        command: String,
        code: Option<String>,
        text: String,
    },
    /// Tagged BAD for a command.
    #[error("{command} rejected: BAD {text}")]
    Bad { command: String, text: String },
    /// The server sent something we cannot parse or did not expect.
    #[error("protocol error during {command}: {detail}")]
    Protocol { command: String, detail: String },
    /// A command took longer than the configured timeout.
    #[error("{command} timed out after {secs}s")]
    Timeout { command: String, secs: u64 },
    /// The connection dropped (EOF, reset, BYE).
    #[error("connection lost during {command}: {detail}")]
    ConnectionLost { command: String, detail: String },
    /// A value cannot be sent (e.g. CR/LF in a mailbox name).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl ImapError {
    /// True when the session is unusable and a reconnect may help.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            ImapError::ConnectionLost { .. }
                | ImapError::Timeout { .. }
                | ImapError::Connect { .. }
        )
    }

    /// The server refused because we go too fast, not because of the command itself: a NO/BAD
    /// whose code is `THROTTLED` or whose words name throttling, a rate limit, a backoff or "try
    /// again later" (Office 365: `NO Request is throttled. Suggested Backoff Time: 299609
    /// milliseconds`). The same command may work after a pause (see [`ImapError::backoff_hint`]).
    pub fn is_throttle(&self) -> bool {
        let (code, text) = match self {
            ImapError::No { code, text, .. } => (code.as_deref(), text.as_str()),
            ImapError::Bad { text, .. } => (None, text.as_str()),
            _ => return false,
        };
        if code.is_some_and(|c| c.eq_ignore_ascii_case("THROTTLED")) {
            return true;
        }
        let t = text.to_ascii_lowercase();
        [
            "throttl",
            "backoff",
            "back off",
            "rate limit",
            "too many requests",
            "try again later",
            "slow down",
        ]
        .iter()
        .any(|w| t.contains(w))
    }

    /// How long the server asked us to wait, when its refusal says so in words: "Suggested Backoff
    /// Time: 299609 milliseconds", "try again in 30 seconds", "retry after 2 minutes", "1500ms".
    /// Only for refusals that are about slowing down ([`ImapError::is_throttle`]).
    pub fn backoff_hint(&self) -> Option<Duration> {
        if !self.is_throttle() {
            return None;
        }
        let text = match self {
            ImapError::No { text, .. } | ImapError::Bad { text, .. } => text,
            _ => return None,
        };
        backoff_in_words(text)
    }
}

/// The first "<number> <unit>" (or "<number><unit>") in `text`, unit in ms, s or min.
fn backoff_in_words(text: &str) -> Option<Duration> {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')' | '[' | ']'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let digits: String = w.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            continue;
        }
        let Ok(n) = digits.parse::<u64>() else {
            continue;
        };
        // The unit is glued to the number ("1500ms") or the next word.
        let glued = &w[digits.len()..];
        let unit = if glued.is_empty() {
            words.get(i + 1).map(String::as_str).unwrap_or("")
        } else {
            glued
        };
        let ms = match unit {
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => n,
            "s" | "sec" | "secs" | "second" | "seconds" => n.saturating_mul(1000),
            "min" | "mins" | "minute" | "minutes" => n.saturating_mul(60_000),
            _ => continue,
        };
        return Some(Duration::from_millis(ms));
    }
    None
}

pub type Result<T, E = ImapError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn no(code: Option<&str>, text: &str) -> ImapError {
        ImapError::No {
            command: "APPEND".into(),
            code: code.map(String::from),
            text: text.into(),
        }
    }

    #[test]
    fn throttling_and_backoff_hints() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "Request is throttled. Suggested Backoff Time: 299609 milliseconds",
                Some(299_609),
            ),
            (
                "Request is throttled. Suggested Backoff Time: 12 milliseconds",
                Some(12),
            ),
            ("Throttled; backoff 1500ms", Some(1_500)),
            (
                "Rate limit exceeded, try again later (retry after 2 minutes)",
                Some(120_000),
            ),
            (
                "Too many requests: please try again later in 30 seconds.",
                Some(30_000),
            ),
            ("Account is being throttled", None),
        ];
        for (text, ms) in cases {
            let e = no(None, text);
            assert!(e.is_throttle(), "{text}");
            assert_eq!(e.backoff_hint(), ms.map(Duration::from_millis), "{text}");
        }
        assert!(no(Some("THROTTLED"), "Slow down").is_throttle());
        // Refusals about the message or the mailbox are not throttling, whatever numbers they hold.
        for (code, text) in [
            (
                Some("OVERQUOTA"),
                "Quota exceeded (mailbox for user is full)",
            ),
            (
                Some("LIMIT"),
                "Mail size is larger than the maximum size allowed, 10 seconds",
            ),
            (Some("CANNOT"), "Keyword length too long"),
            (None, "Message too large: 52428800 bytes"),
        ] {
            let e = no(code, text);
            assert!(!e.is_throttle(), "{text}");
            assert_eq!(e.backoff_hint(), None, "{text}");
        }
        let lost = ImapError::ConnectionLost {
            command: "APPEND".into(),
            detail: "throttled 5 seconds".into(),
        };
        assert!(!lost.is_throttle());
    }
}
