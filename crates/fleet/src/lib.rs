//! imapfleet-fleet: many accounts at once, on many workers.
//!
//! A batch file ([`batch`]) becomes a job of account tasks and folder tasks ([`task`]) on a queue
//! ([`queue`]: RabbitMQ via `lapin`, or in-process). Stateless workers ([`worker`]) take tasks, hold a
//! lease lock ([`lock`]: Redis with fencing tokens, or in-process) on each host2 folder they write, run
//! the sync engine on a bounded slice, record progress ([`state`]) and acknowledge. Fleet-wide connection
//! caps live in [`limits`]; credentials travel encrypted ([`crypto`]); [`metrics`] serves Prometheus text.
//! A long-running dispatcher starts a pass of the batch at each tick of a [`schedule`], leaving out
//! the accounts whose previous pass still runs.
//!
//! Invariants:
//! - At most one active run per (account pair, host2 folder): every write is made under a live lease,
//!   and state writes carry its fencing token; a stale token is refused.
//! - A delivery is acknowledged only after its work and checkpoint are durable; no delivery is held
//!   longer than one slice.
//! - No password is ever in a queue message, a log line or a metric label in the clear.

pub mod batch;
pub mod crypto;
pub mod dispatcher;
pub mod http;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod queue;
pub mod run;
pub mod schedule;
pub mod state;
pub mod syncstate;
pub mod task;
pub mod worker;
