//! The AMQP queue against the real RabbitMQ on loopback (see tests/support/services.rs for the gate).

#[path = "support/services.rs"]
mod support;

use std::time::{Duration, Instant};

use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue, DeadLetter, Delivery, QueueError, TaskQueue};
use support::{amqp_url, enabled, unique, within, Proxy};

fn config(name: &str) -> AmqpConfig {
    AmqpConfig::new(name)
        .with_url(amqp_url())
        .with_reconnect_for(Duration::from_secs(10))
}

async fn connect(cfg: AmqpConfig) -> AmqpQueue {
    AmqpQueue::connect(cfg)
        .await
        .expect("RabbitMQ reachable (IMAPFLEET_SERVICES=1)")
}

async fn next(q: &AmqpQueue) -> Box<dyn Delivery> {
    within(10, "a delivery", q.next())
        .await
        .expect("next")
        .expect("queue open")
}

/// Depth as the broker reports it (quorum queue counters settle within a moment).
async fn depth_becomes(q: &AmqpQueue, want: u64) {
    let t = Instant::now();
    loop {
        let d = q.depth().await.expect("depth");
        if d == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "depth {d}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publish_consume_ack_in_order() {
    if !enabled("publish_consume_ack_in_order") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name)).await;
    for i in 0..3 {
        q.publish(format!("task {i}").as_bytes()).await.unwrap();
    }
    depth_becomes(&q, 3).await;
    for i in 0..3 {
        let d = next(&q).await;
        assert_eq!(d.body(), format!("task {i}").as_bytes());
        assert_eq!(d.attempt(), 0);
        assert!(!d.redelivered());
        d.ack().await.unwrap();
    }
    depth_becomes(&q, 0).await;
    q.shutdown().await;
    // Acknowledged means gone: a new connection finds nothing.
    let q2 = connect(config(&name)).await;
    assert!(tokio::time::timeout(Duration::from_millis(500), q2.next())
        .await
        .is_err());
    q2.delete_queues(&[]).await.unwrap();
    q2.shutdown().await;
}

#[tokio::test]
async fn retry_backs_off_then_dead_letters_with_the_last_error() {
    if !enabled("retry_backs_off_then_dead_letters_with_the_last_error") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name).with_max_attempts(3)).await;
    q.publish(b"flaky task").await.unwrap();
    let delays = [Duration::from_millis(300), Duration::from_millis(700)];
    let mut d = next(&q).await;
    for (attempt, delay) in delays.iter().enumerate() {
        assert_eq!(d.attempt(), attempt as u32);
        assert_eq!(d.body(), b"flaky task");
        let t = Instant::now();
        d.retry(*delay, &format!("error {attempt}")).await.unwrap();
        // Waiting in its delay queue, not in the task queue.
        assert_eq!(q.depth().await.unwrap(), 0);
        assert!(q.delayed(*delay).await.unwrap() <= 1);
        d = next(&q).await;
        let waited = t.elapsed();
        assert!(
            waited >= *delay,
            "came back after {waited:?}, delay {delay:?}"
        );
        assert!(waited < *delay + Duration::from_secs(5), "{waited:?}");
    }
    assert_eq!(d.attempt(), 2);
    d.retry(
        Duration::from_secs(1),
        "final: NO [AUTHENTICATIONFAILED] for amqp://u:pw@x/",
    )
    .await
    .unwrap();
    let t = Instant::now();
    while q.dead_letters().await.unwrap() < 1 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = q.dead_letter_list(10).await.unwrap();
    assert_eq!(
        dead,
        vec![DeadLetter {
            body: b"flaky task".to_vec(),
            attempts: 3,
            error: "final: NO [AUTHENTICATIONFAILED] for amqp://***@x/".into(),
        }]
    );
    // Listing does not remove (the broker puts the listed messages back a moment later).
    let t = Instant::now();
    while q.dead_letters().await.unwrap() != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "dead letter back after listing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.dead_letter_list(10).await.unwrap().len(), 1);
    // And the task is not delivered again.
    assert!(tokio::time::timeout(Duration::from_millis(500), q.next())
        .await
        .is_err());
    q.delete_queues(&delays).await.unwrap();
    q.shutdown().await;
}

#[tokio::test]
async fn requeue_comes_back_at_once_without_an_attempt() {
    if !enabled("requeue_comes_back_at_once_without_an_attempt") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name)).await;
    q.publish(b"slice").await.unwrap();
    let d = next(&q).await;
    d.requeue().await.unwrap();
    let d = next(&q).await;
    assert_eq!(d.body(), b"slice");
    assert_eq!(d.attempt(), 0);
    assert!(d.redelivered());
    d.ack().await.unwrap();
    q.delete_queues(&[]).await.unwrap();
    q.shutdown().await;
}

#[tokio::test]
async fn prefetch_bounds_what_one_consumer_holds() {
    if !enabled("prefetch_bounds_what_one_consumer_holds") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let a = connect(config(&name).with_prefetch(2)).await;
    for i in 0..5 {
        a.publish(format!("{i}").as_bytes()).await.unwrap();
    }
    let a1 = next(&a).await;
    let a2 = next(&a).await;
    // With prefetch 2, A holds 2 unacknowledged and the broker pushes it no more: B gets the rest.
    let b = connect(config(&name).with_prefetch(10)).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next(&b).await;
        got.push(String::from_utf8(d.body().to_vec()).unwrap());
        d.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, ["2", "3", "4"]);
    assert_eq!(a1.body(), b"0");
    assert_eq!(a2.body(), b"1");
    a1.ack().await.unwrap();
    a2.ack().await.unwrap();
    a.delete_queues(&[]).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unacked_work_of_a_vanished_consumer_is_redelivered() {
    if !enabled("unacked_work_of_a_vanished_consumer_is_redelivered") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name)).await;
    q.publish(b"half done").await.unwrap();
    let d = next(&q).await;
    assert!(!d.redelivered());
    // The process "dies": its connection closes with the delivery unacknowledged.
    std::mem::forget(d);
    q.shutdown().await;
    let q2 = connect(config(&name)).await;
    let d = next(&q2).await;
    assert_eq!(d.body(), b"half done");
    assert!(d.redelivered());
    assert_eq!(d.attempt(), 0);
    d.ack().await.unwrap();
    q2.delete_queues(&[]).await.unwrap();
    q2.shutdown().await;
}

#[tokio::test]
async fn queues_are_quorum_and_messages_persistent() {
    if !enabled("queues_are_quorum_and_messages_persistent") {
        return;
    }
    use lapin::options::{BasicGetOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name)).await;
    q.publish(b"durable").await.unwrap();
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let m = ch
        .basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("the message");
    assert_eq!(m.delivery.data, b"durable");
    assert_eq!(
        *m.delivery.properties.delivery_mode(),
        Some(2),
        "persistent"
    );
    drop(m);
    let _ = ch.close(200, "OK".into()).await;
    // Declaring it as a classic queue is refused: it is a durable quorum queue.
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let e = r.expect_err("inequivalent x-queue-type").to_string();
    assert!(
        e.contains("x-queue-type") || e.contains("PRECONDITION"),
        "{e}"
    );
    let _ = conn.close(200, "OK".into()).await;
    q.delete_queues(&[]).await.unwrap();
    q.shutdown().await;
}

#[tokio::test]
async fn close_ends_waiting_consumers_and_refuses_publish() {
    if !enabled("close_ends_waiting_consumers_and_refuses_publish") {
        return;
    }
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name).with_prefetch(5)).await;
    q.publish(b"x").await.unwrap();
    let held = next(&q).await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.next().await.map(|d| d.is_none()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.close().await.unwrap();
    assert!(within(5, "waiter ends", waiter).await.unwrap().unwrap());
    assert!(q.next().await.unwrap().is_none());
    assert!(matches!(q.publish(b"y").await, Err(QueueError::Closed)));
    // A delivery taken before the close can still be settled.
    held.ack().await.unwrap();
    q.delete_queues(&[]).await.unwrap();
    q.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_connection_is_cut() {
    if !enabled("reconnects_after_the_connection_is_cut") {
        return;
    }
    let (_, target, _) = support::authority(&amqp_url());
    let proxy = Proxy::start(target).await;
    let name = unique("imapfleet-test-q");
    let q = connect(config(&name).with_url(proxy.url(&amqp_url()))).await;
    q.publish(b"survivor").await.unwrap();
    let d = next(&q).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The delivery's channel is gone: settling it fails clearly, and the broker keeps the message.
    let e = d.ack().await.expect_err("ack on a dead connection");
    assert!(e.to_string().contains("redeliver"), "{e}");
    // The next call reconnects and gets it again.
    let d = next(&q).await;
    assert_eq!(d.body(), b"survivor");
    assert!(d.redelivered());
    d.ack().await.unwrap();
    q.publish(b"after").await.unwrap();
    let d = next(&q).await;
    assert_eq!(d.body(), b"after");
    d.ack().await.unwrap();
    q.delete_queues(&[]).await.unwrap();
    q.shutdown().await;
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_error_without_the_password() {
    if !enabled("unreachable_broker_is_a_clear_error_without_the_password") {
        return;
    }
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let cfg =
        AmqpConfig::new("nowhere").with_url(format!("amqp://guest:s3cret@127.0.0.1:{port}/%2f"));
    let e = AmqpQueue::connect(cfg)
        .await
        .expect_err("nothing there")
        .to_string();
    assert!(!e.contains("s3cret"), "{e}");
    assert!(e.contains("AMQP connect"), "{e}");
}
