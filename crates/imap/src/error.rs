//! Errors of the IMAP layer, classified so the engine can decide what to do (retry, skip, end the account).

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
}

pub type Result<T, E = ImapError> = std::result::Result<T, E>;
