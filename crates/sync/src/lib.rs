//! imapfleet-sync: the sync engine for one account pair.
//!
//! Data flow: [`mapping`] turns both sides' LIST/NAMESPACE into folder pairs; for each pair the
//! executor ([`engine`]) reads both sides' metadata, keys every message ([`identity`]), asks the pure
//! planner ([`plan`]) what to do, and carries the plan out through `imapfleet-imap`. [`report`] counts
//! what happened; [`verify`] is the deep, independent check that host2 matches host1.
//!
//! Invariants:
//! - The planner is pure: same inputs, same plan; a plan computed after executing a plan is empty.
//! - Nothing is ever deleted unless a deletion option asks for it.
//! - A host1 message is never appended twice by one plan.

pub mod engine;
pub mod identity;
pub mod mapping;
pub mod plan;
pub mod report;
pub mod state;
pub mod verify;
