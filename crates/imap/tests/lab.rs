//! Integration tests against the lab Dovecot (`scripts/lab.sh start`).
//!
//! `IMAPFLEET_LAB=1`: the lab must be up, and a test fails when it is not.
//! `IMAPFLEET_LAB` unset: every test here prints a skip note and returns.
//!
//! The tests use users user0281..user0300 and folders named `t<pid><n>...`, so they do not step on
//! other suites, and delete what they create.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use imapfleet_imap::{
    AppendRequest, AuthMethod, Endpoint, ImapError, Secret, Security, Session, SpecialUse,
    StoreMode,
};

struct Lab {
    vars: HashMap<String, String>,
}

impl Lab {
    fn get(&self, k: &str, default: &str) -> String {
        self.vars
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    fn port(&self, k: &str, default: u16) -> u16 {
        self.vars
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    fn ca(&self) -> PathBuf {
        PathBuf::from(self.get("LAB_CA", "/dev/shm/imapfleet-lab/tls/ca.pem"))
    }
    fn endpoint(&self, host: u8, security: Security, user: &str, password: &str) -> Endpoint {
        let (h, p, tp) = if host == 1 {
            (
                "LAB_HOST1",
                self.port("LAB_HOST1_PORT", 1143),
                self.port("LAB_HOST1_TLS_PORT", 1993),
            )
        } else {
            (
                "LAB_HOST2",
                self.port("LAB_HOST2_PORT", 2143),
                self.port("LAB_HOST2_TLS_PORT", 2993),
            )
        };
        Endpoint {
            label: format!("host{host}"),
            host: self.get(h, "127.0.0.1"),
            port: if security == Security::Tls { tp } else { p },
            security,
            user: user.to_string(),
            authuser: None,
            password: Secret::new(password),
            auth: AuthMethod::Auto,
            ca_file: Some(self.ca()),
            insecure: false,
            timeout: Duration::from_secs(20),
        }
    }
    fn user(&self, host: u8, n: u32) -> Endpoint {
        let pw = self.get("LAB_PASSWORD", "secret");
        self.endpoint(host, Security::StartTls, &format!("user{n:04}"), &pw)
    }
}

fn lab(test: &str) -> Option<Lab> {
    match std::env::var("IMAPFLEET_LAB").as_deref() {
        Ok("1") => {}
        _ => {
            eprintln!("SKIP {test}: IMAPFLEET_LAB is not set to 1 (start the lab with scripts/lab.sh start)");
            return None;
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab.sh");
    let mut vars = HashMap::new();
    if let Ok(out) = std::process::Command::new("bash")
        .arg(&script)
        .arg("env")
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    let lab = Lab { vars };
    let addr = format!(
        "{}:{}",
        lab.get("LAB_HOST1", "127.0.0.1"),
        lab.port("LAB_HOST1_PORT", 1143)
    );
    if std::net::TcpStream::connect_timeout(
        &addr.parse().expect("lab address"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("IMAPFLEET_LAB=1 but the lab does not answer on {addr}: run scripts/lab.sh start");
    }
    Some(lab)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A folder name nobody else uses.
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos}", std::process::id())
}

fn message(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: test {id}\r\n\
         Message-ID: <{id}@example.com>\r\nDate: Mon, 3 Dec 2018 10:11:12 +0100\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn date(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("test date")
}

#[tokio::test]
async fn login_plain_starttls_tls_insecure() {
    let Some(lab) = lab("login_plain_starttls_tls_insecure") else {
        return;
    };
    let pw = lab.get("LAB_PASSWORD", "secret");
    for (sec, insecure, ca) in [
        (Security::Plain, false, false),
        (Security::StartTls, false, true),
        (Security::Tls, false, true),
        (Security::Tls, true, false),
        (Security::StartTls, true, false),
    ] {
        let mut ep = lab.endpoint(1, sec, "user0281", &pw);
        ep.insecure = insecure;
        if !ca {
            ep.ca_file = None;
        }
        let mut s = Session::connect(&ep)
            .await
            .unwrap_or_else(|e| panic!("{sec:?} insecure={insecure}: {e}"));
        let caps = s.capabilities().clone();
        assert!(caps.has("IMAP4rev1"), "{caps:?}");
        // Capabilities after login, not the greeting's subset.
        assert!(
            caps.has("UIDPLUS") && caps.has("MULTIAPPEND") && caps.has("CONDSTORE"),
            "{caps:?}"
        );
        s.noop().await.expect("noop");
        let enabled = s
            .enable(&["CONDSTORE", "UTF8=ACCEPT"])
            .await
            .expect("enable");
        assert_eq!(enabled, vec!["CONDSTORE".to_string()]);
        assert!(
            s.capabilities().has("UIDPLUS"),
            "ENABLED is not a CAPABILITY: {:?}",
            s.capabilities()
        );
        let id = s.id().await.expect("id").expect("Dovecot offers ID");
        assert!(id.iter().any(|(k, _)| k == "name"), "{id:?}");
        s.logout().await;
    }
}

#[tokio::test]
async fn tls_without_the_lab_ca_is_refused() {
    let Some(lab) = lab("tls_without_the_lab_ca_is_refused") else {
        return;
    };
    let pw = lab.get("LAB_PASSWORD", "secret");
    for sec in [Security::Tls, Security::StartTls] {
        let mut ep = lab.endpoint(1, sec, "user0281", &pw);
        ep.ca_file = None;
        match Session::connect(&ep).await {
            Err(ImapError::Tls { reason, .. }) => assert!(!reason.is_empty()),
            Err(e) => panic!("{sec:?}: expected a TLS error, got {e}"),
            Ok(_) => panic!("{sec:?}: a self-signed lab certificate was accepted without its CA"),
        }
    }
    // Wrong name: the certificate is for localhost / 127.0.0.1.
    let mut ep = lab.endpoint(1, Security::Tls, "user0281", &pw);
    ep.host = "127.0.0.2".into();
    assert!(matches!(
        Session::connect(&ep).await,
        Err(ImapError::Tls { .. }) | Err(ImapError::Connect { .. })
    ));
}

#[tokio::test]
async fn wrong_password_and_refused_port() {
    let Some(lab) = lab("wrong_password_and_refused_port") else {
        return;
    };
    for auth in [AuthMethod::Auto, AuthMethod::Login, AuthMethod::Plain] {
        let mut ep = lab.endpoint(1, Security::StartTls, "user0281", "not-the-password");
        ep.auth = auth.clone();
        match Session::connect(&ep).await {
            Err(ImapError::Auth { user, reason }) => {
                assert_eq!(user, "user0281");
                assert!(!reason.contains("not-the-password"));
            }
            Err(e) => panic!("{auth:?}: expected Auth, got {e}"),
            Ok(_) => panic!("{auth:?}: logged in with a wrong password"),
        }
    }
    let mut ep = lab.endpoint(1, Security::Plain, "user0281", "secret");
    ep.port = 1; // nothing listens there
    assert!(matches!(
        Session::connect(&ep).await,
        Err(ImapError::Connect { .. })
    ));
}

#[tokio::test]
async fn awkward_password_every_method() {
    let Some(lab) = lab("awkward_password_every_method") else {
        return;
    };
    let file = lab.get(
        "LAB_AWKWARD_PASSFILE",
        "/dev/shm/imapfleet-lab/awkward.pass",
    );
    let pw = std::fs::read_to_string(&file).expect("awkward password file");
    assert!(pw.contains('"') && pw.contains('\\') && !pw.is_ascii());
    let user = lab.get("LAB_AWKWARD_USER", "awkward");
    for auth in [AuthMethod::Auto, AuthMethod::Login, AuthMethod::Plain] {
        for sec in [Security::Plain, Security::Tls] {
            let mut ep = lab.endpoint(1, sec, &user, &pw);
            ep.auth = auth.clone();
            let s = Session::connect(&ep)
                .await
                .unwrap_or_else(|e| panic!("{auth:?} {sec:?}: {e}"));
            s.logout().await;
        }
    }
    // The ASCII-only awkward characters go as a quoted string with escapes.
    let ascii: String = pw.chars().filter(|c| c.is_ascii()).collect();
    let mut ep = lab.endpoint(1, Security::Plain, &user, &ascii);
    ep.auth = AuthMethod::Login;
    assert!(matches!(
        Session::connect(&ep).await,
        Err(ImapError::Auth { .. })
    ));
}

#[tokio::test]
async fn master_user_with_sasl_plain() {
    let Some(lab) = lab("master_user_with_sasl_plain") else {
        return;
    };
    let mut ep = lab.endpoint(
        2,
        Security::StartTls,
        "user0282",
        &lab.get("LAB_MASTER_PASSWORD", "adminsecret"),
    );
    ep.authuser = Some(lab.get("LAB_MASTER_USER", "admin"));
    ep.auth = AuthMethod::Plain;
    let mut s = Session::connect(&ep).await.expect("master login");
    // Acting as user0282: its INBOX is there.
    s.select("INBOX", true).await.expect("select INBOX");
    s.logout().await;
    ep.password = Secret::new("wrong");
    assert!(matches!(
        Session::connect(&ep).await,
        Err(ImapError::Auth { .. })
    ));
}

#[tokio::test]
async fn list_namespace_create_special_names() {
    let Some(lab) = lab("list_namespace_create_special_names") else {
        return;
    };
    let mut s = Session::connect(&lab.user(1, 283)).await.expect("connect");
    let ns = s.namespaces().await.expect("namespace");
    assert_eq!(ns.personal.len(), 1, "{ns:?}");
    assert_eq!(ns.personal[0].delimiter, Some('.'));
    assert_eq!(ns.personal[0].prefix, "");

    let base = unique("t");
    let names = [
        format!("[{base}]"),
        format!("x]{base}"),
        format!("Proj[{base}"),
        format!("{base} with spaces"),
        format!("{base}Entwürfe"),
        format!("{base}R&D"),
        format!("{base}Абв&где"),
        format!("{base}日本語"),
    ];
    for n in &names {
        s.create(&imapfleet_imap::mutf7::encode(n))
            .await
            .unwrap_or_else(|e| panic!("create {n}: {e}"));
    }
    // A non-canonical name is refused before it is sent.
    assert!(matches!(
        s.create("&BBAEMQQyACYEMwQ0BDU-").await,
        Err(ImapError::Invalid(_))
    ));
    let list = s.list().await.expect("list");
    for n in &names {
        let raw = imapfleet_imap::mutf7::encode(n);
        let e = list
            .iter()
            .find(|e| e.raw_name == raw)
            .unwrap_or_else(|| panic!("{raw:?} not listed: {list:?}"));
        assert_eq!(&e.name, n);
        assert_eq!(e.delimiter, Some('.'));
        // The listed name works as is.
        s.status(&e.raw_name)
            .await
            .unwrap_or_else(|e| panic!("status {raw}: {e}"));
    }
    assert!(list.iter().any(|e| e.raw_name == "INBOX"));
    // Special-use attributes come back (attributes only: the folders may not exist).
    let _ = list
        .iter()
        .filter(|e| e.special_use == Some(SpecialUse::Sent))
        .count();
    for n in &names {
        s.delete(&imapfleet_imap::mutf7::encode(n))
            .await
            .expect("delete");
    }
    s.logout().await;
}

#[tokio::test]
async fn special_use_folders_listed() {
    let Some(lab) = lab("special_use_folders_listed") else {
        return;
    };
    let mut s = Session::connect(&lab.user(2, 284)).await.expect("connect");
    let list = s.list().await.expect("list");
    if !list.iter().any(|e| e.raw_name == "Sent") {
        s.create("Sent").await.expect("create Sent");
    }
    let list = s.list().await.expect("list");
    let sent = list
        .iter()
        .find(|e| e.raw_name == "Sent")
        .expect("Sent listed");
    assert_eq!(sent.special_use, Some(SpecialUse::Sent), "{sent:?}");
    assert_eq!(sent.delimiter, Some('/'));
    s.logout().await;
}

#[tokio::test]
async fn append_fetch_store_expunge_round_trip() {
    let Some(lab) = lab("append_fetch_store_expunge_round_trip") else {
        return;
    };
    let mut s = Session::connect(&lab.user(2, 285)).await.expect("connect");
    let folder = unique("t");
    s.create(&folder).await.expect("create");

    // A body with 8-bit bytes, a bare LF inside a line? No: keep CRLF; 8-bit and long lines.
    let mut b1 = message(&unique("m"), "caf\u{e9} \u{1F600}");
    b1.extend_from_slice(&[0xe9, b'\r', b'\n']);
    let b2 = message(&unique("m"), &"x".repeat(100_000));
    let b3 = message(&unique("m"), "three");
    let b4 = message(&unique("m"), "four");
    let d1 = date("2018-08-04T06:46:54+09:00");

    // Single APPEND: APPENDUID comes back.
    let one = s
        .append(
            &folder,
            &[AppendRequest {
                flags: vec!["\\Seen".into(), "$Label1".into(), "\\Recent".into()],
                internaldate: Some(d1),
                body: &b1,
            }],
        )
        .await
        .expect("append one");
    assert_eq!(one.len(), 1);
    let uid1 = one[0].expect("APPENDUID");

    // MULTIAPPEND: three UIDs in order.
    let many = s
        .append(
            &folder,
            &[
                AppendRequest {
                    flags: vec![],
                    internaldate: None,
                    body: &b2,
                },
                AppendRequest {
                    flags: vec!["\\Flagged".into()],
                    internaldate: Some(d1),
                    body: &b3,
                },
                AppendRequest {
                    flags: vec!["\\Draft".into()],
                    internaldate: None,
                    body: &b4,
                },
            ],
        )
        .await
        .expect("multiappend");
    let uids: Vec<u32> = many.iter().map(|u| u.expect("APPENDUID")).collect();
    assert_eq!(uids, vec![uid1 + 1, uid1 + 2, uid1 + 3]);

    // APPEND to a missing folder: NO [TRYCREATE].
    match s
        .append(
            &unique("missing"),
            &[AppendRequest {
                flags: vec![],
                internaldate: None,
                body: &b3,
            }],
        )
        .await
    {
        Err(ImapError::No { command, code, .. }) => {
            assert_eq!(command, "APPEND");
            assert_eq!(code.as_deref(), Some("TRYCREATE"));
        }
        other => panic!("expected NO [TRYCREATE], got {other:?}"),
    }
    // A flag Dovecot refuses: BAD, and the session is still usable (the literal was swallowed).
    match s
        .append(
            &folder,
            &[AppendRequest {
                flags: vec!["\\Indexed".into()],
                internaldate: None,
                body: &b3,
            }],
        )
        .await
    {
        Err(ImapError::Bad { .. }) | Err(ImapError::No { .. }) => {}
        other => panic!("expected a refusal for \\Indexed, got {other:?}"),
    }
    s.noop().await.expect("session still in step");

    let sel = s.select(&folder, false).await.expect("select");
    assert_eq!(sel.exists, 4);
    assert!(sel.uidvalidity.is_some() && sel.uidnext == Some(uid1 + 4));
    assert!(
        sel.highestmodseq.is_some(),
        "CONDSTORE SELECT gives HIGHESTMODSEQ"
    );
    assert!(!sel.read_only);
    assert!(sel
        .permanent_flags
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == "\\*")));

    let all = format!("{uid1}:*");
    let meta = s
        .fetch_meta(&all, &["Message-ID".into(), "Subject".into()])
        .await
        .expect("fetch_meta");
    assert_eq!(
        meta.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![uid1, uid1 + 1, uid1 + 2, uid1 + 3]
    );
    assert!(meta[0].flags.iter().any(|f| f == "\\Seen"));
    assert!(meta[0]
        .flags
        .iter()
        .any(|f| f.eq_ignore_ascii_case("$Label1")));
    assert_eq!(
        meta[0].internaldate.map(|d| d.timestamp()),
        Some(d1.timestamp())
    );
    assert_eq!(
        meta[2].internaldate.map(|d| d.timestamp()),
        Some(d1.timestamp())
    );
    assert_eq!(meta[0].size as usize, b1.len());
    assert_eq!(meta[1].size as usize, b2.len());
    let h = String::from_utf8_lossy(&meta[0].headers);
    assert!(
        h.contains("Message-ID: <") && h.contains("Subject: test"),
        "{h}"
    );
    assert!(!h.contains("From:"));
    assert!(!meta[1].flags.iter().any(|f| f == "\\Seen"));
    // Whole header block.
    let full = s
        .fetch_meta(&uid1.to_string(), &[])
        .await
        .expect("fetch_meta header");
    assert!(full[0].headers.starts_with(b"From: Alice") && full[0].headers.ends_with(b"\r\n\r\n"));
    // `n:*` beyond the last UID: the server returns the last message, we do not.
    let beyond = s
        .fetch_meta(&format!("{}:*", uid1 + 4), &[])
        .await
        .expect("fetch beyond");
    assert!(beyond.is_empty(), "{beyond:?}");

    // Bodies byte-exact, \Seen untouched.
    let bodies = s
        .fetch_bodies(&[uid1 + 3, uid1, uid1 + 1, uid1 + 2, uid1 + 99])
        .await
        .expect("bodies");
    assert_eq!(
        bodies.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![uid1, uid1 + 1, uid1 + 2, uid1 + 3]
    );
    assert_eq!(bodies[0].1, b1);
    assert_eq!(bodies[1].1, b2);
    assert_eq!(bodies[2].1, b3);
    assert_eq!(bodies[3].1, b4);
    let meta = s.fetch_meta(&all, &[]).await.expect("fetch_meta after");
    assert!(
        !meta[1].flags.iter().any(|f| f == "\\Seen"),
        "BODY.PEEK must not set \\Seen: {:?}",
        meta[1].flags
    );
    assert!(!meta[2].flags.iter().any(|f| f == "\\Seen"));

    // STORE: add, remove, replace.
    s.uid_store(
        &[uid1 + 1, uid1 + 2],
        StoreMode::Add,
        &["\\Seen".into(), "$Work".into()],
    )
    .await
    .expect("store add");
    s.uid_store(&[uid1 + 2], StoreMode::Remove, &["\\Flagged".into()])
        .await
        .expect("store remove");
    s.uid_store(&[uid1 + 3], StoreMode::Replace, &["\\Answered".into()])
        .await
        .expect("store replace");
    let meta = s
        .fetch_meta(&all, &[])
        .await
        .expect("fetch_meta after store");
    let flags = |i: usize| {
        let mut f: Vec<String> = meta[i]
            .flags
            .iter()
            .filter(|f| *f != "\\Recent")
            .map(|f| f.to_ascii_lowercase())
            .collect();
        f.sort();
        f
    };
    assert_eq!(flags(1), vec!["$work", "\\seen"]);
    assert_eq!(flags(2), vec!["$work", "\\seen"]);
    assert_eq!(flags(3), vec!["\\answered"]);

    assert_eq!(
        s.uid_search("SEEN").await.expect("search"),
        vec![uid1, uid1 + 1, uid1 + 2]
    );
    assert_eq!(
        s.uid_search("KEYWORD $Work").await.expect("search kw"),
        vec![uid1 + 1, uid1 + 2]
    );

    // EXPUNGE only the given UID even though two are \Deleted.
    s.uid_store(&[uid1, uid1 + 3], StoreMode::Add, &["\\Deleted".into()])
        .await
        .expect("store deleted");
    s.expunge(&[uid1]).await.expect("expunge");
    let left: Vec<u32> = s
        .fetch_meta("1:*", &[])
        .await
        .expect("after expunge")
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![uid1 + 1, uid1 + 2, uid1 + 3]);

    let st = s.status("INBOX").await.expect("status");
    assert!(st.messages.is_some() && st.uidvalidity.is_some() && st.highestmodseq.is_some());

    let ex = s.select(&folder, true).await.expect("examine");
    assert!(ex.read_only);
    assert_eq!(ex.exists, 3);

    s.select("INBOX", true).await.expect("leave the folder");
    s.delete(&folder).await.expect("delete");
    s.logout().await;
}

#[tokio::test]
async fn errors_carry_command_code_and_text() {
    let Some(lab) = lab("errors_carry_command_code_and_text") else {
        return;
    };
    let mut s = Session::connect(&lab.user(1, 286)).await.expect("connect");
    match s.select(&unique("nope"), false).await {
        Err(ImapError::No { command, text, .. }) => {
            assert_eq!(command, "SELECT");
            assert!(!text.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Maildir++ refuses "/" in names with [CANNOT].
    match s.create(&format!("{}/x", unique("t"))).await {
        Err(ImapError::No { code, .. }) => assert_eq!(code.as_deref(), Some("CANNOT")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.create("a\r\nb").await,
        Err(ImapError::Invalid(_))
    ));
    assert!(matches!(
        s.uid_search("ALL\r\nA1 LOGOUT").await,
        Err(ImapError::Invalid(_))
    ));
    s.noop().await.expect("still usable");
    s.logout().await;
}

#[tokio::test]
async fn sessions_work_in_spawned_tasks() {
    let Some(lab) = lab("sessions_work_in_spawned_tasks") else {
        return;
    };
    let mut handles = Vec::new();
    for n in 287..291 {
        let ep = lab.user(1, n);
        handles.push(tokio::spawn(async move {
            let mut s = Session::connect(&ep).await?;
            let list = s.list().await?;
            s.logout().await;
            Ok::<usize, ImapError>(list.len())
        }));
    }
    for h in handles {
        assert!(h.await.expect("join").expect("task") >= 1);
    }
}

/// One APPEND per message must not wait for a delayed ACK (~40 ms each without TCP_NODELAY and
/// a single write of literal + CRLF): 150 appends per transport, averaged.
#[tokio::test]
async fn single_appends_do_not_stall() {
    let Some(lab) = lab("single_appends_do_not_stall") else {
        return;
    };
    let pw = lab.get("LAB_PASSWORD", "secret");
    for sec in [Security::Plain, Security::Tls] {
        let mut s = Session::connect(&lab.endpoint(2, sec, "user0291", &pw))
            .await
            .expect("connect");
        let folder = unique("perf");
        s.create(&folder).await.expect("create");
        let bodies: Vec<Vec<u8>> = (0..150)
            .map(|i| message(&unique("p"), &format!("body {i}\r\n{}", "y".repeat(3000))))
            .collect();
        let t0 = std::time::Instant::now();
        for b in &bodies {
            let r = s
                .append(
                    &folder,
                    &[AppendRequest {
                        flags: vec!["\\Seen".into()],
                        internaldate: None,
                        body: b,
                    }],
                )
                .await
                .expect("append");
            assert!(r[0].is_some());
        }
        let per = t0.elapsed() / bodies.len() as u32;
        eprintln!("{sec:?}: {per:?} per single APPEND");
        assert!(
            per < Duration::from_millis(15),
            "{sec:?}: {per:?} per APPEND"
        );
        // And one MULTIAPPEND of all of them, then fetch them back.
        let reqs: Vec<AppendRequest<'_>> = bodies
            .iter()
            .map(|b| AppendRequest {
                flags: vec![],
                internaldate: None,
                body: b,
            })
            .collect();
        let t0 = std::time::Instant::now();
        let uids = s.append(&folder, &reqs).await.expect("multiappend");
        eprintln!(
            "{sec:?}: MULTIAPPEND of {} in {:?}",
            reqs.len(),
            t0.elapsed()
        );
        let uids: Vec<u32> = uids.into_iter().map(|u| u.expect("uid")).collect();
        s.select(&folder, true).await.expect("examine");
        let t0 = std::time::Instant::now();
        let got = s.fetch_bodies(&uids).await.expect("fetch");
        eprintln!(
            "{sec:?}: fetched {} bodies in {:?}",
            got.len(),
            t0.elapsed()
        );
        assert_eq!(got.len(), bodies.len());
        for ((_, g), b) in got.iter().zip(&bodies) {
            assert_eq!(g, b);
        }
        s.select("INBOX", true).await.expect("leave");
        s.delete(&folder).await.expect("delete");
        s.logout().await;
    }
}
