//! Message identity: which host1 message is which host2 message, from headers alone.
//!
//! Default key (imapsync's): the normalised `Message-Id` plus the `Received` lines, hashed. `--useheader`
//! replaces the header list. A message with none of the chosen headers is keyed by a stable digest of its
//! whole header block (so it is copied, and never duplicated on a re-run).

use serde::{Deserialize, Serialize};

/// A stable identity digest (hex SHA-256 of the normalised identity headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey(pub String);

/// Which headers make up a message's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Header names, case-insensitive (default `Message-Id`, `Received`).
    pub headers: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig { headers: vec!["Message-Id".into(), "Received".into()] }
    }
}

/// Result of keying a message from the header fields fetched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    Key(IdentityKey),
    /// None of the identity headers is present: fetch the whole header block and call [`key_from_full_header`].
    NeedFullHeader,
}

/// Key a message from the raw bytes of `BODY[HEADER.FIELDS (<cfg.headers>)]`.
pub fn key_from_fields(fields: &[u8], cfg: &IdentityConfig) -> Keyed {
    todo!("{}{cfg:?}", fields.len())
}

/// Key a message from its whole header block (`BODY[HEADER]`): the fallback when no identity header exists.
pub fn key_from_full_header(header: &[u8]) -> IdentityKey {
    todo!("{}", header.len())
}
