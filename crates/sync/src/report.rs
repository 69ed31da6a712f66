//! What a sync did: per-folder counts, classified errors, totals, the verdict, and the exit code.
//! Serialises to the `--report-json` file; `Display` prints imapsync-like statistics.
//!
//! Nothing secret lives here: the report names users and hosts, never passwords or tokens.

use std::fmt;

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
    /// `--delete2` deleted nothing in a folder: its safety guard refused, or host2 did.
    Delete,
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
            ErrorClass::Delete => 26,
        }
    }

    /// Importance of the class when several occurred; the most important one decides the exit code.
    /// Lower is more important. The order is:
    ///
    /// 1. `Usage` (nothing could even start),
    /// 2. `AuthHost1`, `AuthHost2`, `ConnectHost1`, `ConnectHost2` (the account could not be synced,
    ///    or a side went away for good),
    /// 3. `Quota` (actionable, and it explains the APPEND/CREATE refusals that follow it),
    /// 4. `Create`, `Select` (whole folders not synced),
    /// 5. `Fetch`, `Append` (single messages not copied),
    /// 6. `Flags` (the message is there, some flags are not),
    /// 7. `Incomplete` (messages missing with no error to explain it),
    /// 8. `Delete` (host1's mail is all there; host2 kept messages `--delete2` meant to remove).
    pub fn precedence(self) -> u8 {
        match self {
            ErrorClass::Usage => 0,
            ErrorClass::AuthHost1 => 1,
            ErrorClass::AuthHost2 => 2,
            ErrorClass::ConnectHost1 => 3,
            ErrorClass::ConnectHost2 => 4,
            ErrorClass::Quota => 5,
            ErrorClass::Create => 6,
            ErrorClass::Select => 7,
            ErrorClass::Fetch => 8,
            ErrorClass::Append => 9,
            ErrorClass::Flags => 10,
            ErrorClass::Incomplete => 11,
            ErrorClass::Delete => 12,
        }
    }

    /// Short lower-case name (the serde name), for the verdict line.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Usage => "usage",
            ErrorClass::AuthHost1 => "auth_host1",
            ErrorClass::AuthHost2 => "auth_host2",
            ErrorClass::ConnectHost1 => "connect_host1",
            ErrorClass::ConnectHost2 => "connect_host2",
            ErrorClass::Select => "select",
            ErrorClass::Create => "create",
            ErrorClass::Fetch => "fetch",
            ErrorClass::Append => "append",
            ErrorClass::Flags => "flags",
            ErrorClass::Quota => "quota",
            ErrorClass::Incomplete => "incomplete",
            ErrorClass::Delete => "delete",
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

impl SyncError {
    /// An error of the whole account (login, mapping...).
    pub fn account(class: ErrorClass, message: impl Into<String>) -> Self {
        SyncError {
            class,
            folder: None,
            uid: None,
            message: message.into(),
        }
    }

    /// An error of one folder.
    pub fn folder(class: ErrorClass, folder: &str, message: impl Into<String>) -> Self {
        SyncError {
            class,
            folder: Some(folder.to_string()),
            uid: None,
            message: message.into(),
        }
    }

    /// An error of one message.
    pub fn message(class: ErrorClass, folder: &str, uid: u32, message: impl Into<String>) -> Self {
        SyncError {
            class,
            folder: Some(folder.to_string()),
            uid: Some(uid),
            message: message.into(),
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.class.name())?;
        if let Some(folder) = &self.folder {
            write!(f, " folder {folder:?}")?;
        }
        if let Some(uid) = self.uid {
            write!(f, " uid {uid}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Counts of one folder pair. In a dry run, `transferred`/`bytes`/`flags_updated` count what
/// *would* have been done.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FolderReport {
    /// host1 folder, decoded.
    pub name1: String,
    /// host2 folder, decoded.
    pub name2: String,
    /// The host2 folder was created by this run (or would be, in a dry run).
    pub created: bool,
    /// The folder was fully processed (selected, planned, executed), possibly with message errors.
    pub synced: bool,
    /// A dry run: nothing was written, so `missing_on_host2` is what a real run would copy, not
    /// a shortfall.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Messages in the host1 folder (EXISTS at EXAMINE).
    pub host1_messages: u64,
    /// Messages in the host2 folder before this run (EXISTS at SELECT).
    pub host2_messages: u64,
    /// Messages appended to host2.
    pub transferred: u64,
    /// Bytes appended to host2.
    pub bytes: u64,
    /// host1 messages already on host2.
    pub skipped: u64,
    /// host1 messages left out by a filter (max size, age).
    pub skipped_filters: u64,
    /// host1 messages flagged `\Deleted` (deleted, not yet expunged there): left out by default.
    pub skipped_deleted: u64,
    /// Messages of host1's `\All` folder (Gmail's All Mail) left out because another host1 folder
    /// holds them (and copies them).
    pub skipped_elsewhere: u64,
    /// host2 messages deleted by `--delete2` (in a dry run: that would be).
    pub deleted2: u64,
    /// host1 messages deleted by `--delete1` once confirmed on host2 (in a dry run: that would be).
    pub deleted1: u64,
    /// host1 messages flagged `\Deleted` expunged by `--expunge1` (in a dry run: that would be).
    pub expunged1: u64,
    /// host2 messages whose flags were replaced by host1's.
    pub flags_updated: u64,
    /// Extra copies on host1 of a message already seen in the folder (same identity).
    pub duplicates_host1: u64,
    /// host1 messages expunged between listing and fetch (not an error).
    pub vanished_host1: u64,
    /// Copies whose flags host2 cannot keep (flags dropped, message copied).
    pub flags_dropped: u64,
    /// host1 messages (identified, not filtered) that are not on host2 at the end.
    pub missing_on_host2: u64,
    /// host2 messages with no host1 counterpart (kept).
    pub only_on_host2: u64,
    /// Errors counted in this folder (they are listed in `AccountReport::errors`).
    pub errors: u64,
    /// Reconnections needed for this folder.
    pub reconnects: u32,
    /// Skipped by the fast path: both sides' STATUS were as the last pass left them (no SELECT).
    pub unchanged: bool,
    /// At least one side was read from the saved state plus what changed since (not in full).
    pub delta_read: bool,
    /// Times a server refused with "slow down" (throttling) and the folder paused before going on.
    pub throttled: u64,
    /// APPEND intents of an interrupted batch (a killed run, a lost connection) found pending when
    /// the folder was read (crash safety, `engine::intents`).
    pub intents_pending: u64,
    /// Of those, the messages already on host2 (found by header identity, not appended again).
    pub intents_landed: u64,
    pub elapsed_secs: f64,
}

/// Sums over all folders.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Folder pairs selected by the mapping.
    pub folders: u64,
    /// Folder pairs fully processed.
    pub folders_synced: u64,
    pub host1_messages: u64,
    pub host2_messages: u64,
    pub transferred: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub skipped_filters: u64,
    pub skipped_deleted: u64,
    pub skipped_elsewhere: u64,
    pub deleted2: u64,
    pub deleted1: u64,
    pub expunged1: u64,
    pub flags_updated: u64,
    pub duplicates_host1: u64,
    pub vanished_host1: u64,
    pub flags_dropped: u64,
    pub missing_on_host2: u64,
    pub only_on_host2: u64,
    pub errors: u64,
    pub reconnects: u64,
    /// Throttling pauses (see [`FolderReport::throttled`]).
    pub throttled: u64,
    /// Pending APPEND intents of interrupted batches found, and how many had landed on host2
    /// (see [`FolderReport::intents_pending`]).
    pub intents_pending: u64,
    pub intents_landed: u64,
}

impl Totals {
    /// Sum the folder reports; `errors` is the length of the account's error list.
    pub fn from_folders(folders: &[FolderReport], errors: usize) -> Totals {
        let mut t = Totals {
            folders: folders.len() as u64,
            errors: errors as u64,
            ..Totals::default()
        };
        for f in folders {
            t.folders_synced += u64::from(f.synced);
            t.host1_messages += f.host1_messages;
            t.host2_messages += f.host2_messages;
            t.transferred += f.transferred;
            t.bytes += f.bytes;
            t.skipped += f.skipped;
            t.skipped_filters += f.skipped_filters;
            t.skipped_deleted += f.skipped_deleted;
            t.skipped_elsewhere += f.skipped_elsewhere;
            t.deleted2 += f.deleted2;
            t.deleted1 += f.deleted1;
            t.expunged1 += f.expunged1;
            t.flags_updated += f.flags_updated;
            t.duplicates_host1 += f.duplicates_host1;
            t.vanished_host1 += f.vanished_host1;
            t.flags_dropped += f.flags_dropped;
            t.missing_on_host2 += f.missing_on_host2;
            t.only_on_host2 += f.only_on_host2;
            t.reconnects += u64::from(f.reconnects);
            t.throttled += f.throttled;
            t.intents_pending += f.intents_pending;
            t.intents_landed += f.intents_landed;
        }
        t
    }
}

/// The report of one account sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccountReport {
    pub user1: String,
    pub user2: String,
    /// `host:port` of host1.
    pub host1: String,
    /// `host:port` of host2.
    pub host2: String,
    /// Start time, RFC 3339.
    pub started: String,
    pub elapsed_secs: f64,
    pub folders: Vec<FolderReport>,
    pub totals: Totals,
    pub errors: Vec<SyncError>,
    pub dry_run: bool,
    /// host2 folders (raw names) created by this run (in a dry run: that would be created).
    pub created_folders: Vec<String>,
    /// IMAP commands sent to host1 / host2 during the run, by name (all sessions of these logins
    /// in this process).
    pub commands1: std::collections::BTreeMap<String, u64>,
    pub commands2: std::collections::BTreeMap<String, u64>,
    /// host2 folders (decoded names) deleted by `--delete2folders` (in a dry run: that would be).
    pub deleted_folders2: Vec<String>,
}

impl AccountReport {
    /// Recompute `totals` from `folders` and `errors`.
    pub fn finish_totals(&mut self) {
        self.totals = Totals::from_folders(&self.folders, self.errors.len());
    }

    /// The most important error class present (see [`ErrorClass::precedence`]), or `Incomplete` when
    /// there is no error but host1 messages are missing on host2; `None` when all is well.
    /// In a dry run nothing is written, so "missing" is the expected state and never `Incomplete`.
    pub fn worst_class(&self) -> Option<ErrorClass> {
        let worst = self
            .errors
            .iter()
            .map(|e| e.class)
            .min_by_key(|c| c.precedence());
        match worst {
            Some(c) => Some(c),
            None if !self.dry_run && self.missing_total() > 0 => Some(ErrorClass::Incomplete),
            None => None,
        }
    }

    /// 0 only when there is no error and nothing identified on host1 is missing on host2;
    /// otherwise the exit code of the most important class ([`ErrorClass::precedence`]).
    /// A dry run exits 0 when it met no error, whatever it would copy (like `imapsync --dry`), so
    /// `imapfleet sync --dry && imapfleet sync` works; its counts say what would be copied.
    pub fn exit_code(&self) -> i32 {
        self.worst_class().map_or(0, ErrorClass::exit_code)
    }

    /// Missing messages, from the folders (robust even if `totals` was not recomputed).
    fn missing_total(&self) -> u64 {
        self.folders.iter().map(|f| f.missing_on_host2).sum()
    }

    /// One line for humans and log scrapers: starts with `OK` or `FAILED`.
    pub fn verdict(&self) -> String {
        let missing = self.missing_total();
        let t = Totals::from_folders(&self.folders, self.errors.len());
        let dry = if self.dry_run { " (dry run)" } else { "" };
        match self.worst_class() {
            None if self.dry_run => format!(
                "OK (dry run, nothing written): {} -> {}: would transfer {} messages ({:.1} MiB) and update flags of {}, 0 errors",
                self.user1,
                self.user2,
                t.transferred,
                t.bytes as f64 / (1024.0 * 1024.0),
                t.flags_updated,
            ),
            None => format!(
                "OK: {} -> {}: nothing missing on host2: {} host1 messages, {} transferred, {} already there, {} skipped by filters, {} flagged \\Deleted left out, {} vanished, 0 errors",
                self.user1,
                self.user2,
                t.host1_messages,
                t.transferred,
                t.skipped,
                t.skipped_filters,
                t.skipped_deleted,
                t.vanished_host1,
            ),
            Some(worst) => {
                let mut by_class: Vec<(ErrorClass, usize)> = Vec::new();
                for e in &self.errors {
                    match by_class.iter_mut().find(|(c, _)| *c == e.class) {
                        Some((_, n)) => *n += 1,
                        None => by_class.push((e.class, 1)),
                    }
                }
                by_class.sort_by_key(|(c, _)| c.precedence());
                let classes: Vec<String> = by_class
                    .iter()
                    .map(|(c, n)| format!("{} {n}", c.name()))
                    .collect();
                let detail = if classes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", classes.join(", "))
                };
                // A folder that was never read has no count: say so rather than "0 missing".
                let unread = self.folders.iter().filter(|f| !f.synced).count();
                let unread = if unread == 0 {
                    String::new()
                } else {
                    format!(
                        " in the folders read; {unread} folder(s) not synced, their messages not counted"
                    )
                };
                format!(
                    "FAILED{dry} (exit {}, {}): {} -> {}: {} errors{detail}, {missing} host1 messages not on host2{unread}",
                    worst.exit_code(),
                    worst.name(),
                    self.user1,
                    self.user2,
                    self.errors.len(),
                )
            }
        }
    }
}

/// Bytes as `N (x.y MiB)`.
fn human_bytes(b: u64) -> String {
    format!("{b} ({:.1} MiB)", b as f64 / (1024.0 * 1024.0))
}

/// How many errors the statistics block lists before eliding the rest.
const ERRORS_SHOWN: usize = 50;

impl fmt::Display for AccountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = Totals::from_folders(&self.folders, self.errors.len());
        let secs = self.elapsed_secs.max(1e-9);
        writeln!(
            f,
            "++++ Statistics{}",
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "Transfer started on                     : {}",
            self.started
        )?;
        writeln!(
            f,
            "Transfer time                           : {:.2} sec",
            self.elapsed_secs
        )?;
        writeln!(
            f,
            "Host1                                   : {} on {}",
            self.user1, self.host1
        )?;
        writeln!(
            f,
            "Host2                                   : {} on {}",
            self.user2, self.host2
        )?;
        writeln!(
            f,
            "Folders synced                          : {}/{} synced",
            t.folders_synced, t.folders
        )?;
        writeln!(
            f,
            "Messages on host1                       : {}",
            t.host1_messages
        )?;
        writeln!(
            f,
            "Messages on host2 before                : {}",
            t.host2_messages
        )?;
        writeln!(
            f,
            "Messages transferred                    : {}",
            t.transferred
        )?;
        writeln!(f, "Messages skipped                        : {}", t.skipped)?;
        writeln!(
            f,
            "Messages skipped by filters             : {}",
            t.skipped_filters
        )?;
        writeln!(
            f,
            "Messages \\Deleted on host1 left out     : {}",
            t.skipped_deleted
        )?;
        if t.skipped_elsewhere > 0 {
            writeln!(
                f,
                "Messages of \\All held by other folders : {}",
                t.skipped_elsewhere
            )?;
        }
        writeln!(
            f,
            "Messages found duplicate on host1       : {}",
            t.duplicates_host1
        )?;
        if t.deleted2 > 0 {
            writeln!(
                f,
                "Messages deleted on host2 (--delete2)   : {}",
                t.deleted2
            )?;
        }
        if t.deleted1 > 0 {
            writeln!(
                f,
                "Messages deleted on host1 (--delete1)   : {}",
                t.deleted1
            )?;
        }
        if t.expunged1 > 0 {
            writeln!(
                f,
                "Messages expunged on host1 (--expunge1) : {}",
                t.expunged1
            )?;
        }
        if !self.deleted_folders2.is_empty() {
            writeln!(
                f,
                "Folders deleted on host2 (--delete2folders): {}",
                self.deleted_folders2.join(", ")
            )?;
        }
        writeln!(
            f,
            "Messages vanished on host1              : {}",
            t.vanished_host1
        )?;
        writeln!(
            f,
            "Messages with flags host2 cannot keep   : {}",
            t.flags_dropped
        )?;
        writeln!(
            f,
            "Flags updated on host2                  : {}",
            t.flags_updated
        )?;
        writeln!(
            f,
            "Messages found in host1 not in host2    : {} messages",
            t.missing_on_host2
        )?;
        writeln!(
            f,
            "Messages found in host2 not in host1    : {} messages",
            t.only_on_host2
        )?;
        writeln!(
            f,
            "Total bytes transferred                 : {}",
            human_bytes(t.bytes)
        )?;
        writeln!(
            f,
            "Message rate                            : {:.1} messages/s",
            t.transferred as f64 / secs
        )?;
        writeln!(
            f,
            "Average bandwidth rate                  : {:.2} MiB/s",
            t.bytes as f64 / (1024.0 * 1024.0) / secs
        )?;
        writeln!(
            f,
            "Reconnections                           : {}",
            t.reconnects
        )?;
        if t.throttled > 0 {
            writeln!(
                f,
                "Throttling pauses                       : {}",
                t.throttled
            )?;
        }
        if t.intents_pending > 0 {
            writeln!(
                f,
                "Interrupted APPENDs resolved            : {} pending, {} already on host2",
                t.intents_pending, t.intents_landed
            )?;
        }
        writeln!(f, "Detected {} errors", self.errors.len())?;
        for e in self.errors.iter().take(ERRORS_SHOWN) {
            writeln!(f, "  {e}")?;
        }
        if self.errors.len() > ERRORS_SHOWN {
            writeln!(
                f,
                "  ... and {} more (see the JSON report)",
                self.errors.len() - ERRORS_SHOWN
            )?;
        }
        write!(f, "{}", self.verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, h1: u64, missing: u64) -> FolderReport {
        FolderReport {
            name1: name.into(),
            name2: name.into(),
            synced: true,
            host1_messages: h1,
            transferred: h1 - missing,
            bytes: 100 * (h1 - missing),
            missing_on_host2: missing,
            ..FolderReport::default()
        }
    }

    fn report(folders: Vec<FolderReport>, errors: Vec<SyncError>) -> AccountReport {
        let mut r = AccountReport {
            user1: "a".into(),
            user2: "b".into(),
            host1: "h1:143".into(),
            host2: "h2:143".into(),
            started: "2024-01-01T00:00:00+00:00".into(),
            elapsed_secs: 2.0,
            folders,
            errors,
            ..AccountReport::default()
        };
        r.finish_totals();
        r
    }

    #[test]
    fn clean_run_exits_zero() {
        let r = report(vec![folder("INBOX", 10, 0)], vec![]);
        assert_eq!(r.exit_code(), 0);
        assert!(r.verdict().starts_with("OK"), "{}", r.verdict());
    }

    #[test]
    fn dry_run_without_error_exits_zero() {
        let mut r = report(vec![folder("INBOX", 10, 10)], vec![]);
        r.dry_run = true;
        assert_eq!(r.exit_code(), 0);
        assert!(r.verdict().starts_with("OK (dry run"), "{}", r.verdict());
        r.errors
            .push(SyncError::folder(ErrorClass::Select, "INBOX", "x"));
        assert_eq!(r.exit_code(), 20);
    }

    #[test]
    fn missing_without_error_is_incomplete() {
        let r = report(vec![folder("INBOX", 10, 1)], vec![]);
        assert_eq!(r.exit_code(), 30);
        assert!(r.verdict().starts_with("FAILED"));
    }

    #[test]
    fn a_folder_never_read_is_not_counted_as_nothing_missing() {
        let mut unread = folder("INBOX", 0, 0);
        unread.synced = false;
        let r = report(
            vec![folder("Sent", 4, 0), unread],
            vec![SyncError::folder(ErrorClass::Create, "INBOX", "refused")],
        );
        let v = r.verdict();
        assert!(
            v.ends_with("0 host1 messages not on host2 in the folders read; 1 folder(s) not synced, their messages not counted"),
            "{v}"
        );
        // All folders read: no such note.
        let r = report(
            vec![folder("Sent", 4, 1)],
            vec![SyncError::folder(ErrorClass::Append, "Sent", "x")],
        );
        assert!(
            r.verdict().ends_with("1 host1 messages not on host2"),
            "{}",
            r.verdict()
        );
    }

    #[test]
    fn precedence_picks_most_important_class() {
        let errs = |classes: &[ErrorClass]| -> Vec<SyncError> {
            classes
                .iter()
                .map(|c| SyncError::folder(*c, "INBOX", "x"))
                .collect()
        };
        use ErrorClass::*;
        let cases: &[(&[ErrorClass], i32)] = &[
            (&[Flags, Append], 23),
            (&[Append, Quota], 25),
            (&[Flags, Select, Append], 20),
            (&[Create, Select], 21),
            (&[Fetch, Append], 22),
            (&[Quota, ConnectHost2], 13),
            (&[ConnectHost2, AuthHost1], 10),
            (&[AuthHost2, AuthHost1], 10),
            (&[Flags], 24),
            (&[Delete], 26),
            (&[Delete, Flags], 24),
            (&[Delete, Incomplete], 30),
            (&[Incomplete, Flags], 24),
            (&[Usage, AuthHost1], 2),
        ];
        for (classes, code) in cases {
            let r = report(vec![folder("INBOX", 3, 1)], errs(classes));
            assert_eq!(r.exit_code(), *code, "{classes:?}");
        }
    }

    #[test]
    fn precedence_is_a_total_order() {
        use ErrorClass::*;
        let all = [
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
            Incomplete,
            Delete,
        ];
        let mut p: Vec<u8> = all.iter().map(|c| c.precedence()).collect();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), all.len());
    }

    #[test]
    fn json_shape() {
        let r = report(
            vec![folder("INBOX", 2, 0)],
            vec![SyncError::message(
                ErrorClass::Append,
                "INBOX",
                7,
                "APPEND refused: NO too big",
            )],
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in [
            "user1",
            "user2",
            "host1",
            "host2",
            "started",
            "elapsed_secs",
            "folders",
            "totals",
            "errors",
            "dry_run",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["errors"][0]["class"], "append");
        assert_eq!(v["errors"][0]["uid"], 7);
        assert_eq!(v["errors"][0]["folder"], "INBOX");
        assert_eq!(v["folders"][0]["name1"], "INBOX");
        assert_eq!(v["folders"][0]["transferred"], 2);
        assert_eq!(v["totals"]["errors"], 1);
        assert_eq!(v["totals"]["folders_synced"], 1);
        assert!(v["elapsed_secs"].is_f64());
    }

    #[test]
    fn display_has_statistics_and_verdict_last() {
        let r = report(vec![folder("INBOX", 4, 0)], vec![]);
        let s = r.to_string();
        assert!(
            s.contains("Messages transferred                    : 4"),
            "{s}"
        );
        assert!(
            s.contains("Folders synced                          : 1/1"),
            "{s}"
        );
        assert!(s.lines().last().unwrap().starts_with("OK"));
    }
}
