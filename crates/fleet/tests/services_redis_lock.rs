//! Redis lease locks against the real Redis on loopback (see tests/support/services.rs for the gate).

#[path = "support/services.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imapfleet_fleet::lock::{LeaseKeeper, LockError, LockManager, RedisLocks};
use support::{enabled, redis_url, unique, within, Proxy};

async fn locks(prefix: &str) -> RedisLocks {
    RedisLocks::connect(&redis_url(), Some(prefix))
        .await
        .expect("Redis reachable (IMAPFLEET_SERVICES=1)")
}

#[tokio::test]
async fn two_managers_exclude_each_other_and_fences_grow() {
    if !enabled("two_managers_exclude_each_other_and_fences_grow") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let (a, b) = (locks(&prefix).await, locks(&prefix).await);
    let ttl = Duration::from_secs(30);
    let la = a
        .try_acquire("acct/INBOX", ttl)
        .await
        .unwrap()
        .expect("free");
    assert!(b.try_acquire("acct/INBOX", ttl).await.unwrap().is_none());
    assert!(
        a.try_acquire("acct/INBOX", ttl).await.unwrap().is_none(),
        "not re-entrant"
    );
    assert!(
        b.try_acquire("acct/Sent", ttl).await.unwrap().is_some(),
        "other keys are free"
    );
    assert!(b.is_held(&la).await.unwrap());
    // B cannot release or renew A's lease with a lease of its own making.
    let forged = imapfleet_fleet::lock::Lease {
        token: "not-the-token".into(),
        ..la.clone()
    };
    b.release(&forged).await.unwrap();
    assert!(matches!(
        b.renew(&forged, ttl).await,
        Err(LockError::Lost { .. })
    ));
    assert!(a.is_held(&la).await.unwrap());
    a.release(&la).await.unwrap();
    let lb = b
        .try_acquire("acct/INBOX", ttl)
        .await
        .unwrap()
        .expect("released");
    assert!(lb.fence > la.fence);
    assert!(
        !a.is_current("acct/INBOX", la.fence).await.unwrap(),
        "old fence refused"
    );
    assert!(a.is_current("acct/INBOX", lb.fence).await.unwrap());
    assert!(!a.is_held(&la).await.unwrap());
    // The old holder's late release does not free the new holder's lease.
    a.release(&la).await.unwrap();
    assert!(b.is_held(&lb).await.unwrap());
    for k in ["acct/INBOX", "acct/Sent"] {
        a.purge(k).await.unwrap();
    }
}

#[tokio::test]
async fn renewal_keeps_it_and_expiry_frees_it() {
    if !enabled("renewal_keeps_it_and_expiry_frees_it") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let (a, b) = (locks(&prefix).await, locks(&prefix).await);
    let ttl = Duration::from_millis(800);
    let la = a.try_acquire("k", ttl).await.unwrap().unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2000) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.renew(&la, ttl).await.unwrap();
        assert!(b.try_acquire("k", ttl).await.unwrap().is_none());
    }
    // A stops renewing (as if it hung): the lease expires after its ttl, not before.
    let stopped = Instant::now();
    let lb = within(5, "expiry", async {
        loop {
            if let Some(l) = b.try_acquire("k", ttl).await.unwrap() {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "freed after {waited:?}"
    );
    assert!(lb.fence > la.fence);
    assert!(matches!(
        a.renew(&la, ttl).await,
        Err(LockError::Lost { .. })
    ));
    a.purge("k").await.unwrap();
}

#[tokio::test]
async fn keeper_signals_loss_when_taken_over_and_the_old_fence_is_refused() {
    if !enabled("keeper_signals_loss_when_taken_over_and_the_old_fence_is_refused") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let a: Arc<dyn LockManager> = Arc::new(locks(&prefix).await);
    let b = locks(&prefix).await;
    let ttl = Duration::from_millis(900);
    let la = a.try_acquire("k", ttl).await.unwrap().unwrap();
    let keeper = LeaseKeeper::spawn(a.clone(), la.clone(), ttl);
    // The heartbeat keeps it well past its ttl.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!keeper.is_lost());
    assert!(b.try_acquire("k", ttl).await.unwrap().is_none());
    // The lease vanishes (Redis restarted, key evicted, clock jump) and B takes the folder.
    let mut conn = support_conn().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:lock:k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let lb = b.try_acquire("k", ttl).await.unwrap().expect("taken over");
    let lost = keeper.lost();
    within(2, "loss signalled", lost.cancelled()).await;
    assert!(keeper.check().is_err());
    // Fencing: A's writes would carry its old fence, and that is refused now.
    assert!(!a.is_current("k", la.fence).await.unwrap());
    assert!(a.is_current("k", lb.fence).await.unwrap());
    // A's keeper going away does not free B's lease.
    keeper.release().await.unwrap();
    assert!(b.is_held(&lb).await.unwrap());
    b.purge("k").await.unwrap();
}

#[tokio::test]
async fn keeper_signals_loss_when_redis_is_unreachable() {
    if !enabled("keeper_signals_loss_when_redis_is_unreachable") {
        return;
    }
    let (_, target, _) = support::authority(&redis_url());
    let proxy = Proxy::start(target).await;
    let prefix = unique("imapfleet-test");
    let a: Arc<dyn LockManager> = Arc::new(
        RedisLocks::connect(&proxy.url(&redis_url()), Some(&prefix))
            .await
            .unwrap(),
    );
    let ttl = Duration::from_millis(1200);
    let la = a.try_acquire("k", ttl).await.unwrap().unwrap();
    let keeper = LeaseKeeper::spawn(a.clone(), la, ttl);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!keeper.is_lost());
    let cut = Instant::now();
    drop(proxy);
    let lost = keeper.lost();
    within(5, "loss signalled", lost.cancelled()).await;
    // Before the lease could expire in Redis and be taken by someone else.
    assert!(cut.elapsed() < ttl, "lost after {:?}", cut.elapsed());
    drop(keeper);
    locks(&prefix).await.purge("k").await.unwrap();
}

async fn support_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The child side of `a_holder_killed_with_sigkill_frees_the_key_after_its_ttl`: holds a lease
/// with a heartbeat until killed. Does nothing when run as a normal test.
#[tokio::test]
async fn child_lease_holder() {
    let (Ok(prefix), Ok(key)) = (
        std::env::var("IMAPFLEET_TEST_CHILD_PREFIX"),
        std::env::var("IMAPFLEET_TEST_CHILD_KEY"),
    ) else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let a: Arc<dyn LockManager> = Arc::new(locks(&prefix).await);
    let lease = a.try_acquire(&key, ttl).await.unwrap().expect("free");
    let _keeper = LeaseKeeper::spawn(a, lease.clone(), ttl);
    println!("\nACQUIRED {}", lease.fence);
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_holder_killed_with_sigkill_frees_the_key_after_its_ttl() {
    if !enabled("a_holder_killed_with_sigkill_frees_the_key_after_its_ttl") {
        return;
    }
    let prefix = unique("imapfleet-test");
    let key = "acct/INBOX";
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_lease_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IMAPFLEET_TEST_CHILD_PREFIX", &prefix)
        .env("IMAPFLEET_TEST_CHILD_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let fence: u64 = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest may have printed "test child_lease_holder ... " on the same line.
            if let Some((_, f)) = line.split_once("ACQUIRED ") {
                return f.trim().parse().unwrap();
            }
        }
        panic!("child ended without acquiring");
    })
    .await
    .unwrap();
    let b = locks(&prefix).await;
    let ttl = Duration::from_millis(1500);
    // Its heartbeat holds it beyond the ttl while it lives.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(b.try_acquire(key, ttl).await.unwrap().is_none());
    child.kill().unwrap(); // SIGKILL: no release, no goodbye
    let killed = Instant::now();
    child.wait().unwrap();
    let lb = within(5, "key freed", async {
        loop {
            if let Some(l) = b.try_acquire(key, ttl).await.unwrap() {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    let waited = killed.elapsed();
    assert!(
        waited <= ttl + Duration::from_millis(500),
        "stuck {waited:?}"
    );
    assert!(lb.fence > fence);
    assert!(!b.is_current(key, fence).await.unwrap());
    b.purge(key).await.unwrap();
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error_without_the_password() {
    if !enabled("unreachable_redis_is_a_clear_error_without_the_password") {
        return;
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = RedisLocks::connect(&format!("redis://:s3cret@127.0.0.1:{port}/"), None)
        .await
        .expect_err("nothing there")
        .to_string();
    assert!(!e.contains("s3cret"), "{e}");
    assert!(e.contains("Redis connect"), "{e}");
}
