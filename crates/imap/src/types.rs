//! Plain data the IMAP layer hands to the engine. No I/O here.

use chrono::{DateTime, FixedOffset};

/// Capabilities as the server announced them (upper-cased atoms, e.g. `UIDPLUS`, `AUTH=PLAIN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub atoms: Vec<String>,
}

impl Capabilities {
    /// Case-insensitive test for one capability atom.
    pub fn has(&self, cap: &str) -> bool {
        self.atoms.iter().any(|a| a.eq_ignore_ascii_case(cap))
    }
}

/// One namespace of the NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Prefix as the server sends it (already mUTF-7 encoded), e.g. `INBOX.` or ``.
    pub prefix: String,
    pub delimiter: Option<char>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub personal: Vec<Namespace>,
    pub other: Vec<Namespace>,
    pub shared: Vec<Namespace>,
}

/// RFC 6154 special-use attribute of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

/// One LIST entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The name exactly as the server sent it (mUTF-7). Always send this form back.
    pub raw_name: String,
    /// The decoded, human name (UTF-8). Equals `raw_name` when it is not valid mUTF-7.
    pub name: String,
    pub delimiter: Option<char>,
    /// `\Noselect` or `\NonExistent`.
    pub noselect: bool,
    /// `\HasChildren`
    pub has_children: bool,
    pub special_use: Option<SpecialUse>,
    /// All attributes as sent (e.g. `\HasNoChildren`, `\Sent`).
    pub attributes: Vec<String>,
}

/// What SELECT / EXAMINE told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectInfo {
    pub exists: u32,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    /// FLAGS list.
    pub flags: Vec<String>,
    /// PERMANENTFLAGS list (may contain `\*`: new keywords allowed). `None` when the server
    /// sent no PERMANENTFLAGS (RFC 3501: then all FLAGS are permanent).
    pub permanent_flags: Option<Vec<String>>,
    pub read_only: bool,
}

/// What STATUS told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusInfo {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub unseen: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// Metadata of one message, from `UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    /// Flags as sent (`\Seen`, `$Label1`, ...), `\Recent` included if the server sent it.
    pub flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
    pub size: u32,
    /// Raw bytes of the requested header fields (or of the whole header block when asked).
    pub headers: Vec<u8>,
}

/// One message to APPEND.
#[derive(Debug, Clone)]
pub struct AppendRequest<'a> {
    pub flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
    pub body: &'a [u8],
}

/// How a UID STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Add,
    Remove,
    Replace,
}
