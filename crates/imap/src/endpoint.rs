//! How to reach and log in to one server (host1 or host2).

use std::path::PathBuf;
use std::time::Duration;

use crate::Secret;

/// Transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS (`--ssl1`), usually port 993.
    Tls,
    /// STARTTLS after the greeting (`--tls1`); the default.
    StartTls,
    /// No TLS at all (`--notls1`): only when asked for.
    Plain,
}

/// Authentication mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// AUTHENTICATE PLAIN when offered, else LOGIN.
    Auto,
    Login,
    /// SASL PLAIN; `authuser` (if any) is the authentication identity, `user` the authorization identity.
    Plain,
    /// XOAUTH2 with an access token read from this file at every connect.
    XOAuth2 {
        token_file: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Label for messages and errors: "host1" or "host2".
    pub label: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: String,
    /// Admin identity for SASL PLAIN (`--authuser1`): authenticate as this user, act as `user`.
    pub authuser: Option<String>,
    pub password: Secret,
    pub auth: AuthMethod,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (loudly).
    pub insecure: bool,
    /// Per-command timeout.
    pub timeout: Duration,
}

impl Endpoint {
    /// `host:port`
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
