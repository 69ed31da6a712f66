//! What a sync did: per-folder counts, classified errors, totals, the verdict, and the exit code.
//! Serialises to the `--report-json` file; `Display` prints imapsync-like statistics.

use serde::Serialize;

/// Error classes, each with its own exit code (documented in docs/CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Usage,
    AuthHost1,
    AuthHost2,
    ConnectHost1,
    ConnectHost2,
    Select,
    Create,
    Fetch,
    Append,
    Flags,
    Quota,
    /// Messages identified on host1 but not on host2 at the end, with no other error explaining it.
    Incomplete,
}

impl ErrorClass {
    /// Process exit code for this class. 0 is success; 1 is reserved for unexpected failures.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Usage => 2,
            ErrorClass::AuthHost1 => 10,
            ErrorClass::AuthHost2 => 11,
            ErrorClass::ConnectHost1 => 12,
            ErrorClass::ConnectHost2 => 13,
            ErrorClass::Select => 20,
            ErrorClass::Create => 21,
            ErrorClass::Fetch => 22,
            ErrorClass::Append => 23,
            ErrorClass::Flags => 24,
            ErrorClass::Quota => 25,
            ErrorClass::Incomplete => 30,
        }
    }
}

/// One counted error, with where it happened and the server's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncError {
    pub class: ErrorClass,
    /// host1 folder (decoded), when the error belongs to one.
    pub folder: Option<String>,
    /// host1 UID, when the error belongs to one message.
    pub uid: Option<u32>,
    pub message: String,
}
