//! Shared by the tests that need the real RabbitMQ and Redis on loopback (`scripts/services.sh`).
//!
//! `IMAPFLEET_SERVICES=1`: the services must be reachable (a test fails when they are not).
//! Unset: each such test prints a skip note and passes.
#![allow(dead_code)]

use std::time::Duration;

pub fn enabled(test: &str) -> bool {
    if std::env::var("IMAPFLEET_SERVICES").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skip {test}: IMAPFLEET_SERVICES is not 1 (scripts/services.sh start; export IMAPFLEET_SERVICES=1)");
        false
    }
}

pub fn amqp_url() -> String {
    std::env::var("IMAPFLEET_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("IMAPFLEET_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("randomness");
    format!("{prefix}-{}", hex::encode(b))
}

/// `host:port` of a URL such as `amqp://u:p@127.0.0.1:5672/%2f`.
pub fn authority(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let end = rest.find('/').unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    let (userinfo, hostport) = match auth.rfind('@') {
        Some(i) => (&auth[..=i], &auth[i + 1..]),
        None => ("", auth),
    };
    (
        format!("{scheme}://{userinfo}"),
        hostport.to_string(),
        path.to_string(),
    )
}

/// A loopback TCP proxy in front of `target` whose live connections can be cut at will (a broker
/// or Redis "going away" under a client, without touching the shared service).
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    /// Cut every connection open now (new ones still go through).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Rewrite `url` to go through this proxy.
    pub fn url(&self, url: &str) -> String {
        let (prefix, _, path) = authority(url);
        format!("{prefix}{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {secs} s"))
}
