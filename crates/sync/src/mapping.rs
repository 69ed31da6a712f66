//! Folder mapping: which host1 folder goes to which host2 folder.
//!
//! Works on decoded (UTF-8) names split into path components by each side's separator, so the
//! separator and the personal-namespace prefix of each side never leak into the other. The rules
//! run in this order: selection (`--folder`, `--include`, `--exclude`), strip host1 prefix, INBOX
//! normalisation, `--automap`, `--f1f2`, re-join with host2's separator (a host2 separator inside a
//! component is replaced, see [`SEPARATOR_REPLACEMENT`]), `--subfolder2`, host2 prefix, `--regextrans2`
//! (in order, on the full host2 name). The result is then encoded to canonical mUTF-7 for host2.

use imapfleet_imap::{MailboxEntry, Namespaces, SpecialUse};

/// What a host2 separator found inside a host1 name component is replaced with.
/// (Documented rule: `/` inside a name on a `/` server becomes `_`; likewise `.` on a `.` server.)
pub const SEPARATOR_REPLACEMENT: char = '_';

/// The facts of one side needed for mapping.
#[derive(Debug, Clone, Default)]
pub struct SideFacts {
    /// Hierarchy separator (`--sep1/2` override, else from NAMESPACE / LIST).
    pub separator: Option<char>,
    /// Personal namespace prefix, decoded (`--prefix1/2` override, else NAMESPACE), e.g. `INBOX.`.
    pub prefix: String,
    pub folders: Vec<MailboxEntry>,
}

impl SideFacts {
    /// Derive from NAMESPACE and LIST, with optional overrides.
    pub fn from_server(
        ns: &Namespaces,
        folders: Vec<MailboxEntry>,
        sep_override: Option<char>,
        prefix_override: Option<String>,
    ) -> SideFacts {
        todo!("{ns:?}{folders:?}{sep_override:?}{prefix_override:?}")
    }
}

/// Mapping options (imapsync's names).
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `--folder`: only these host1 folders (decoded names). Empty = all.
    pub folders: Vec<String>,
    /// `--include` regexes on the decoded host1 name.
    pub include: Vec<String>,
    /// `--exclude` regexes on the decoded host1 name.
    pub exclude: Vec<String>,
    /// `--f1f2 a=b` (decoded host1 name = decoded host2 name).
    pub f1f2: Vec<(String, String)>,
    /// `--regextrans2 's/x/y/'` in order.
    pub regextrans2: Vec<String>,
    /// `--subfolder2 X`: put everything under X on host2.
    pub subfolder2: Option<String>,
    /// `--automap`: map special-use folders onto host2's by attribute, then by localized name.
    pub automap: bool,
}

/// One folder pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPair {
    /// host1 raw (as listed) name.
    pub raw1: String,
    /// host1 decoded name.
    pub name1: String,
    /// host2 decoded name.
    pub name2: String,
    /// host2 raw name to send (listed raw name if it exists, else canonical mUTF-7).
    pub raw2: String,
    /// host2 folder does not exist yet.
    pub create: bool,
    /// Special use of host1's folder, if any.
    pub special_use: Option<SpecialUse>,
}

/// The result of mapping a whole account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMap {
    /// Selectable host1 folders to sync, in host1 order.
    pub pairs: Vec<FolderPair>,
    /// host2 folders (raw names) to CREATE first, parents before children, including
    /// parents needed by pairs even if host1's parent was `\Noselect`.
    pub creates: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("bad --regextrans2 {expr:?}: {reason}")]
    BadRegextrans { expr: String, reason: String },
    #[error("bad regex {expr:?} in {option}: {reason}")]
    BadRegex { option: &'static str, expr: String, reason: String },
    #[error("bad --f1f2 {0:?}: expected a=b")]
    BadF1f2(String),
}

/// Map host1's folders to host2.
pub fn map_folders(h1: &SideFacts, h2: &SideFacts, opts: &MappingOptions) -> Result<FolderMap, MappingError> {
    todo!("{h1:?}{h2:?}{opts:?}")
}
