//! The task queue: a trait and two backends (AMQP with `lapin`, in-process).
//!
//! Semantics both backends keep: at-least-once delivery; a delivery is acknowledged only by
//! [`Delivery::ack`]; [`Delivery::retry`] puts it back after a delay (exponential backoff is the caller's
//! choice of delay) with its attempt count incremented; after `max_attempts` a retried delivery goes to
//! the dead-letter queue with the last error attached instead. [`Delivery::defer`] puts it back after
//! a delay *without* counting an attempt but counting a deferral (a server refusing more
//! connections: back-pressure, bounded by the caller's rule, see [`crate::limits::LimitBackoff`]);
//! [`Delivery::dead_letter`] sends it to the dead-letter queue at once.

use std::time::Duration;

use async_trait::async_trait;

pub mod amqp;
pub mod memory;

pub use amqp::{AmqpConfig, AmqpQueue};
pub use memory::MemoryQueue;

/// Errors of a queue backend.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend: {0}")]
    Backend(String),
    #[error("queue closed")]
    Closed,
}

/// One message taken from the queue, not yet settled.
#[async_trait]
pub trait Delivery: Send {
    /// The message body as published.
    fn body(&self) -> &[u8];
    /// How many times it was delivered before (0 on the first delivery).
    fn attempt(&self) -> u32;
    /// Done: remove it for good.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Failed: deliver again after `delay`, or dead-letter it (with `error`) once attempts are used up.
    async fn retry(self: Box<Self>, delay: Duration, error: &str) -> Result<(), QueueError>;
    /// Put it back at once without counting an attempt (e.g. shutting down mid-slice).
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
    /// Deliver again after `delay` without counting an attempt, counting one more deferral (the
    /// first one stamps [`Delivery::deferred_since_ms`]). A [`Delivery::retry`] starts the count
    /// again.
    async fn defer(self: Box<Self>, delay: Duration) -> Result<(), QueueError>;
    /// Give up now: to the dead-letter queue with `error`, whatever the attempts left.
    async fn dead_letter(self: Box<Self>, error: &str) -> Result<(), QueueError>;
    /// Deferrals in a row before this delivery (0 when it was never deferred).
    fn deferrals(&self) -> u32 {
        0
    }
    /// When the first of those deferrals was made (ms since the Unix epoch).
    fn deferred_since_ms(&self) -> Option<u64> {
        None
    }
    /// True when the broker handed this message out before and it was not settled (the previous
    /// consumer died or its connection broke): the work may have been half done.
    fn redelivered(&self) -> bool {
        false
    }
}

/// A message that used up its attempts, as found in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: Vec<u8>,
    /// Deliveries it had (the failed ones).
    pub attempts: u32,
    /// The error given to the last [`Delivery::retry`].
    pub error: String,
}

/// A durable queue of opaque task bodies.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Publish durably (AMQP: persistent message, publisher confirm awaited).
    async fn publish(&self, body: &[u8]) -> Result<(), QueueError>;
    /// Wait for the next delivery; `None` when the queue is closed.
    async fn next(&self) -> Result<Option<Box<dyn Delivery>>, QueueError>;
    /// Messages ready (not in flight), as far as the backend can tell.
    async fn depth(&self) -> Result<u64, QueueError>;
    /// Messages in the dead-letter queue.
    async fn dead_letters(&self) -> Result<u64, QueueError>;
    /// Up to `max` dead letters, oldest first, without removing them.
    async fn dead_letter_list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let _ = max;
        Err(QueueError::Backend(
            "this backend cannot list dead letters".into(),
        ))
    }
    /// Stop handing out deliveries: [`TaskQueue::next`] returns `None` from now on (waiting callers
    /// included). Deliveries already out can still be settled. Publishing after close fails.
    async fn close(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
