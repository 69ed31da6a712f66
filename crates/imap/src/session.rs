//! A logged-in IMAP session: the commands the engine needs, each with the endpoint's timeout.

use crate::{
    AppendRequest, Capabilities, Endpoint, MailboxEntry, MessageMeta, Namespaces, Result, SelectInfo,
    StatusInfo, StoreMode,
};

/// One authenticated connection to one server. One command at a time.
pub struct Session {
    // private: async_imap::Session over a boxed TLS-or-plain tokio stream, the endpoint, caps, ...
}

impl Session {
    /// Connect (TCP, TLS or STARTTLS), read the greeting, authenticate, re-read CAPABILITY.
    pub async fn connect(endpoint: &Endpoint) -> Result<Session> {
        todo!("{endpoint:?}")
    }

    /// Capabilities after login.
    pub fn capabilities(&self) -> &Capabilities {
        todo!()
    }

    /// The endpoint this session was opened with (for reconnects).
    pub fn endpoint(&self) -> &Endpoint {
        todo!()
    }

    /// `ID` exchange when the server offers it (we send our name and version); `None` otherwise.
    pub async fn id(&mut self) -> Result<Option<Vec<(String, String)>>> {
        todo!()
    }

    /// NAMESPACE, or an empty `Namespaces` when the server lacks it.
    pub async fn namespaces(&mut self) -> Result<Namespaces> {
        todo!()
    }

    /// `LIST "" "*"` (with `RETURN (SPECIAL-USE)` when offered). Entries in server order.
    pub async fn list(&mut self) -> Result<Vec<MailboxEntry>> {
        todo!()
    }

    /// CREATE with the raw (already encoded) name.
    pub async fn create(&mut self, raw_name: &str) -> Result<()> {
        todo!("{raw_name}")
    }

    /// SELECT (or EXAMINE when `read_only`). Uses `(CONDSTORE)` when offered so HIGHESTMODSEQ comes back.
    pub async fn select(&mut self, raw_name: &str, read_only: bool) -> Result<SelectInfo> {
        todo!("{raw_name}{read_only}")
    }

    /// STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN [HIGHESTMODSEQ]).
    pub async fn status(&mut self, raw_name: &str) -> Result<StatusInfo> {
        todo!("{raw_name}")
    }

    /// `UID FETCH <uid_set> (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (<headers>)])`
    /// on the selected mailbox. When `headers` is empty, fetch `BODY.PEEK[HEADER]` (the whole header block).
    /// Sorted by UID.
    pub async fn fetch_meta(&mut self, uid_set: &str, headers: &[String]) -> Result<Vec<MessageMeta>> {
        todo!("{uid_set}{headers:?}")
    }

    /// `UID FETCH <uids> (UID BODY.PEEK[])`: the exact bytes; never sets `\Seen`.
    /// Returns (uid, bytes) for the UIDs the server returned (a vanished UID is simply absent).
    pub async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        todo!("{uids:?}")
    }

    /// APPEND the messages to `raw_name`: MULTIAPPEND in one command when the server offers it and there are
    /// several, LITERAL+ (non-synchronising literals) when offered. All or nothing (a NO fails the batch;
    /// the caller retries one by one to find the culprit). Returns host2's UID for each message, in order,
    /// when the tagged OK carries `[APPENDUID v uid-set]`, else `None`s.
    pub async fn append(&mut self, raw_name: &str, messages: &[AppendRequest<'_>]) -> Result<Vec<Option<u32>>> {
        todo!("{raw_name}{}", messages.len())
    }

    /// `UID STORE <uids> FLAGS|+FLAGS|-FLAGS.SILENT (<flags>)` on the selected mailbox.
    pub async fn uid_store(&mut self, uids: &[u32], mode: StoreMode, flags: &[String]) -> Result<()> {
        todo!("{uids:?}{mode:?}{flags:?}")
    }

    /// `UID SEARCH <criteria>` on the selected mailbox.
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        todo!("{criteria}")
    }

    /// Expunge `\Deleted` messages: `UID EXPUNGE <uids>` with UIDPLUS, else `EXPUNGE`.
    pub async fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        todo!("{uids:?}")
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<()> {
        todo!()
    }

    /// LOGOUT and close (errors ignored).
    pub async fn logout(self) {
        todo!()
    }
}
