//! imapfleet-mailgen: the project's own deterministic generator of realistic test mail.
//!
//! - [`MailboxSpec`] says what to generate (seed, folders, messages, total size, shares of awkward
//!   cases); [`MailboxSpec::small`] is for tests, [`MailboxSpec::bench`] is the benchmark mailbox
//!   (5,000 messages, ~145 MB, 20 folders).
//! - [`MailboxSpec::plan`] computes every message's folder, kind, size, flags, INTERNALDATE and
//!   Message-Id mode without any bytes; [`MailboxSpec::generate`] yields one [`GenFolder`] at a time,
//!   so a large mailbox never sits in memory whole.
//! - Same spec, same bytes on every machine: a hand-rolled xoshiro256** ([`rng`]) and integer
//!   arithmetic only.
//! - [`corpus_messages`] reads the shared real-world corpus (`../shared/corpus`, per `MANIFEST.tsv`).
//! - [`fill`] loads generated folders into a mailbox over IMAP (CREATE, then batched APPEND).

pub mod corpus;
pub mod encode;
pub mod load;
mod render;
pub mod rng;
pub mod spec;
pub mod words;

pub use corpus::{corpus_dir, corpus_messages, to_crlf};
pub use load::{fill, fill_with, raw_name, FillOptions, FillStats};
pub use spec::{
    EightBit, FolderPlan, Folders, GenFolder, GenMessage, IdMode, Kind, MailboxSpec, MessagePlan,
    Plan, Role, KEYWORDS, SYSTEM_FLAGS,
};
