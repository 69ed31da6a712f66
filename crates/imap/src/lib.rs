//! imapfleet-imap: the IMAP layer.
//!
//! Everything that speaks IMAP lives here, over `async-imap` (patched in `vendor/async-imap` for
//! APPENDUID and LITERAL+/MULTIAPPEND): connecting (plain, STARTTLS, implicit TLS with rustls),
//! authenticating (LOGIN, PLAIN with an admin identity, XOAUTH2), capabilities, NAMESPACE, LIST with
//! special-use, modified UTF-7 names, SELECT/STATUS, UID FETCH of metadata and bodies, APPEND, STORE
//! and EXPUNGE. It knows nothing about syncing: it hands plain data ([`types`]) to the engine.
//!
//! Invariants:
//! - Mailbox names are sent exactly as the server listed them (`MailboxEntry::raw_name`), or as the
//!   canonical mUTF-7 encoding of a new name: never a re-encoding of a listed name.
//! - Bodies are fetched with `BODY.PEEK[]`: reading host1 never sets `\Seen`.
//! - Secrets are held in [`Secret`] and never appear in `Debug`, logs or errors.

mod conn;
pub mod endpoint;
pub mod error;
pub mod mutf7;
pub mod secret;
pub mod session;
pub mod stats;
pub mod types;
mod wire;

pub use endpoint::{AuthMethod, Endpoint, Security};
pub use error::{ImapError, Result};
pub use secret::Secret;
pub use session::Session;
pub use types::*;
