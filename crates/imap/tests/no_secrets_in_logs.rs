//! With every log at TRACE (tracing and the `log` records of async-imap), logging in with each
//! method never writes the password, the SASL response or its base64 form. Needs the lab
//! (`IMAPFLEET_LAB=1`); prints a skip note otherwise.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security, Session};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_trace_logs() {
    if std::env::var("IMAPFLEET_LAB").as_deref() != Ok("1") {
        eprintln!("SKIP no_secret_in_trace_logs: IMAPFLEET_LAB is not set to 1");
        return;
    }
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("subscriber");
    let pw =
        std::fs::read_to_string("/dev/shm/imapfleet-lab/awkward.pass").expect("awkward password");
    for auth in [AuthMethod::Login, AuthMethod::Plain] {
        for (security, port) in [(Security::Plain, 1143), (Security::StartTls, 1143)] {
            let ep = Endpoint {
                label: "host1".into(),
                host: "127.0.0.1".into(),
                port,
                security,
                user: "awkward".into(),
                authuser: None,
                password: Secret::new(pw.clone()),
                auth: auth.clone(),
                ca_file: Some("/dev/shm/imapfleet-lab/tls/ca.pem".into()),
                insecure: false,
                timeout: Duration::from_secs(20),
            };
            tracing::info!("endpoint {ep:?}");
            let mut s = Session::connect(&ep).await.expect("login");
            s.noop().await.expect("noop");
            s.logout().await;
            // A failing login too (the error is logged by callers).
            let mut bad = ep.clone();
            bad.password = Secret::new(format!("{pw}x"));
            if let Err(e) = Session::connect(&bad).await {
                tracing::error!("login failed: {e} / {e:?}");
            }
        }
    }
    let out = String::from_utf8_lossy(&buf.0.lock().expect("lock")).to_string();
    assert!(
        out.contains("LOGIN"),
        "trace logs were captured: {}",
        &out[..out.len().min(500)]
    );
    assert!(
        out.contains("run_command_parts"),
        "async-imap log records were captured too"
    );
    let plain = format!("\0awkward\0{pw}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
    for needle in [pw.as_str(), "pass word*", b64.as_str(), &b64[..20]] {
        assert!(!out.contains(needle), "secret {needle:?} found in the logs");
    }
}
