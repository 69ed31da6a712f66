//! Fleet-wide limits against the real Redis on loopback (see tests/support/services.rs for the gate).

#[path = "support/services.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imapfleet_fleet::limits::{
    ConnectionLimits, LimitError, LimitStore, LimitsConfig, RateLimits, RedisLimitStore, Slot,
};
use support::{enabled, redis_url, unique};

async fn store() -> Arc<RedisLimitStore> {
    Arc::new(
        RedisLimitStore::connect(&redis_url())
            .await
            .expect("Redis reachable (IMAPFLEET_SERVICES=1)"),
    )
}

fn cfg(prefix: &str, per_host: u32, per_account: u32) -> LimitsConfig {
    LimitsConfig {
        per_host,
        per_account,
        ttl: Duration::from_secs(3),
        prefix: prefix.to_string(),
        ..LimitsConfig::default()
    }
}

#[tokio::test]
async fn two_limiters_share_the_caps() {
    if !enabled("two_limiters_share_the_caps") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let a = ConnectionLimits::new(store().await, cfg(&prefix, 4, 3));
    let b = ConnectionLimits::new(store().await, cfg(&prefix, 4, 3));
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (in_use, peak) = (in_use.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let p = l
                .acquire("imap.example", "alice", Duration::from_secs(20))
                .await
                .unwrap();
            let n = in_use.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
            in_use.fetch_sub(1, Ordering::SeqCst);
            p.release().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "per-account cap across both limiters"
    );
    assert_eq!(
        a.open_for_account("imap.example", "alice").await.unwrap(),
        0
    );

    // The host cap counts every account: 4 slots between alice and bob.
    let mut held = Vec::new();
    for user in ["alice", "alice", "alice", "bob"] {
        let l = if held.len() % 2 == 0 { &a } else { &b };
        held.push(
            l.try_acquire("imap.example", user)
                .await
                .unwrap()
                .expect("under the caps"),
        );
    }
    assert!(
        b.try_acquire("imap.example", "bob")
            .await
            .unwrap()
            .is_none(),
        "host cap"
    );
    assert_eq!(b.open_on_host("IMAP.EXAMPLE").await.unwrap(), 4);
    let e = b
        .acquire("imap.example", "carol", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, LimitError::Busy { .. }), "{e}");
    drop(held);
    let t = Instant::now();
    while a.open_on_host("imap.example").await.unwrap() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "dropped permits released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crashed_holder_ages_out_and_a_live_one_stays() {
    if !enabled("a_crashed_holder_ages_out_and_a_live_one_stays") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let s = store().await;
    let l = ConnectionLimits::new(s.clone(), cfg(&prefix, 0, 1));
    // A live permit renews itself past its 3 s ttl.
    let live = l.try_acquire("h", "alice").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(l.try_acquire("h", "alice").await.unwrap().is_none());
    live.release().await.unwrap();
    // A holder that vanished (no heartbeat, no release): its slot frees after its ttl.
    let slots = [Slot {
        key: l.config().account_key("h", "bob"),
        cap: 1,
    }];
    assert!(s
        .try_take(&slots, "killed-worker", Duration::from_millis(800))
        .await
        .unwrap());
    assert!(l.try_acquire("h", "bob").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let p = l.try_acquire("h", "bob").await.unwrap().expect("aged out");
    p.release().await.unwrap();
}

#[tokio::test]
async fn message_rate_is_shared_by_two_workers() {
    if !enabled("message_rate_is_shared_by_two_workers") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let a = RateLimits::new(store().await, &prefix, 40.0, 0.0);
    let b = RateLimits::new(store().await, &prefix, 40.0, 0.0);
    let start = Instant::now();
    let ta = tokio::spawn(async move {
        for _ in 0..40 {
            a.throttle("imap.example", 1, 0).await.unwrap();
        }
    });
    let tb = tokio::spawn(async move {
        for _ in 0..40 {
            b.throttle("imap.example", 1, 0).await.unwrap();
        }
    });
    ta.await.unwrap();
    tb.await.unwrap();
    // 80 messages at 40/s with a burst of 40: about 1 s; each alone would have taken none.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(850), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}
