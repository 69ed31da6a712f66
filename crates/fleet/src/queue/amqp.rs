//! RabbitMQ backend (`lapin`, AMQP 0-9-1).
//!
//! Topology, all declared by every client on connect (idempotent):
//! - `<queue>`: durable **quorum** queue of tasks. Messages are persistent (delivery mode 2) and every
//!   publish waits for the broker's confirm.
//! - `<queue>.dead`: durable quorum queue of tasks that used up their attempts, with headers
//!   `imapfleet-attempts` and `imapfleet-error` (the last error).
//! - `<queue>.delay.<ms>`: one durable quorum queue per retry delay, with `x-message-ttl` = ms and a
//!   dead-letter route (default exchange, routing key `<queue>`) back to the task queue, with
//!   `x-dead-letter-strategy: at-least-once` (RabbitMQ >= 3.10; needs `x-overflow: reject-publish`)
//!   so an expiring message is not dropped on the way back. A per-queue TTL (not per-message
//!   expiration on one delay queue) because RabbitMQ only expires messages at the head of a queue:
//!   a long delay would hold back every shorter one behind it. Delays are rounded up to a short
//!   series (1, 1.5, 2, 3, 5, 7 x 10^n ms) to keep the number of delay queues small; each has
//!   `x-expires` (delay + 1 h) so unused ones go away, and is re-declared before every retry publish
//!   (a declare counts as use; a publish does not).
//!
//! Attempts travel in the `imapfleet-attempt` header (deliveries before this one); deferrals (puts
//! back that are not attempts: a server refusing more connections) in `imapfleet-deferrals`, with
//! the first one's time (ms since the epoch) in `imapfleet-deferred-since`. A deferred message
//! goes through the delay queues like a retry, keeping its attempt count. Acknowledgement is
//! manual; `prefetch` bounds unacknowledged deliveries per consumer (basic.qos).
//!
//! Connection loss: the next `publish`/`next` reconnects (retrying with backoff for
//! `reconnect_for`, then failing with a `Backend` error that says the broker is unreachable).
//! Deliveries taken before the loss cannot be settled any more: their `ack`/`retry`/`requeue` fail
//! with a `Backend` error saying so, and the broker redelivers them (at-least-once). AMQP does not
//! confirm an ack: one sent just as the connection breaks may be lost and the task redelivered, so
//! work must be idempotent (it is: folder slices resume from their checkpoint under a fenced lease).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{DeadLetter, Delivery, QueueError, TaskQueue};

/// Environment variable with the broker URL.
pub const AMQP_URL_ENV: &str = "IMAPFLEET_AMQP_URL";
/// Broker URL when the environment says nothing.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Header: deliveries before this one.
pub const ATTEMPT_HEADER: &str = "imapfleet-attempt";
/// Header on dead letters: how many deliveries failed.
pub const ATTEMPTS_HEADER: &str = "imapfleet-attempts";
/// Header on dead letters and retried messages: the last error.
pub const ERROR_HEADER: &str = "imapfleet-error";
/// Header: deferrals in a row before this delivery (see [`Delivery::defer`]).
pub const DEFERRALS_HEADER: &str = "imapfleet-deferrals";
/// Header: when the first of those deferrals was made, ms since the Unix epoch.
pub const DEFERRED_SINCE_HEADER: &str = "imapfleet-deferred-since";
/// Longest error text carried in a header.
const MAX_ERROR_LEN: usize = 2000;
/// Longest retry delay (a day); longer ones are cut to it.
const MAX_DELAY_MS: u64 = 86_400_000;

/// Where and how to reach the broker. `Debug` hides the password of the URL.
#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost` (`%2f` is the default vhost `/`).
    pub url: String,
    /// Name of the task queue; the dead-letter and delay queues are named after it.
    pub queue: String,
    /// Unacknowledged deliveries the broker may push to one consumer (basic.qos). At least 1.
    pub prefetch: u16,
    /// A retry of the `max_attempts`-th delivery dead-letters the message instead.
    pub max_attempts: u32,
    /// How long `publish`/`next` keep trying to reconnect before failing.
    pub reconnect_for: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("max_attempts", &self.max_attempts)
            .field("reconnect_for", &self.reconnect_for)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AmqpConfig {
    /// Defaults for `queue`: URL from `IMAPFLEET_AMQP_URL` (or the local default), prefetch 1,
    /// 5 attempts, reconnecting for 60 s.
    pub fn new(queue: impl Into<String>) -> Self {
        AmqpConfig {
            url: std::env::var(AMQP_URL_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_AMQP_URL.to_string()),
            queue: queue.into(),
            prefetch: 1,
            max_attempts: 5,
            reconnect_for: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    pub fn with_reconnect_for(mut self, d: Duration) -> Self {
        self.reconnect_for = d;
        self
    }

    /// Name of the dead-letter queue.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }

    /// Name of the delay queue for a delay of `ms` (already rounded).
    pub fn delay_queue(&self, ms: u64) -> String {
        format!("{}.delay.{ms}", self.queue)
    }
}

/// `scheme://user:pass@host/...` → `scheme://***@host/...` (also inside longer text).
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Round a delay up to the series 1, 1.5, 2, 3, 5, 7 x 10^n ms (at least 10 ms, at most a day).
pub fn delay_bucket_ms(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(10, MAX_DELAY_MS);
    let mut decade = 1u64;
    loop {
        for step in [10u64, 15, 20, 30, 50, 70] {
            let b = step * decade;
            if b >= ms {
                return b.min(MAX_DELAY_MS);
            }
        }
        decade *= 10;
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(redact_url(&format!("AMQP {what}: {e}")))
}

/// The connection used to publish, with its confirm-mode channel.
struct Link {
    connection: Arc<Connection>,
    publish: Channel,
    generation: u64,
}

impl Link {
    fn alive(&self) -> bool {
        self.connection.status().connected() && self.publish.status().connected()
    }
}

struct ConsumerState {
    connection: Arc<Connection>,
    channel: Channel,
    consumer: Consumer,
    generation: u64,
    cancelled: bool,
}

struct Inner {
    cfg: AmqpConfig,
    link: Mutex<Option<Link>>,
    consumer: Mutex<Option<ConsumerState>>,
    generation: AtomicU64,
    closed: CancellationToken,
}

/// RabbitMQ task queue. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortShortInt(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn header_u64(props: &BasicProperties, name: &str) -> Option<u64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => header_u32(props, name).map(u64::from),
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn truncate_error(error: &str) -> String {
    let e = redact_url(error);
    if e.len() <= MAX_ERROR_LEN {
        return e;
    }
    let mut end = MAX_ERROR_LEN;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &e[..end])
}

fn persistent(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

impl AmqpQueue {
    /// Connect and declare the topology (fails at once when the broker cannot be reached).
    pub async fn connect(cfg: AmqpConfig) -> Result<Self, QueueError> {
        let q = AmqpQueue {
            inner: Arc::new(Inner {
                cfg,
                link: Mutex::new(None),
                consumer: Mutex::new(None),
                generation: AtomicU64::new(0),
                closed: CancellationToken::new(),
            }),
        };
        {
            let mut link = q.inner.link.lock().await;
            *link = Some(q.inner.open_link().await?);
        }
        Ok(q)
    }

    pub fn config(&self) -> &AmqpConfig {
        &self.inner.cfg
    }

    /// Delete the task, dead-letter and the given delay queues (tests and operators' cleanup).
    pub async fn delete_queues(&self, delays: &[Duration]) -> Result<(), QueueError> {
        let ch = self.inner.fresh_channel().await?;
        let mut names = vec![self.inner.cfg.queue.clone(), self.inner.cfg.dead_queue()];
        for d in delays {
            names.push(self.inner.cfg.delay_queue(delay_bucket_ms(*d)));
        }
        for name in names {
            ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| backend("queue.delete", e))?;
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(())
    }

    /// Messages waiting in the delay queue of `delay` (0 when it does not exist).
    pub async fn delayed(&self, delay: Duration) -> Result<u64, QueueError> {
        let name = self.inner.cfg.delay_queue(delay_bucket_ms(delay));
        // A passive declare of a missing queue closes the channel: use a throw-away one.
        let ch = self.inner.fresh_channel().await?;
        let r = ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = ch.close(200, "OK".into()).await;
        Ok(r.map(|q| u64::from(q.message_count())).unwrap_or(0))
    }

    /// Close the connection (deliveries not settled yet go back to the queue).
    pub async fn shutdown(&self) {
        self.inner.closed.cancel();
        if let Some(c) = self.inner.consumer.lock().await.take() {
            let _ = c.channel.close(200, "OK".into()).await;
        }
        if let Some(l) = self.inner.link.lock().await.take() {
            let _ = l.connection.close(200, "OK".into()).await;
        }
    }
}

impl Inner {
    async fn open_link(&self) -> Result<Link, QueueError> {
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from("imapfleet"));
        let connection = tokio::time::timeout(
            self.cfg.connect_timeout,
            Connection::connect(&self.cfg.url, props),
        )
        .await
        .map_err(|_| {
            QueueError::Backend(format!(
                "AMQP connect to {}: timed out after {:?}",
                redact_url(&self.cfg.url),
                self.cfg.connect_timeout
            ))
        })?
        .map_err(|e| {
            QueueError::Backend(redact_url(&format!(
                "AMQP connect to {}: {e}",
                self.cfg.url
            )))
        })?;
        let publish = connection
            .create_channel()
            .await
            .map_err(|e| backend("channel", e))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| backend("confirm.select", e))?;
        for name in [self.cfg.queue.clone(), self.cfg.dead_queue()] {
            publish
                .queue_declare(name.as_str().into(), durable(), quorum_args())
                .await
                .map_err(|e| backend(&format!("queue.declare {name}"), e))?;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::debug!(url = %redact_url(&self.cfg.url), queue = %self.cfg.queue, generation, "AMQP connected");
        Ok(Link {
            connection: Arc::new(connection),
            publish,
            generation,
        })
    }

    /// The live link (reconnecting, with backoff, for up to `reconnect_for`).
    async fn link(&self) -> Result<(Channel, Arc<Connection>, u64), QueueError> {
        let deadline = tokio::time::Instant::now() + self.cfg.reconnect_for;
        let mut pause = Duration::from_millis(100);
        loop {
            let mut guard = self.link.lock().await;
            if let Some(l) = guard.as_ref() {
                if l.alive() {
                    return Ok((l.publish.clone(), l.connection.clone(), l.generation));
                }
                tracing::warn!(queue = %self.cfg.queue, "AMQP connection lost; reconnecting");
                *guard = None;
            }
            if self.closed.is_cancelled() {
                return Err(QueueError::Closed);
            }
            match self.open_link().await {
                Ok(l) => {
                    let r = (l.publish.clone(), l.connection.clone(), l.generation);
                    *guard = Some(l);
                    return Ok(r);
                }
                Err(e) => {
                    drop(guard);
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(QueueError::Backend(format!(
                            "broker unreachable for {:?}: {e}",
                            self.cfg.reconnect_for
                        )));
                    }
                    tracing::warn!(error = %e, "AMQP reconnect failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Forget the link if it is still the one of `generation` (it failed under us).
    async fn drop_link(&self, generation: u64) {
        let mut guard = self.link.lock().await;
        if guard.as_ref().is_some_and(|l| l.generation == generation) {
            *guard = None;
        }
    }

    async fn fresh_channel(&self) -> Result<Channel, QueueError> {
        let (_, conn, _) = self.link().await?;
        conn.create_channel()
            .await
            .map_err(|e| backend("channel", e))
    }

    /// Publish persistently to `routing_key` on the default exchange and wait for the confirm;
    /// one reconnect-and-retry when the connection fails under the publish.
    async fn publish_to(
        &self,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        delay_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (ch, _, generation) = self.link().await?;
            let r = self
                .publish_once(&ch, routing_key, body, headers.clone(), delay_ms)
                .await;
            match r {
                Ok(()) => return Ok(()),
                Err(e) if tries < 2 && !ch.status().connected() => {
                    tracing::warn!(error = %e, "AMQP publish failed with the channel; retrying once");
                    self.drop_link(generation).await;
                }
                Err(e) => {
                    if !ch.status().connected() {
                        self.drop_link(generation).await;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn publish_once(
        &self,
        ch: &Channel,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
        delay_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        if let Some(ms) = delay_ms {
            self.declare_delay(ch, ms).await?;
        }
        let confirm = ch
            .basic_publish(
                ShortString::from(""),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                persistent(headers),
            )
            .await
            .map_err(|e| backend("publish", e))?
            .await
            .map_err(|e| backend("publish confirm", e))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(QueueError::Backend(format!(
                "AMQP publish to {routing_key}: returned unroutable ({} {})",
                returned.reply_code, returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(QueueError::Backend(format!(
                "AMQP publish to {routing_key}: the broker refused it (nack)"
            ))),
            Confirmation::NotRequested => Err(QueueError::Backend(
                "AMQP publish: confirms not enabled on the channel".into(),
            )),
        }
    }

    /// Declare the delay queue of `ms` (re-declared before each use so its `x-expires` restarts).
    async fn declare_delay(&self, ch: &Channel, ms: u64) -> Result<(), QueueError> {
        let name = self.cfg.delay_queue(ms);
        let mut args = quorum_args();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX)),
        );
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(i64::try_from(ms + 3_600_000).unwrap_or(i64::MAX)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(self.cfg.queue.as_str())),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString(LongString::from("at-least-once")),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
        ch.queue_declare(name.as_str().into(), durable(), args)
            .await
            .map_err(|e| backend(&format!("queue.declare {name}"), e))?;
        Ok(())
    }

    async fn message_count(&self, name: &str) -> Result<u64, QueueError> {
        let (ch, _, generation) = self.link().await?;
        let r = ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match r {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(e) => {
                if !ch.status().connected() {
                    self.drop_link(generation).await;
                }
                Err(backend(&format!("queue.declare passive {name}"), e))
            }
        }
    }

    async fn start_consumer(&self) -> Result<ConsumerState, QueueError> {
        let (_, conn, generation) = self.link().await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| backend("channel", e))?;
        channel
            .basic_qos(self.cfg.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| backend("basic.qos", e))?;
        let consumer = channel
            .basic_consume(
                self.cfg.queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| backend("basic.consume", e))?;
        Ok(ConsumerState {
            connection: conn,
            channel,
            consumer,
            generation,
            cancelled: false,
        })
    }
}

#[async_trait]
impl TaskQueue for AmqpQueue {
    async fn publish(&self, body: &[u8]) -> Result<(), QueueError> {
        if self.inner.closed.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(0));
        self.inner
            .publish_to(&self.inner.cfg.queue, body, headers, None)
            .await
    }

    async fn next(&self) -> Result<Option<Box<dyn Delivery>>, QueueError> {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.reconnect_for;
        loop {
            if self.inner.closed.is_cancelled() {
                return Ok(None);
            }
            let mut guard = self.inner.consumer.lock().await;
            if guard.is_none() {
                match self.inner.start_consumer().await {
                    Ok(c) => *guard = Some(c),
                    Err(QueueError::Closed) => return Ok(None),
                    Err(e) => {
                        drop(guard);
                        if tokio::time::Instant::now() >= deadline {
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "AMQP consumer could not start; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let Some(state) = guard.as_mut() else {
                continue;
            };
            if state.cancelled {
                return Ok(None);
            }
            let item = tokio::select! {
                _ = self.inner.closed.cancelled() => return Ok(None),
                item = state.consumer.next() => item,
            };
            match item {
                Some(Ok(d)) => {
                    return Ok(Some(Box::new(AmqpDelivery::new(
                        self.inner.clone(),
                        state.channel.clone(),
                        d,
                    ))));
                }
                Some(Err(e)) => {
                    let generation = state.generation;
                    // Only the channel may have failed (e.g. a delivery held past the broker's
                    // consumer_timeout): then keep the connection and its publishes going.
                    let connection_alive = state.connection.status().connected();
                    *guard = None;
                    drop(guard);
                    tracing::warn!(error = %redact_url(&e.to_string()), connection_alive, "AMQP consumer failed; restarting it");
                    if !connection_alive {
                        self.inner.drop_link(generation).await;
                    }
                }
                None => {
                    // Cancelled by the broker (queue deleted, node down) or the channel closed.
                    let generation = state.generation;
                    let connection_alive = state.connection.status().connected();
                    *guard = None;
                    drop(guard);
                    tracing::warn!(queue = %self.inner.cfg.queue, connection_alive, "AMQP consumer ended; restarting it");
                    if !connection_alive {
                        self.inner.drop_link(generation).await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        self.inner.message_count(&self.inner.cfg.queue).await
    }

    async fn dead_letters(&self) -> Result<u64, QueueError> {
        self.inner.message_count(&self.inner.cfg.dead_queue()).await
    }

    async fn dead_letter_list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        // basic.get without ack on a throw-away channel; closing it puts them all back (quorum
        // queues cannot be browsed). The broker requeues them a moment after: a count or listing
        // right after this one may briefly miss them.
        let ch = self.inner.fresh_channel().await?;
        let mut out = Vec::new();
        let name = self.inner.cfg.dead_queue();
        while out.len() < max {
            let got = ch
                .basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| backend("basic.get", e))?;
            let Some(m) = got else { break };
            let props = &m.delivery.properties;
            out.push(DeadLetter {
                body: m.delivery.data.clone(),
                attempts: header_u32(props, ATTEMPTS_HEADER).unwrap_or(0),
                error: header_string(props, ERROR_HEADER).unwrap_or_default(),
            });
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(out)
    }

    async fn close(&self) -> Result<(), QueueError> {
        self.inner.closed.cancel();
        let mut guard = self.inner.consumer.lock().await;
        if let Some(state) = guard.as_mut() {
            if !state.cancelled {
                state.cancelled = true;
                let tag = state.consumer.tag();
                if let Err(e) = state
                    .channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await
                {
                    tracing::debug!(error = %e, "AMQP basic.cancel on close");
                }
                // Deliveries already pushed to us but not handed out go back to the queue now.
                while let Ok(Some(Ok(d))) =
                    tokio::time::timeout(Duration::from_millis(200), state.consumer.next()).await
                {
                    let _ = d
                        .acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await;
                }
            }
        }
        Ok(())
    }
}

/// One delivery from RabbitMQ. Dropped unsettled, it is nacked with requeue in the background.
struct AmqpDelivery {
    inner: Arc<Inner>,
    /// Keeps the consumer channel open while this delivery is out.
    _channel: Channel,
    delivery: Option<LapinDelivery>,
    body: Vec<u8>,
    attempt: u32,
    redelivered: bool,
    deferrals: u32,
    deferred_since_ms: Option<u64>,
}

impl AmqpDelivery {
    fn new(inner: Arc<Inner>, channel: Channel, mut d: LapinDelivery) -> Self {
        let attempt = header_u32(&d.properties, ATTEMPT_HEADER).unwrap_or(0);
        let deferrals = header_u32(&d.properties, DEFERRALS_HEADER).unwrap_or(0);
        let deferred_since_ms = header_u64(&d.properties, DEFERRED_SINCE_HEADER);
        let body = std::mem::take(&mut d.data);
        AmqpDelivery {
            inner,
            _channel: channel,
            redelivered: d.redelivered,
            delivery: Some(d),
            body,
            attempt,
            deferrals,
            deferred_since_ms,
        }
    }

    fn settle_error(e: lapin::Error) -> QueueError {
        QueueError::Backend(format!(
            "AMQP settle: {e} (the channel of this delivery is gone; the broker redelivers it)"
        ))
    }

    async fn ack_inner(&mut self) -> Result<(), QueueError> {
        let Some(d) = self.delivery.take() else {
            return Ok(());
        };
        let done = d
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(Self::settle_error)?;
        Self::settled(done)
    }

    /// lapin answers `Ok(false)` when the acker is poisoned (its channel closed or failed).
    fn settled(done: bool) -> Result<(), QueueError> {
        if done {
            Ok(())
        } else {
            Err(QueueError::Backend(
                "AMQP settle: the channel of this delivery is gone (connection lost); the broker redelivers it"
                    .into(),
            ))
        }
    }
}

impl Drop for AmqpDelivery {
    fn drop(&mut self) {
        if let Some(d) = self.delivery.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = d
                        .acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await;
                });
            }
        }
    }
}

#[async_trait]
impl Delivery for AmqpDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn redelivered(&self) -> bool {
        self.redelivered
    }

    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.ack_inner().await
    }

    async fn retry(mut self: Box<Self>, delay: Duration, error: &str) -> Result<(), QueueError> {
        let attempts = self.attempt.saturating_add(1);
        let error = truncate_error(error);
        let mut headers = FieldTable::default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(error.as_str())),
        );
        if attempts >= self.inner.cfg.max_attempts.max(1) {
            headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
            headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempts));
            let dead = self.inner.cfg.dead_queue();
            self.inner
                .publish_to(&dead, &self.body, headers, None)
                .await?;
            tracing::warn!(queue = %self.inner.cfg.queue, attempts, "task dead-lettered");
        } else {
            headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempts));
            if delay.is_zero() {
                let q = self.inner.cfg.queue.clone();
                self.inner.publish_to(&q, &self.body, headers, None).await?;
            } else {
                let ms = delay_bucket_ms(delay);
                let q = self.inner.cfg.delay_queue(ms);
                self.inner
                    .publish_to(&q, &self.body, headers, Some(ms))
                    .await?;
            }
        }
        // The copy is confirmed; now the original goes. A crash in between means one duplicate
        // delivery (at-least-once), never a loss.
        self.ack_inner().await
    }

    async fn defer(mut self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(self.attempt));
        headers.insert(
            DEFERRALS_HEADER.into(),
            AMQPValue::LongUInt(self.deferrals.saturating_add(1)),
        );
        let since = self.deferred_since_ms.unwrap_or_else(epoch_ms);
        headers.insert(
            DEFERRED_SINCE_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(since).unwrap_or(i64::MAX)),
        );
        if delay.is_zero() {
            let q = self.inner.cfg.queue.clone();
            self.inner.publish_to(&q, &self.body, headers, None).await?;
        } else {
            let ms = delay_bucket_ms(delay);
            let q = self.inner.cfg.delay_queue(ms);
            self.inner
                .publish_to(&q, &self.body, headers, Some(ms))
                .await?;
        }
        // As in retry: the copy is confirmed before the original goes.
        self.ack_inner().await
    }

    async fn dead_letter(mut self: Box<Self>, error: &str) -> Result<(), QueueError> {
        let attempts = self.attempt.saturating_add(1);
        let error = truncate_error(error);
        let mut headers = FieldTable::default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(error.as_str())),
        );
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempts));
        let dead = self.inner.cfg.dead_queue();
        self.inner
            .publish_to(&dead, &self.body, headers, None)
            .await?;
        tracing::warn!(queue = %self.inner.cfg.queue, attempts, "task dead-lettered");
        self.ack_inner().await
    }

    fn deferrals(&self) -> u32 {
        self.deferrals
    }

    fn deferred_since_ms(&self) -> Option<u64> {
        self.deferred_since_ms
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        let Some(d) = self.delivery.take() else {
            return Ok(());
        };
        let done = d
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .map_err(Self::settle_error)?;
        Self::settled(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("amqp://guest:se:cr@t@10.0.0.1:5672/%2f"),
            "amqp://***@10.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("failed amqp://u:p@h and redis://:pw@r:6379/0 too"),
            "failed amqp://***@h and redis://***@r:6379/0 too"
        );
        let cfg = AmqpConfig::new("q").with_url("amqp://user:hunter2@host/vh");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***@host"), "{dbg}");
    }

    #[test]
    fn delay_buckets() {
        assert_eq!(delay_bucket_ms(Duration::ZERO), 10);
        assert_eq!(delay_bucket_ms(Duration::from_millis(100)), 100);
        assert_eq!(delay_bucket_ms(Duration::from_millis(101)), 150);
        assert_eq!(delay_bucket_ms(Duration::from_millis(2500)), 3000);
        assert_eq!(delay_bucket_ms(Duration::from_secs(60)), 70_000);
        assert_eq!(delay_bucket_ms(Duration::from_secs(1 << 40)), MAX_DELAY_MS);
        for ms in [1u64, 9, 10, 11, 99, 1234, 45_000, 3_000_000] {
            assert!(delay_bucket_ms(Duration::from_millis(ms)) >= ms);
        }
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let e = "é".repeat(MAX_ERROR_LEN);
        let t = truncate_error(&e);
        assert!(t.len() <= MAX_ERROR_LEN + 3);
    }
}
