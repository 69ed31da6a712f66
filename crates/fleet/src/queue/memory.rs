//! In-process queue for single-machine runs (`imapfleet run`) and tests.
//!
//! Same semantics as the AMQP backend: at-least-once (a delivery dropped without being settled goes
//! back to the queue, as a broker does when a consumer's channel closes), retry after a delay with the
//! attempt count incremented, dead-letter after `max_attempts` with the last error, requeue without
//! counting an attempt. Nothing survives the process.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{DeadLetter, Delivery, QueueError, TaskQueue};

#[derive(Debug)]
struct Msg {
    body: Vec<u8>,
    attempt: u32,
    redelivered: bool,
    deferrals: u32,
    deferred_since_ms: Option<u64>,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct Delayed {
    due: Instant,
    seq: u64,
    msg: Msg,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Msg>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    dead: Vec<DeadLetter>,
    in_flight: usize,
    closed: bool,
    seq: u64,
}

impl State {
    /// Ready now (`delay` zero) or once `delay` has passed.
    fn push_after(&mut self, delay: Duration, seq: u64, msg: Msg) {
        if delay.is_zero() {
            self.ready.push_back(msg);
        } else {
            self.delayed.push(Reverse(Delayed {
                due: Instant::now() + delay,
                seq,
                msg,
            }));
        }
    }

    /// Move every delayed message that is due to the ready queue; the next due time if any remain.
    fn promote(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse(d)) = self.delayed.peek() {
            if d.due > now {
                return Some(d.due);
            }
            if let Some(Reverse(d)) = self.delayed.pop() {
                self.ready.push_back(d.msg);
            }
        }
        None
    }
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    notify: Notify,
    max_attempts: u32,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The in-process queue. Cheap to clone (all clones are the same queue).
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl MemoryQueue {
    /// A queue that dead-letters a message on the retry of its `max_attempts`-th delivery
    /// (`max_attempts` 0 is taken as 1).
    pub fn new(max_attempts: u32) -> Self {
        MemoryQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                max_attempts: max_attempts.max(1),
            }),
        }
    }

    /// Messages handed out and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Messages waiting out a retry delay.
    pub fn delayed(&self) -> usize {
        self.inner.lock().delayed.len()
    }

    /// Nothing ready, delayed or in flight.
    pub fn is_idle(&self) -> bool {
        let s = self.inner.lock();
        s.ready.is_empty() && s.delayed.is_empty() && s.in_flight == 0
    }

    /// Remove and return every dead letter.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.inner.lock().dead)
    }

    /// Close the queue (see [`TaskQueue::close`]).
    pub fn close_now(&self) {
        self.inner.lock().closed = true;
        self.inner.notify.notify_waiters();
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn publish(&self, body: &[u8]) -> Result<(), QueueError> {
        {
            let mut s = self.inner.lock();
            if s.closed {
                return Err(QueueError::Closed);
            }
            s.ready.push_back(Msg {
                body: body.to_vec(),
                attempt: 0,
                redelivered: false,
                deferrals: 0,
                deferred_since_ms: None,
            });
        }
        self.inner.notify.notify_one();
        Ok(())
    }

    async fn next(&self) -> Result<Option<Box<dyn Delivery>>, QueueError> {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a publish or close in between is not missed.
            notified.as_mut().enable();
            let next_due = {
                let mut s = self.inner.lock();
                if s.closed {
                    drop(s);
                    // Pass the wake-up on: other waiters must see the close too.
                    self.inner.notify.notify_waiters();
                    return Ok(None);
                }
                let next_due = s.promote(Instant::now());
                if let Some(msg) = s.ready.pop_front() {
                    s.in_flight += 1;
                    let more = !s.ready.is_empty();
                    drop(s);
                    if more {
                        // Several waiters and several messages: one notify_one per publish may have
                        // been consumed by a single waiter.
                        self.inner.notify.notify_one();
                    }
                    return Ok(Some(Box::new(MemoryDelivery {
                        inner: self.inner.clone(),
                        msg: Some(msg),
                    })));
                }
                next_due
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let mut s = self.inner.lock();
        s.promote(Instant::now());
        Ok(s.ready.len() as u64)
    }

    async fn dead_letters(&self) -> Result<u64, QueueError> {
        Ok(self.inner.lock().dead.len() as u64)
    }

    async fn dead_letter_list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.inner.lock().dead.iter().take(max).cloned().collect())
    }

    async fn close(&self) -> Result<(), QueueError> {
        self.close_now();
        Ok(())
    }
}

/// A message out of the in-process queue. Dropped unsettled, it goes back to the front of the queue
/// (marked redelivered), as with a broker whose consumer went away.
struct MemoryDelivery {
    inner: Arc<Inner>,
    msg: Option<Msg>,
}

impl MemoryDelivery {
    fn settle(&mut self, f: impl FnOnce(&mut State, Msg)) {
        if let Some(msg) = self.msg.take() {
            {
                let mut s = self.inner.lock();
                s.in_flight = s.in_flight.saturating_sub(1);
                f(&mut s, msg);
            }
            self.inner.notify.notify_one();
        }
    }
}

impl Drop for MemoryDelivery {
    fn drop(&mut self) {
        self.settle(|s, mut msg| {
            msg.redelivered = true;
            s.ready.push_front(msg);
        });
    }
}

#[async_trait]
impl Delivery for MemoryDelivery {
    fn body(&self) -> &[u8] {
        self.msg.as_ref().map(|m| m.body.as_slice()).unwrap_or(&[])
    }

    fn attempt(&self) -> u32 {
        self.msg.as_ref().map(|m| m.attempt).unwrap_or(0)
    }

    fn redelivered(&self) -> bool {
        self.msg.as_ref().is_some_and(|m| m.redelivered)
    }

    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.settle(|_, _| {});
        Ok(())
    }

    async fn retry(mut self: Box<Self>, delay: Duration, error: &str) -> Result<(), QueueError> {
        let max = self.inner.max_attempts;
        let error = error.to_string();
        self.settle(move |s, msg| {
            let attempts = msg.attempt.saturating_add(1);
            if attempts >= max {
                s.dead.push(DeadLetter {
                    body: msg.body,
                    attempts,
                    error,
                });
            } else {
                s.seq += 1;
                let seq = s.seq;
                let msg = Msg {
                    body: msg.body,
                    attempt: attempts,
                    redelivered: false,
                    deferrals: 0,
                    deferred_since_ms: None,
                };
                s.push_after(delay, seq, msg);
            }
        });
        Ok(())
    }

    async fn defer(mut self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        self.settle(move |s, msg| {
            s.seq += 1;
            let seq = s.seq;
            let msg = Msg {
                deferrals: msg.deferrals.saturating_add(1),
                deferred_since_ms: msg.deferred_since_ms.or_else(|| Some(epoch_ms())),
                redelivered: false,
                ..msg
            };
            s.push_after(delay, seq, msg);
        });
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, error: &str) -> Result<(), QueueError> {
        let error = error.to_string();
        self.settle(move |s, msg| {
            s.dead.push(DeadLetter {
                body: msg.body,
                attempts: msg.attempt.saturating_add(1),
                error,
            });
        });
        Ok(())
    }

    fn deferrals(&self) -> u32 {
        self.msg.as_ref().map_or(0, |m| m.deferrals)
    }

    fn deferred_since_ms(&self) -> Option<u64> {
        self.msg.as_ref().and_then(|m| m.deferred_since_ms)
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        self.settle(|s, msg| s.ready.push_front(msg));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(q: &MemoryQueue) -> Box<dyn Delivery> {
        tokio::time::timeout(Duration::from_secs(5), q.next())
            .await
            .expect("a delivery within 5 s")
            .expect("no error")
            .expect("queue open")
    }

    #[tokio::test]
    async fn publish_consume_ack() {
        let q = MemoryQueue::new(3);
        q.publish(b"one").await.unwrap();
        q.publish(b"two").await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 2);
        let d = next(&q).await;
        assert_eq!(d.body(), b"one");
        assert_eq!(d.attempt(), 0);
        assert!(!d.redelivered());
        assert_eq!(q.in_flight(), 1);
        d.ack().await.unwrap();
        let d = next(&q).await;
        assert_eq!(d.body(), b"two");
        d.ack().await.unwrap();
        assert!(q.is_idle());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_then_dead_letters_with_the_error() {
        let q = MemoryQueue::new(3);
        q.publish(b"task").await.unwrap();
        for attempt in 0..3u32 {
            let before = Instant::now();
            let d = next(&q).await;
            if attempt > 0 {
                // The backoff of the previous retry was honoured.
                assert!(before.elapsed() >= Duration::from_millis(100 << (attempt - 1)));
            }
            assert_eq!(d.attempt(), attempt);
            assert_eq!(d.body(), b"task");
            d.retry(
                Duration::from_millis(100 << attempt),
                &format!("boom {attempt}"),
            )
            .await
            .unwrap();
            if attempt < 2 {
                assert_eq!(q.depth().await.unwrap(), 0, "delayed, not ready");
                assert_eq!(q.delayed(), 1);
            }
        }
        assert_eq!(q.dead_letters().await.unwrap(), 1);
        assert_eq!(
            q.dead_letter_list(10).await.unwrap(),
            vec![DeadLetter {
                body: b"task".to_vec(),
                attempts: 3,
                error: "boom 2".into()
            }]
        );
        assert!(q.is_idle());
        assert_eq!(q.take_dead_letters().len(), 1);
        assert_eq!(q.dead_letters().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn requeue_does_not_count_an_attempt() {
        let q = MemoryQueue::new(2);
        q.publish(b"a").await.unwrap();
        q.publish(b"b").await.unwrap();
        let d = next(&q).await;
        assert_eq!(d.body(), b"a");
        d.requeue().await.unwrap();
        let d = next(&q).await;
        assert_eq!(d.body(), b"a", "requeued to the front");
        assert_eq!(d.attempt(), 0);
        d.ack().await.unwrap();
    }

    #[tokio::test]
    async fn dropped_delivery_comes_back_redelivered() {
        let q = MemoryQueue::new(2);
        q.publish(b"a").await.unwrap();
        drop(next(&q).await);
        let d = next(&q).await;
        assert_eq!(d.body(), b"a");
        assert!(d.redelivered());
        assert_eq!(d.attempt(), 0);
        d.ack().await.unwrap();
        assert!(q.is_idle());
    }

    #[tokio::test]
    async fn close_wakes_every_waiter_and_refuses_publish() {
        let q = MemoryQueue::new(2);
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            waiters.push(tokio::spawn(
                async move { q.next().await.map(|d| d.is_none()) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close().await.unwrap();
        for w in waiters {
            let closed = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("woken")
                .unwrap()
                .unwrap();
            assert!(closed);
        }
        assert!(matches!(q.publish(b"x").await, Err(QueueError::Closed)));
    }

    #[tokio::test]
    async fn many_consumers_get_every_message_once() {
        let q = MemoryQueue::new(2);
        let mut workers = Vec::new();
        for _ in 0..4 {
            let q = q.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(d) = q.next().await.unwrap() {
                    got.push(d.body().to_vec());
                    d.ack().await.unwrap();
                }
                got
            }));
        }
        for i in 0..200u32 {
            q.publish(i.to_string().as_bytes()).await.unwrap();
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while !q.is_idle() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        q.close().await.unwrap();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        let mut want: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_string().into_bytes()).collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[tokio::test(start_paused = true)]
    async fn defer_counts_deferrals_not_attempts_and_dead_letter_is_at_once() {
        let q = MemoryQueue::new(3);
        q.publish(b"t").await.unwrap();
        let d = next(&q).await;
        assert_eq!((d.deferrals(), d.deferred_since_ms()), (0, None));
        d.defer(Duration::from_secs(5)).await.unwrap();
        assert_eq!(q.delayed(), 1, "waits out its pause");
        let before = Instant::now();
        let d = next(&q).await;
        assert!(before.elapsed() >= Duration::from_secs(5));
        assert_eq!(d.attempt(), 0, "a deferral is not an attempt");
        assert_eq!(d.deferrals(), 1);
        let since = d.deferred_since_ms().expect("stamped");
        d.defer(Duration::from_secs(1)).await.unwrap();
        let d = next(&q).await;
        assert_eq!(d.deferrals(), 2);
        assert_eq!(
            d.deferred_since_ms(),
            Some(since),
            "the first deferral's time is kept"
        );
        // A retry counts an attempt and starts the deferrals again.
        d.retry(Duration::ZERO, "lost").await.unwrap();
        let d = next(&q).await;
        assert_eq!(
            (d.attempt(), d.deferrals(), d.deferred_since_ms()),
            (1, 0, None)
        );
        d.dead_letter("connection limit: given up").await.unwrap();
        assert!(q.is_idle());
        assert_eq!(
            q.take_dead_letters(),
            vec![DeadLetter {
                body: b"t".to_vec(),
                attempts: 2,
                error: "connection limit: given up".into()
            }]
        );
    }
}
