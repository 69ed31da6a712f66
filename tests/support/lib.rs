//! Shared helpers for the integration tests: the lab's endpoints, fresh users, the binary.
//!
//! Tests that need the lab call [`lab`]. With `IMAPFLEET_LAB=1` (set by `scripts/test.sh`) the lab must
//! answer or the test fails; without it, such tests print a skip note and return, so `cargo test` on a
//! machine without the lab still runs the pure tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};

/// The scripted fake IMAP server for the cases that need a misbehaving server.
pub mod fake_server;

/// Facts about the running lab (from `scripts/lab.sh env`).
#[derive(Debug, Clone)]
pub struct Lab {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub host1_port: u16,
    pub host2_port: u16,
    pub host1_tls_port: u16,
    pub host2_tls_port: u16,
    /// host3: Courier-like, every folder under `INBOX.`, separator `.`.
    pub host3_port: u16,
    pub password: String,
}

/// The project's root directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        .is_ok()
}

/// The lab, or `None` (with a note) when it is not required and not running.
pub fn lab() -> Option<Lab> {
    let required = std::env::var("IMAPFLEET_LAB")
        .map(|v| v == "1")
        .unwrap_or(false);
    let dir =
        PathBuf::from(std::env::var("LAB_DIR").unwrap_or_else(|_| "/dev/shm/imapfleet-lab".into()));
    let up = port_open(1143) && port_open(2143);
    if !up {
        if required {
            panic!("IMAPFLEET_LAB=1 but the lab does not answer on 127.0.0.1:1143/2143: run scripts/lab.sh start");
        }
        eprintln!("SKIP: the lab is not running (scripts/lab.sh start, or run scripts/test.sh)");
        return None;
    }
    Some(Lab {
        ca: dir.join("tls/ca.pem"),
        dir,
        host1_port: 1143,
        host2_port: 2143,
        host1_tls_port: 1993,
        host2_tls_port: 2993,
        host3_port: 3143,
        password: "secret".into(),
    })
}

impl Lab {
    /// An endpoint for `user` on host 1, 2 or 3: STARTTLS, certificate checked against the lab CA.
    pub fn endpoint(&self, host: u8, user: &str) -> Endpoint {
        Endpoint {
            label: format!("host{host}"),
            host: "127.0.0.1".into(),
            port: match host {
                1 => self.host1_port,
                2 => self.host2_port,
                _ => self.host3_port,
            },
            security: Security::StartTls,
            user: user.into(),
            authuser: None,
            password: Secret::new(self.password.clone()),
            auth: AuthMethod::Auto,
            ca_file: Some(self.ca.clone()),
            insecure: false,
            timeout: Duration::from_secs(60),
        }
    }

    /// Delete all mail of `user` on host 1 or 2.
    pub fn wipe(&self, host: u8, user: &str) {
        let status = Command::new(root().join("scripts/lab.sh"))
            .args(["wipe", &host.to_string(), user])
            .env("IMAPFLEET_LAB_DIR", &self.dir)
            .status()
            .expect("run scripts/lab.sh wipe");
        assert!(status.success(), "wiping {user} on host{host} failed");
    }

    /// Wipe `user` on both hosts.
    pub fn fresh(&self, user: &str) {
        self.wipe(1, user);
        self.wipe(2, user);
    }

    /// Path of the lab's Dovecot config for host 1 or 2 (for `doveadm -c`).
    pub fn conf(&self, host: u8) -> PathBuf {
        self.dir.join(format!("host{host}/dovecot.conf"))
    }

    /// A file holding the lab password (for `--passfile`).
    pub fn passfile(&self) -> PathBuf {
        let p = self.dir.join("password.txt");
        std::fs::write(&p, format!("{}\n", self.password)).expect("write passfile");
        p
    }

    /// The imapsync-style connection options for `user1` on host1 and `user2` on host2.
    pub fn cli_args(&self, user1: &str, user2: &str) -> Vec<String> {
        let pf = self.passfile().display().to_string();
        let ca = self.ca.display().to_string();
        [
            "--host1",
            "127.0.0.1",
            "--port1",
            &self.host1_port.to_string(),
            "--user1",
            user1,
            "--passfile1",
            &pf,
            "--cafile1",
            &ca,
            "--host2",
            "127.0.0.1",
            "--port2",
            &self.host2_port.to_string(),
            "--user2",
            user2,
            "--passfile2",
            &pf,
            "--cafile2",
            &ca,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// The `imapfleet` binary built by `cargo test --workspace` (target/<profile>/imapfleet).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/imapfleet
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join("imapfleet");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`) or run `scripts/test.sh`",
        p.display()
    );
    p
}

/// The real-world corpus (`../shared/corpus`), when present.
pub fn corpus_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("IMAPFLEET_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let p = root().join("../shared/corpus");
    p.join("MANIFEST.tsv").exists().then_some(p)
}

/// What a mailbox holds, folder by folder: (uid, sorted flags without `\Recent`, size). Used to prove a
/// side was not changed (host1 after a sync) or to count messages.
pub type Snapshot = std::collections::BTreeMap<String, Vec<(u32, Vec<String>, u32)>>;

/// Read every selectable folder of `ep` read-only (EXAMINE) and list its messages.
pub async fn snapshot(ep: &Endpoint) -> Snapshot {
    let mut s = imapfleet_imap::Session::connect(ep)
        .await
        .expect("connect for snapshot");
    let mut out = Snapshot::new();
    for f in s.list().await.expect("LIST") {
        if f.noselect {
            continue;
        }
        let info = s.select(&f.raw_name, true).await.expect("EXAMINE");
        let mut msgs = Vec::new();
        if info.exists > 0 {
            for m in s
                .fetch_meta("1:*", &["Message-Id".to_string()])
                .await
                .expect("FETCH")
            {
                let mut flags: Vec<String> = m
                    .flags
                    .into_iter()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .collect();
                flags.sort();
                msgs.push((m.uid, flags, m.size));
            }
        }
        out.insert(f.name, msgs);
    }
    s.logout().await;
    out
}

/// Total number of messages in a snapshot.
pub fn count(s: &Snapshot) -> usize {
    s.values().map(Vec::len).sum()
}

/// Create `folder` (UTF-8 name with the server's separator) if needed and APPEND raw messages to it.
pub async fn append_raw(ep: &Endpoint, folder: &str, messages: &[Vec<u8>]) {
    let mut s = imapfleet_imap::Session::connect(ep)
        .await
        .expect("connect for append");
    let raw = imapfleet_imap::mutf7::encode(folder);
    if !folder.eq_ignore_ascii_case("INBOX") {
        // "already exists" is fine here.
        let _ = s.create(&raw).await;
    }
    for chunk in messages.chunks(50) {
        let reqs: Vec<imapfleet_imap::AppendRequest<'_>> = chunk
            .iter()
            .map(|m| imapfleet_imap::AppendRequest {
                flags: vec![],
                internaldate: None,
                body: m,
            })
            .collect();
        s.append(&raw, &reqs).await.expect("APPEND");
    }
    s.logout().await;
}

/// A fresh, empty state directory for one test (unique per test name and process).
pub fn state_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("imapfleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Default sync options with saved state in the file backend under `dir` (no fencing: token 0).
pub fn with_state(dir: &std::path::Path) -> imapfleet_sync::engine::SyncOptions {
    imapfleet_sync::engine::SyncOptions {
        state: Some(imapfleet_sync::state::StateHandle::new(
            std::sync::Arc::new(
                imapfleet_sync::state::file::FileState::new(dir).expect("state dir"),
            ),
            0,
        )),
        ..imapfleet_sync::engine::SyncOptions::default()
    }
}

/// A small generated mailbox: `messages` messages of 1–6 kB in `folders` folders, no big ones;
/// `seed` gives distinct Message-Ids.
pub fn small_spec(seed: u64, folders: usize, messages: usize) -> imapfleet_mailgen::MailboxSpec {
    imapfleet_mailgen::MailboxSpec {
        seed,
        folders,
        messages,
        target_bytes: messages as u64 * 3_000,
        min_message_bytes: 1_000,
        max_message_bytes: 6_000,
        big_messages: 0,
        ..imapfleet_mailgen::MailboxSpec::small()
    }
}

/// APPEND a generated mailbox to host1 (separator '.'), as `transform` leaves each folder.
pub async fn fill_host1_with(
    ep: &Endpoint,
    spec: &imapfleet_mailgen::MailboxSpec,
    transform: impl FnMut(imapfleet_mailgen::GenFolder) -> imapfleet_mailgen::GenFolder,
) {
    let mut s = imapfleet_imap::Session::connect(ep)
        .await
        .expect("connect host1");
    imapfleet_mailgen::fill(&mut s, '.', spec.generate().map(transform))
        .await
        .expect("fill host1");
    s.logout().await;
}

/// A small test message with Message-ID `<{tag}-{i}@example.com>` and subject `{tag} {i}`.
pub fn message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.org\r\nSubject: {tag} {i}\r\n\
Message-ID: <{tag}-{i}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {tag} {i}\r\n"
    )
    .into_bytes()
}

/// Every UID of the folder `session` has selected, in order.
pub async fn selected_uids(session: &mut imapfleet_imap::Session) -> Vec<u32> {
    session
        .fetch_meta("1:*", &[])
        .await
        .expect("UID FETCH 1:*")
        .iter()
        .map(|m| m.uid)
        .collect()
}
