//! The bug-report cases that need a misbehaving server (`../shared/cases/BR-NN`, those with a
//! `[fake_server]` table and `reproducible_with_stock_dovecot = "no"` / `"partial"`), one named
//! test each. Each test loads the case's `case.toml`, builds the scripted fake server
//! (`imapfleet_tests::fake_server`) from it, drives the real product code against it (the IMAP
//! `Session` for parse-level cases, `sync_account` for end-to-end ones, with the lab Dovecot as the
//! other side when the case says so) and checks the case's `[expected]` outcome.
//!
//! The cases live outside the repository: the directory is `$IMAPFLEET_CASES`, else
//! `<root>/../shared/cases`; when it is absent each test prints a skip note and returns. Parts that
//! need the lab are skipped the same way unless `IMAPFLEET_LAB=1` (then the lab must answer).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imapfleet_imap::{Endpoint, Session};
use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::report::AccountReport;
use imapfleet_tests::fake_server::{
    expand_literals, generated_message, Config, FakeServer, Folder, Step, Throttle, DEFAULT_DATE,
};
use imapfleet_tests::{lab, Lab};

// ---------------------------------------------------------------------------------------------
// Loading cases

fn cases_dir() -> Option<PathBuf> {
    let dir = match std::env::var("IMAPFLEET_CASES") {
        Ok(p) => PathBuf::from(p),
        Err(_) => imapfleet_tests::root().join("../shared/cases"),
    };
    dir.join("README.md").exists().then_some(dir)
}

struct Case {
    id: String,
    dir: PathBuf,
    toml: toml::Table,
}

impl Case {
    /// The case, or `None` (with a note) when the cases are not here.
    fn load(id: &str) -> Option<Case> {
        let Some(root) = cases_dir() else {
            eprintln!("SKIP {id}: no bug-report cases (set IMAPFLEET_CASES or put them in ../shared/cases)");
            return None;
        };
        let dir = root.join(id);
        let text = std::fs::read_to_string(dir.join("case.toml"))
            .unwrap_or_else(|e| panic!("{id}/case.toml: {e}"));
        let toml: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{id}/case.toml: {e}"));
        assert_eq!(toml.get("id").and_then(|v| v.as_str()), Some(id));
        Some(Case {
            id: id.to_string(),
            dir,
            toml,
        })
    }

    fn table(&self, path: &str) -> toml::Table {
        let mut t = &self.toml;
        for key in path.split('.') {
            match t.get(key).and_then(|v| v.as_table()) {
                Some(x) => t = x,
                None => return toml::Table::new(),
            }
        }
        t.clone()
    }

    fn fake(&self) -> toml::Table {
        self.table("fake_server")
    }

    fn expected(&self) -> toml::Table {
        self.table("expected")
    }

    fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(rel)).unwrap_or_else(|e| panic!("{}/{rel}: {e}", self.id))
    }

    /// Server bytes of a `server` string or `server_file`, `{literal:PATH}` expanded.
    fn server_bytes(&self, t: &toml::Table, string_key: &str, file_key: &str) -> Option<Vec<u8>> {
        let raw = match (
            t.get(string_key).and_then(|v| v.as_str()),
            t.get(file_key).and_then(|v| v.as_str()),
        ) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(f)) => self.file(f),
            (None, None) => return None,
        };
        Some(expand_literals(&raw, &self.dir).unwrap_or_else(|e| panic!("{}: {e}", self.id)))
    }

    fn steps(&self) -> Vec<Step> {
        let fake = self.fake();
        let Some(steps) = fake.get("step").and_then(|v| v.as_array()) else {
            return Vec::new();
        };
        steps
            .iter()
            .filter_map(|s| s.as_table())
            .map(|s| Step {
                client: s
                    .get("client")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                server: self
                    .server_bytes(s, "server", "server_file")
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The fake server of the case: greeting, capabilities and script; the caller adds the model
    /// and quirks.
    fn fake_config(&self) -> Config {
        let fake = self.fake();
        let mut cfg = Config::default();
        if let Some(g) = self.server_bytes(&fake, "greeting", "greeting_file") {
            cfg.greeting = g;
        }
        if let Some(c) = fake.get("capabilities").and_then(|v| v.as_str()) {
            cfg.capabilities = c.to_string();
        }
        cfg.steps = self.steps();
        cfg
    }

    /// The model of a fake host1: the folders its LIST script names (else INBOX and the
    /// `host1/<dir>` folders), and their messages: the UIDs its FETCH script lists (with those
    /// flags and dates) plus `host1/<folder>/<uid>.eml`; bodies from the files, else generated.
    fn host1_model(&self, steps: &[Step]) -> Vec<Folder> {
        let mut names: Vec<String> = steps
            .iter()
            .filter(|s| s.client.to_ascii_uppercase().starts_with("LIST"))
            .flat_map(|s| list_names(&s.server))
            .collect();
        if names.is_empty() {
            names.push("INBOX".into());
        }
        let mut folders: Vec<Folder> = names.iter().map(|n| Folder::new(n)).collect();
        // Directories are folder names, except where a name cannot be one (TABs): then the
        // directory is the listed name with the separator as "-" and other odd characters as "_".
        let dirs: Vec<String> = std::fs::read_dir(self.dir.join("host1"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for d in dirs {
            let fi = match folders.iter().position(|f| f.name == d) {
                Some(i) => i,
                None => match folders
                    .iter()
                    .position(|f| dir_form(&f.name).starts_with(&d))
                {
                    Some(i) => i,
                    None => {
                        folders.push(Folder::new(&d));
                        folders.len() - 1
                    }
                },
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("host1").join(&d))
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            let by_step = self.literal_uids();
            for f in files {
                if f.extension().and_then(|e| e.to_str()) != Some("eml") {
                    continue;
                }
                let body = std::fs::read(&f).expect("read eml");
                let name = f.file_name().and_then(|s| s.to_str()).unwrap_or("");
                let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let folder = &mut folders[fi];
                // The UID a body step serves the file as, else the file's number, else the next.
                match by_step
                    .get(&format!("host1/{d}/{name}"))
                    .copied()
                    .or_else(|| stem.parse::<u32>().ok())
                {
                    Some(uid) => folder.insert(uid, &[], DEFAULT_DATE, body),
                    None => {
                        folder.push(&[], DEFAULT_DATE, body);
                    }
                }
            }
        }
        // The listing script's messages (INBOX), flags and dates as scripted.
        for s in steps {
            let hint = s.client.to_ascii_uppercase();
            if !(hint.starts_with("UID FETCH 1:*") || hint.starts_with("FETCH 1:*")) {
                continue;
            }
            for (uid, flags, date) in scripted_listing(&s.server) {
                let inbox = folders
                    .iter_mut()
                    .find(|f| f.name.eq_ignore_ascii_case("INBOX"))
                    .expect("INBOX in the model");
                let body = inbox
                    .get(uid)
                    .map(|m| m.body.clone())
                    .unwrap_or_else(|| generated_message(&self.id, "INBOX", uid));
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                inbox.insert(uid, &flags, date.as_deref().unwrap_or(DEFAULT_DATE), body);
            }
        }
        folders
    }
}

impl Case {
    /// Case files the script serves as a message body: `{literal:PATH}` in the reply to a FETCH
    /// of one UID (`UID FETCH 37210 (BODY.PEEK[])`) makes PATH that UID.
    fn literal_uids(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        let fake = self.fake();
        let Some(steps) = fake.get("step").and_then(|v| v.as_array()) else {
            return out;
        };
        for st in steps.iter().filter_map(|s| s.as_table()) {
            let client = st.get("client").and_then(|v| v.as_str()).unwrap_or("");
            let server = st.get("server").and_then(|v| v.as_str()).unwrap_or("");
            let uid = client
                .strip_prefix("UID FETCH ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok());
            let path = server
                .split("{literal:")
                .nth(1)
                .and_then(|r| r.split('}').next());
            if let (Some(uid), Some(path)) = (uid, path) {
                out.insert(path.to_string(), uid);
            }
        }
        out
    }
}

/// The directory form of a folder name (see `host1_model`).
fn dir_form(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        out.push(match c {
            '/' | '.' => '-',
            c if c.is_alphanumeric() || c == '-' || c == '_' => c,
            _ => '_',
        });
    }
    out
}

/// Mailbox names of `* LIST (...) "sep" name` lines (a bare name runs to the end of the line).
fn list_names(server: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(server);
    let mut out = Vec::new();
    for line in text.split("\r\n") {
        let Some(rest) = line.strip_prefix("* LIST (") else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(") ") else {
            continue;
        };
        // Delimiter: a quoted character or NIL.
        let rest = if let Some(r) = rest.strip_prefix('"') {
            r.split_once("\" ").map(|(_, r)| r).unwrap_or("")
        } else {
            rest.strip_prefix("NIL ").unwrap_or(rest)
        };
        let name = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => rest.to_string(),
        };
        out.push(name);
    }
    out
}

/// (uid, flags, internaldate) of the `* n FETCH (...)` lines of a listing script.
fn scripted_listing(server: &[u8]) -> Vec<(u32, Vec<String>, Option<String>)> {
    let text = String::from_utf8_lossy(server);
    let mut out = Vec::new();
    for line in text.split("\r\n") {
        if !line.starts_with("* ") || !line.contains(" FETCH (") {
            continue;
        }
        let after = |key: &str| line.find(key).map(|p| &line[p + key.len()..]);
        let Some(uid) = after("UID ").and_then(|r| {
            r.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .ok()
        }) else {
            continue;
        };
        let flags = after("FLAGS (")
            .and_then(|r| r.split_once(')'))
            .map(|(f, _)| f.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let date = after("INTERNALDATE \"")
            .and_then(|r| r.split_once('"'))
            .map(|(d, _)| d.to_string());
        out.push((uid, flags, date));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The lab users of these tests: a block of their own (user0260..user0269; other test files use
/// other blocks), one per case and account, wiped on both hosts before use.
fn lab_user(lab: &Lab, case: &str, second: bool) -> String {
    const USERS: &[(&str, &str, &str)] = &[
        ("BR-05", "user0260", ""),
        ("BR-09", "user0261", ""),
        ("BR-11", "user0262", ""),
        ("BR-13", "user0263", ""),
        ("BR-19", "user0264", ""),
        ("BR-21", "user0269", ""),
        ("BR-33", "user0265", "user0266"),
        ("BR-46", "user0267", ""),
        ("BR-49", "user0268", ""),
    ];
    let (_, first, other) = USERS
        .iter()
        .find(|(c, _, _)| *c == case)
        .unwrap_or_else(|| panic!("no lab user for {case}"));
    let user = if second { *other } else { *first };
    assert!(!user.is_empty(), "{case} has no second lab user");
    lab.fresh(user);
    user.to_string()
}

/// Every message of `folder` on `ep`: (metadata, exact bytes), by UID.
async fn messages(ep: &Endpoint, folder: &str) -> Vec<(imapfleet_imap::MessageMeta, Vec<u8>)> {
    let mut s = Session::connect(ep).await.expect("connect to read back");
    let raw = imapfleet_imap::mutf7::encode(folder);
    let info = s.select(&raw, true).await.expect("EXAMINE to read back");
    if info.exists == 0 {
        s.logout().await;
        return Vec::new();
    }
    let metas = s
        .fetch_meta("1:*", &["Message-Id".to_string()])
        .await
        .expect("FETCH metadata");
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    let bodies: BTreeMap<u32, Vec<u8>> = s
        .fetch_bodies(&uids)
        .await
        .expect("FETCH bodies")
        .into_iter()
        .collect();
    s.logout().await;
    metas
        .into_iter()
        .map(|m| {
            let b = bodies.get(&m.uid).cloned().unwrap_or_default();
            (m, b)
        })
        .collect()
}

fn sorted_flags(flags: &[String]) -> Vec<String> {
    let mut f: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect();
    f.sort();
    f
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn int(t: &toml::Table, key: &str) -> i64 {
    t.get(key)
        .and_then(|v| v.as_integer())
        .unwrap_or_else(|| panic!("expected.{key} missing"))
}

/// Log lines (WARN and above) written while the guard lives on this thread.
struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    fn capture() -> Logs {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(b.clone()))
            .finish();
        Logs {
            buf,
            _guard: tracing::subscriber::set_default(sub),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn sync(ep1: &Endpoint, ep2: &Endpoint, opts: &SyncOptions) -> AccountReport {
    sync_account(ep1, ep2, opts, Arc::new(NoProgress)).await
}

/// Options for runs against a fake server: one connection per side keeps the script's order.
fn fake_opts() -> SyncOptions {
    SyncOptions {
        connections: 1,
        ..SyncOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Parse-level cases

#[tokio::test]
async fn case_br_01_status_trailing_space() {
    let Some(case) = Case::load("BR-01") else {
        return;
    };
    let exp = case.table("expected.parse");
    let fake = FakeServer::start(case.fake_config()).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    let st = s
        .status("INBOX")
        .await
        .expect("STATUS with a trailing space");
    assert_eq!(st.messages, Some(int(&exp, "messages") as u32));
    assert_eq!(st.uidnext, Some(int(&exp, "uidnext") as u32));
    assert_eq!(st.uidvalidity, Some(int(&exp, "uidvalidity") as u32));
    s.noop()
        .await
        .expect("the NOOP after it gets its own tagged OK");
    assert!(s.broken().is_none());
    drop(s);
    assert_eq!(fake.steps_left(), 0, "both scripted steps were used");
    assert_eq!(fake.connections(), 1, "no reconnect");
}

#[tokio::test]
async fn case_br_02_highestmodseq_without_text() {
    let Some(case) = Case::load("BR-02") else {
        return;
    };
    let exp = case.table("expected.parse");
    let fake = FakeServer::start(case.fake_config()).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    // host1 is EXAMINEd by the sync (the step's SELECT matches EXAMINE too).
    let info = s.select("INBOX", true).await.expect("SELECT");
    assert_eq!(info.exists, int(&exp, "exists") as u32);
    assert_eq!(info.uidvalidity, Some(int(&exp, "uidvalidity") as u32));
    assert_eq!(info.uidnext, Some(int(&exp, "uidnext") as u32));
    assert_eq!(info.highestmodseq, Some(int(&exp, "highestmodseq") as u64));
    assert!(
        info.permanent_flags
            .as_ref()
            .is_some_and(|p| p.iter().any(|f| f == "\\*")),
        "{:?}",
        info.permanent_flags
    );
    s.noop().await.expect("aligned");
    assert_eq!(fake.steps_left(), 0);
}

#[tokio::test]
async fn case_br_04_flag_lists_with_space_before_paren() {
    let Some(case) = Case::load("BR-04") else {
        return;
    };
    let exp = case.table("expected.parse");
    let fake = FakeServer::start(case.fake_config()).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    let info = s.select("INBOX", false).await.expect("SELECT");
    assert_eq!(info.exists, int(&exp, "exists") as u32);
    assert_eq!(info.uidvalidity, Some(int(&exp, "uidvalidity") as u32));
    assert_eq!(info.uidnext, Some(int(&exp, "uidnext") as u32));
    assert_eq!(info.flags, strings(exp.get("flags")));
    assert_eq!(
        info.permanent_flags,
        Some(strings(exp.get("permanentflags")))
    );
    let allows = info
        .permanent_flags
        .as_ref()
        .is_some_and(|p| p.iter().any(|f| f == "\\*"));
    assert_eq!(
        allows,
        exp.get("permanentflags_allows_new_keywords")
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
    );
    drop(s);
    assert_eq!(fake.steps_left(), 0);

    // Second run: the same server as the destination. Its SELECT bytes (FLAGS / PERMANENTFLAGS
    // with the stray space, no `\*`) are what the planner consults before APPEND: a keyword it
    // cannot store is dropped and reported, the message is copied (the fake refuses an APPEND
    // with such a keyword, as a strict server would).
    let select = case.steps()[0].server.clone();
    let flag_lines: Vec<u8> = String::from_utf8_lossy(&select)
        .split_inclusive("\r\n")
        .filter(|l| l.starts_with("* FLAGS") || l.starts_with("* OK [PERMANENTFLAGS"))
        .collect::<String>()
        .into_bytes();
    let mut src = Folder::new("INBOX");
    src.push(
        &["\\Seen", "$Forwarded", "$Label1"],
        DEFAULT_DATE,
        generated_message("BR-04", "INBOX", 1),
    );
    let host1 = FakeServer::start(Config {
        folders: vec![src],
        ..Config::default()
    })
    .await;
    let host2 = FakeServer::start(Config {
        select_flag_lines: Some(flag_lines),
        capabilities: "IMAP4rev1 AUTH=PLAIN UIDPLUS LITERAL+".into(),
        ..Config::default()
    })
    .await;
    let rep = sync(
        &host1.endpoint("host1", "u"),
        &host2.endpoint("host2", "u"),
        &fake_opts(),
    )
    .await;
    assert_eq!(rep.totals.transferred, 1, "{rep}");
    let inbox = host2.folder("INBOX").expect("INBOX");
    assert_eq!(inbox.messages.len(), 1);
    assert_eq!(
        sorted_flags(&inbox.messages[0].flags),
        vec!["$Forwarded".to_string(), "\\Seen".to_string()]
    );
    assert_eq!(
        rep.totals.flags_dropped, 1,
        "the dropped keyword is reported:\n{rep}"
    );
    let refused = host2
        .received()
        .iter()
        .filter(|r| r.verb() == "APPEND" && r.text().contains("$Label1"))
        .count();
    assert_eq!(refused, 0, "no APPEND tried to create the keyword");
}

#[tokio::test]
async fn case_br_06_auth_ok_with_non_atom_code() {
    let Some(case) = Case::load("BR-06") else {
        return;
    };
    let exp = case.expected();
    let logs = Logs::capture();
    let fake = FakeServer::start(case.fake_config()).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("AUTHENTICATE with an odd OK code is a success");
    assert_eq!(
        exp.get("authenticated").and_then(|v| v.as_bool()),
        Some(true)
    );
    let info = s.select("INBOX", false).await.expect("SELECT after it");
    assert_eq!(info.uidvalidity, Some(14));
    assert_eq!(fake.steps_left(), 0, "the script ran to its end");
    let text = logs.text();
    if exp
        .get("unknown_response_code_logged")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        assert!(
            text.contains("WARN") && text.contains("WrongServerException"),
            "the unknown code is logged at warn level with its text: {text}"
        );
    }
}

#[tokio::test]
async fn case_br_07_busy_greeting_then_success() {
    let Some(case) = Case::load("BR-07") else {
        return;
    };
    let fake_t = case.fake();
    let exp = case.expected();
    let busy = case
        .server_bytes(&fake_t, "greeting", "greeting_file")
        .expect("greeting");
    let n_busy = fake_t
        .get("close_after_greeting_for_first_n_connections")
        .and_then(|v| v.as_integer())
        .unwrap_or(0) as usize;

    // The classification of one attempt: a transient connection failure quoting the greeting.
    let probe = FakeServer::start(Config {
        busy_connections: 1,
        busy_greeting: busy.clone(),
        ..Config::default()
    })
    .await;
    match Session::connect(&probe.endpoint("host2", "u")).await {
        Err(e) => {
            assert!(
                e.is_connection(),
                "retryable, not an auth/greeting failure: {e:?}"
            );
            assert!(e.to_string().contains("421 Server is busy"), "{e}");
        }
        Ok(_) => panic!("a busy greeting must not log in"),
    }

    // The job: host2 busy for the first connections, then fine.
    let mut src = Folder::new("INBOX");
    src.push(
        &["\\Seen"],
        DEFAULT_DATE,
        generated_message("BR-07", "INBOX", 1),
    );
    let host1 = FakeServer::start(Config {
        folders: vec![src],
        ..Config::default()
    })
    .await;
    let host2 = FakeServer::start(Config {
        busy_connections: n_busy,
        busy_greeting: busy,
        ..Config::default()
    })
    .await;
    let opts = SyncOptions {
        // Waits of 200 ms, then 400 ms: far apart enough to tell under load.
        connect_retry_base: Duration::from_millis(200),
        ..fake_opts()
    };
    let rep = sync(
        &host1.endpoint("host1", "u"),
        &host2.endpoint("host2", "u"),
        &opts,
    )
    .await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert_eq!(host2.folder("INBOX").expect("INBOX").messages.len(), 1);
    let attempts = exp
        .get("attempts_before_success")
        .and_then(|v| v.as_integer())
        .unwrap_or(3) as usize;
    let accepted = host2.accepted();
    assert!(accepted.len() >= attempts, "{accepted:?}");
    // The first login happened on attempt `attempts`; the waits before it grew (backoff).
    let logins: Vec<usize> = host2
        .received()
        .iter()
        .filter(|r| r.verb() == "AUTHENTICATE" || r.verb() == "LOGIN")
        .map(|r| r.conn)
        .collect();
    assert_eq!(logins.first(), Some(&(attempts - 1)), "{logins:?}");
    let gap1 = accepted[1] - accepted[0];
    let gap2 = accepted[2] - accepted[1];
    assert!(gap1 >= Duration::from_millis(200), "{gap1:?}");
    assert!(gap2 > gap1, "exponential backoff: {gap1:?} then {gap2:?}");
}

#[tokio::test]
async fn case_br_50_untagged_capability_before_auth_ok() {
    // The fake-server variant; the stock-Dovecot part of BR-50 runs with the lab cases.
    let Some(case) = Case::load("BR-50") else {
        return;
    };
    let v = case.table("variant.untagged_before_ok");
    let cfg = Config {
        greeting: case
            .server_bytes(&v, "greeting", "greeting_file")
            .expect("greeting"),
        // The variant names only the reply to AUTHENTICATE: without SASL-IR in the (default)
        // capabilities the client first gets a continuation request, then sends its response.
        steps: vec![
            Step {
                client: "AUTHENTICATE PLAIN".into(),
                server: b"+ \r\n".to_vec(),
            },
            Step {
                client: "<base64 credentials>".into(),
                server: case
                    .server_bytes(&v, "auth_reply", "auth_reply_file")
                    .expect("auth reply"),
            },
        ],
        ..Config::default()
    };
    let fake = FakeServer::start(cfg).await;
    let s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    for c in strings(v.get("expected_capabilities_include")) {
        assert!(
            s.capabilities().has(&c),
            "{c} from the untagged CAPABILITY: {:?}",
            s.capabilities()
        );
    }
    drop(s);
    let got = fake.received();
    let auth = got
        .iter()
        .position(|r| r.verb() == "AUTHENTICATE")
        .expect("AUTHENTICATE sent");
    assert!(
        !got[auth..].iter().any(|r| r.verb() == "CAPABILITY"),
        "the capabilities announced during authentication are used as they are: {:?}",
        got.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Fake host1, lab host2

/// The fake host1 of a case, its model built from the case files.
async fn fake_host1(case: &Case) -> FakeServer {
    let mut cfg = case.fake_config();
    cfg.folders = case.host1_model(&cfg.steps);
    FakeServer::start(cfg).await
}

#[tokio::test]
async fn case_br_05_fetch_space_before_paren_and_missing_flags() {
    let Some(case) = Case::load("BR-05") else {
        return;
    };
    let exp = case.expected();
    let want_uids: Vec<u32> = exp["listed_uids"]
        .as_array()
        .expect("listed_uids")
        .iter()
        .filter_map(|v| v.as_integer().map(|n| n as u32))
        .collect();
    let want_flags = {
        let mut f = strings(exp.get("host2_flags_for_uid_19436"));
        f.sort();
        f
    };

    // The listing as the sync does it.
    let fake = fake_host1(&case).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    s.select("INBOX", true).await.expect("EXAMINE");
    let metas = s
        .fetch_meta("1:*", &["Message-Id".into(), "Received".into()])
        .await
        .expect("listing");
    assert_eq!(metas.iter().map(|m| m.uid).collect::<Vec<_>>(), want_uids);
    assert_eq!(
        sorted_flags(&metas[1].flags),
        want_flags,
        "flags re-fetched, never guessed empty"
    );
    drop(s);
    assert_eq!(
        fake.steps_left(),
        0,
        "the follow-up FETCH of the missing flags was sent"
    );

    let Some(lab) = lab() else { return };
    let user = lab_user(&lab, &case.id, false);
    let fake = fake_host1(&case).await;
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    let on2 = messages(&ep2, "INBOX").await;
    assert_eq!(on2.len(), 2);
    let body = fake
        .folder("INBOX")
        .expect("INBOX")
        .get(19436)
        .expect("19436")
        .body
        .clone();
    let copy = on2.iter().find(|(_, b)| *b == body).expect("19436 copied");
    assert_eq!(sorted_flags(&copy.0.flags), want_flags);
}

#[tokio::test]
async fn case_br_09_interleaved_untagged_and_vanished_uid() {
    let Some(case) = Case::load("BR-09") else {
        return;
    };
    let exp = case.expected();
    let ints = |k: &str| -> Vec<u32> {
        exp[k]
            .as_array()
            .expect(k)
            .iter()
            .filter_map(|v| v.as_integer().map(|n| n as u32))
            .collect()
    };
    let (listed, copied, vanished) = (
        ints("listed_uids"),
        ints("copied_uids"),
        ints("vanished_uids"),
    );

    let logs = Logs::capture();
    let fake = fake_host1(&case).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    let info = s.select("INBOX", true).await.expect("EXAMINE");
    let metas = s
        .fetch_meta("1:*", &["Message-Id".into(), "Received".into()])
        .await
        .expect("listing not cut short by EXISTS/RECENT/ALERT/CAPABILITY");
    assert_eq!(metas.iter().map(|m| m.uid).collect::<Vec<_>>(), listed);
    assert!(
        s.capabilities().has("MOVE"),
        "the CAPABILITY line in the listing was taken"
    );
    assert!(info.exists > 0);
    assert!(
        logs.text().contains("Scheduled maintenance"),
        "ALERT logged: {}",
        logs.text()
    );
    drop(s);

    let Some(lab) = lab() else { return };
    let user = lab_user(&lab, &case.id, false);
    let fake = fake_host1(&case).await;
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert_eq!(rep.totals.transferred as usize, copied.len(), "{rep}");
    assert_eq!(rep.totals.vanished_host1 as usize, vanished.len(), "{rep}");
    let model = fake.folder("INBOX").expect("INBOX");
    let on2 = messages(&ep2, "INBOX").await;
    let mut got: Vec<u32> = on2
        .iter()
        .filter_map(|(_, b)| model.messages.iter().find(|m| m.body == *b).map(|m| m.uid))
        .collect();
    got.sort();
    assert_eq!(got, copied);
    // The message is gone from host1 for good: a later run copies nothing.
    for uid in &vanished {
        fake.expunge("INBOX", *uid);
    }
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert_eq!(rep.totals.transferred, 0, "{rep}");
}

#[tokio::test]
async fn case_br_11_unquoted_list_name_with_tabs() {
    let Some(case) = Case::load("BR-11") else {
        return;
    };
    let want = strings(case.table("expected.parse").get("folders"));
    let fake = fake_host1(&case).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    let names: Vec<String> = s
        .list()
        .await
        .expect("LIST")
        .into_iter()
        .map(|e| e.raw_name)
        .collect();
    assert_eq!(names, want);
    drop(s);

    let Some(lab) = lab() else { return };
    let user = lab_user(&lab, &case.id, false);
    let fake = fake_host1(&case).await;
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    let tab = &want[2];
    // host1 was asked for the TAB name as a quoted string, never as an atom.
    let examine = fake
        .received()
        .into_iter()
        .find(|r| r.verb() == "EXAMINE" && r.text().contains("Oggetto"))
        .expect("the TAB folder was examined");
    assert_eq!(
        examine.text().split(" (").next(),
        Some(format!("EXAMINE \"{tab}\"").as_str())
    );
    for (name2, files) in case.table("expected.host2") {
        let files: Vec<String> = strings(Some(&files));
        let on2 = messages(&ep2, &name2).await;
        let mut got: Vec<Vec<u8>> = on2.into_iter().map(|(_, b)| b).collect();
        let mut want: Vec<Vec<u8>> = files.iter().map(|f| case.file(f)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "host2 {name2:?}");
        assert!(
            rep.folders
                .iter()
                .any(|f| f.name1 == *tab && f.name2 == name2),
            "the mapping is in the report: {:?}",
            rep.folders
                .iter()
                .map(|f| (&f.name1, &f.name2))
                .collect::<Vec<_>>()
        );
    }
    let snap = imapfleet_tests::snapshot(&ep2).await;
    for other in ["INBOX/Reports", "INBOX/Newsletters (QuickFile)"] {
        assert!(
            snap.contains_key(other),
            "{other} synced: {:?}",
            snap.keys()
        );
    }
}

#[tokio::test]
async fn case_br_13_space_padded_internaldate_day() {
    let Some(case) = Case::load("BR-13") else {
        return;
    };
    let want = chrono::DateTime::parse_from_rfc3339(
        case.expected()["host2_internaldate_utc"]
            .as_str()
            .expect("date"),
    )
    .expect("rfc3339");
    let fake = fake_host1(&case).await;
    let mut s = Session::connect(&fake.endpoint("host1", "u"))
        .await
        .expect("connect");
    s.select("INBOX", true).await.expect("EXAMINE");
    let m = s
        .fetch_meta("1:*", &["Message-Id".into()])
        .await
        .expect("listing");
    assert_eq!(m[0].internaldate, Some(want), "same instant");
    assert_eq!(
        m[0].internaldate.map(|d| d.offset().local_minus_utc()),
        Some(9 * 3600),
        "the server's zone is kept"
    );
    drop(s);

    let Some(lab) = lab() else { return };
    let user = lab_user(&lab, &case.id, false);
    let fake = fake_host1(&case).await;
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    let on2 = messages(&ep2, "INBOX").await;
    assert_eq!(on2.len(), 1);
    assert_eq!(on2[0].1, case.file("host1/INBOX/131.eml"));
    assert_eq!(on2[0].0.internaldate, Some(want), "compared as instants");
}

#[tokio::test]
async fn case_br_19_rfc822_size_disagrees_with_body() {
    let Some(case) = Case::load("BR-19") else {
        return;
    };
    let Some(lab) = lab() else { return };
    let exp = case.expected();
    let user = lab_user(&lab, &case.id, false);
    let fake = fake_host1(&case).await;
    let ep2 = lab.endpoint(2, &user);
    let logs = Logs::capture();
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    let want: Vec<Vec<u8>> = strings(exp.get("host2_inbox"))
        .iter()
        .map(|f| case.file(f))
        .collect();
    let got: Vec<Vec<u8>> = messages(&ep2, "INBOX")
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(got, want, "byte-identical to the served literal");
    let text = logs.text();
    assert!(
        text.contains("size mismatch") && text.contains("19189") && text.contains("228"),
        "a warning records the size mismatch for UID 13: {text}"
    );
    // Run 2: the server tells the same story again.
    fake.replay_script();
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert_eq!(
        rep.totals.transferred as i64,
        int(&exp, "second_run_appends"),
        "identity does not depend on RFC822.SIZE:\n{rep}"
    );
}

#[tokio::test]
async fn case_br_46_utf8_accept_hides_messages() {
    let Some(case) = Case::load("BR-46") else {
        return;
    };
    let Some(lab) = lab() else { return };
    let fake_t = case.fake();
    let exp = case.expected();
    let mut cfg = case.fake_config();
    cfg.folders = case.host1_model(&cfg.steps);
    cfg.hidden_until_utf8 = fake_t
        .get("hide_uids_without_enable")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_integer().map(|n| n as u32))
                .collect()
        })
        .unwrap_or_default();
    if let Some(r) = fake_t.get("hidden_fetch_reply").and_then(|v| v.as_str()) {
        cfg.hidden_reply = r.as_bytes().to_vec();
    }
    let fake = FakeServer::start(cfg).await;
    let user = lab_user(&lab, &case.id, false);
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert!(
        fake.received()
            .iter()
            .any(|r| r.verb() == "ENABLE" && r.text().contains("UTF8=ACCEPT")),
        "ENABLE UTF8=ACCEPT sent to host1"
    );
    let got: Vec<Vec<u8>> = messages(&ep2, "INBOX")
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(got.len() as i64, int(&exp, "preferred_host2_inbox_count"));
    assert!(
        got.contains(&case.file("host1/INBOX/2.eml")),
        "message 2 byte-exact"
    );
}

// ---------------------------------------------------------------------------------------------
// Lab host1, fake host2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_33_throttled_append_then_dropped_session() {
    let Some(case) = Case::load("BR-33") else {
        return;
    };
    let Some(lab) = lab() else { return };
    let fake_t = case.fake();
    let exp = case.expected();
    // Time is scaled: the server's backoff hint (and its refusal window) is divided by SCALE.
    // 1/100: a 3 s window, wide enough for the other account to finish inside it under load.
    const SCALE: u64 = 100;
    let backoff_ms = int(&fake_t, "backoff_ms") as u64;
    let scaled_ms = backoff_ms / SCALE;
    let reply = case
        .server_bytes(&fake_t, "throttle_reply", "throttle_reply_file")
        .expect("throttle reply");
    let reply = String::from_utf8_lossy(&reply)
        .replace(&backoff_ms.to_string(), &scaled_ms.to_string())
        .into_bytes();
    let mut cfg = case.fake_config();
    cfg.throttle = Some(Throttle {
        on_append_number: int(&fake_t, "throttle_on_append_number") as usize,
        reply,
        close_after: fake_t
            .get("close_after_throttle")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        window: Duration::from_millis(scaled_ms),
    });
    let host2 = FakeServer::start(cfg).await;
    // The other account of the batch, to an unthrottled server.
    let other2 = FakeServer::start(Config {
        capabilities: case.fake_config().capabilities,
        ..Config::default()
    })
    .await;

    let user = lab_user(&lab, &case.id, false);
    let other = lab_user(&lab, &case.id, true);
    let files: Vec<Vec<u8>> = (1..=5)
        .map(|i| case.file(&format!("host1/INBOX/{i}.eml")))
        .collect();
    imapfleet_tests::append_raw(&lab.endpoint(1, &user), "INBOX", &files).await;
    imapfleet_tests::append_raw(&lab.endpoint(1, &other), "INBOX", &files).await;

    let opts = fake_opts();
    let t0 = Instant::now();
    let ep1 = lab.endpoint(1, &user);
    let ep2 = host2.endpoint("host2", "u");
    let ep1b = lab.endpoint(1, &other);
    let ep2b = other2.endpoint("host2", "v");
    let (rep, rep_other, other_done) = {
        let a = sync(&ep1, &ep2, &opts);
        let b = async {
            let r = sync(&ep1b, &ep2b, &opts).await;
            (r, Instant::now())
        };
        let (ra, (rb, done)) = tokio::join!(a, b);
        (ra, rb, done)
    };
    assert_eq!(rep.exit_code(), 0, "the throttled job succeeds:\n{rep}");
    assert_eq!(rep_other.exit_code(), 0, "{rep_other}");
    let inbox = host2.folder("INBOX").expect("INBOX");
    assert_eq!(inbox.messages.len() as i64, int(&exp, "host2_inbox_count"));
    let mut bodies: Vec<&Vec<u8>> = inbox.messages.iter().map(|m| &m.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        files.len(),
        "each message exactly once ({} duplicates)",
        int(&exp, "duplicates")
    );

    let ev = host2.throttle_events();
    assert_eq!(ev.len(), 1, "one throttle");
    let min_pause = Duration::from_millis(int(&exp, "min_pause_ms_before_retry") as u64 / SCALE);
    let next_append = host2
        .received()
        .into_iter()
        .filter(|r| r.verb() == "APPEND" && r.at > ev[0].at)
        .map(|r| r.at)
        .next()
        .expect("APPENDs after the throttle");
    assert!(
        next_append - ev[0].at >= min_pause,
        "paused {:?}, the server asked for {min_pause:?}",
        next_append - ev[0].at
    );
    assert_eq!(
        host2.throttled_logins(),
        0,
        "no login tried before the backoff had passed"
    );
    assert!(
        other_done < ev[0].until,
        "the other account went on meanwhile (done {:?} after start, throttle until {:?})",
        other_done - t0,
        ev[0].until - t0
    );
    assert!(rep.totals.throttled >= 1, "the throttle is counted:\n{rep}");
}

/// How many UIDs a `UID <verb> <set> ...` command names (its set has no `*`).
fn uids_named(command: &str) -> u64 {
    let set = command.split(' ').nth(2).unwrap_or("");
    set.split(',')
        .filter_map(|r| match r.split_once(':') {
            Some((a, b)) => Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)),
            None => r.parse::<u64>().ok().map(|n| (n, n)),
        })
        .map(|(a, b)| a.max(b) - a.min(b) + 1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_49_bulk_delete2_to_trash_in_chunks() {
    let Some(case) = Case::load("BR-49") else {
        return;
    };
    let Some(lab) = lab() else { return };
    let fake_t = case.fake();
    let exp = case.expected();
    let preseed = fake_t["preseed"].as_table().expect("preseed");
    let old = preseed["folder"].as_str().expect("folder").to_string();
    let count = preseed["count"].as_integer().expect("count") as u32;
    let trash_name = fake_t["trash_folder"].as_str().expect("trash_folder");
    let mut old_folder = Folder::new(&old);
    for uid in 1..=count {
        old_folder.push(
            &["\\Seen"],
            DEFAULT_DATE,
            generated_message(&case.id, &old, uid),
        );
    }
    let mut trash = Folder::new(trash_name);
    trash.special_use = Some("\\Trash".into());
    let mut cfg = case.fake_config();
    cfg.folders = vec![old_folder.clone(), trash];
    cfg.max_uids_per_command = Some(int(&fake_t, "max_uids_per_command_before_bye") as usize);
    if let Some(b) = case.server_bytes(&fake_t, "bye_reply", "bye_reply_file") {
        cfg.bye_reply = b;
    }
    cfg.cut_after = Some((
        "UID MOVE".into(),
        int(&fake_t, "cut_connection_after_chunk") as usize,
    ));
    let host2 = FakeServer::start(cfg).await;
    let user = lab_user(&lab, &case.id, false);
    let ep1 = lab.endpoint(1, &user);
    imapfleet_tests::append_raw(&ep1, &old, &[]).await;
    let ep2 = host2.endpoint("host2", "u");

    // Without the override the guard keeps everything: host1's folder lists nothing.
    let mut opts = fake_opts();
    opts.plan.delete2 = true;
    opts.delete2_trash = true;
    let rep = sync(&ep1, &ep2, &opts).await;
    assert_ne!(
        rep.exit_code(),
        0,
        "held back deletions are reported:\n{rep}"
    );
    assert_eq!(
        host2.folder(&old).expect("Old").messages.len(),
        count as usize
    );
    assert!(host2.received().iter().all(|r| r.verb() != "UID MOVE"));

    // The mass deletion is intended.
    opts.force_delete = true;
    let rep = sync(&ep1, &ep2, &opts).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert!(
        rep.totals.reconnects >= 1,
        "the cut after chunk 3 was survived:\n{rep}"
    );
    assert_eq!(
        host2.folder(&old).expect("Old").messages.len() as i64,
        int(&exp, "old_count")
    );
    let in_trash = host2.folder(trash_name).expect("trash").messages;
    assert_eq!(in_trash.len() as i64, int(&exp, "trash_count"));
    let mut bodies: Vec<&Vec<u8>> = in_trash.iter().map(|m| &m.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        (in_trash.len() - bodies.len()) as i64,
        int(&exp, "trash_duplicates")
    );
    for m in &old_folder.messages {
        assert!(bodies.contains(&&m.body), "UID {} reached the Trash", m.uid);
    }
    let max = int(&exp, "max_uids_per_command") as u64;
    let bulk: Vec<_> = host2
        .received()
        .into_iter()
        .filter(|r| {
            matches!(
                r.verb().as_str(),
                "UID MOVE" | "UID COPY" | "UID STORE" | "UID EXPUNGE"
            )
        })
        .collect();
    for r in &bulk {
        assert!(
            uids_named(&r.text()) <= max,
            "{:?} names more than {max} UIDs",
            r.text()
        );
    }
    let moves: Vec<_> = bulk.iter().filter(|r| r.verb() == "UID MOVE").collect();
    assert_eq!(
        moves.iter().map(|r| uids_named(&r.text())).sum::<u64>(),
        u64::from(count),
        "no chunk was sent twice"
    );
    let cut = int(&fake_t, "cut_connection_after_chunk") as usize;
    assert!(
        moves.len() > cut && moves[cut].conn > moves[cut - 1].conn,
        "chunk {} went on a new connection",
        cut + 1
    );

    // The same without MOVE (COPY, \Deleted, UID EXPUNGE), cut right after a COPY: the chunk is
    // in the Trash and still in the folder. The re-plan must not copy it a second time.
    let mut trash = Folder::new(trash_name);
    trash.special_use = Some("\\Trash".into());
    let caps: String = case
        .fake_config()
        .capabilities
        .split_whitespace()
        .filter(|c| *c != "MOVE")
        .collect::<Vec<_>>()
        .join(" ");
    let host2 = FakeServer::start(Config {
        capabilities: caps,
        folders: vec![old_folder.clone(), trash],
        cut_after: Some(("UID COPY".into(), cut)),
        ..Config::default()
    })
    .await;
    let rep = sync(&ep1, &host2.endpoint("host2", "u"), &opts).await;
    assert_eq!(rep.exit_code(), 0, "{rep}");
    assert!(rep.totals.reconnects >= 1, "{rep}");
    assert!(host2.folder(&old).expect("Old").messages.is_empty());
    let in_trash = host2.folder(trash_name).expect("trash").messages;
    let mut bodies: Vec<&Vec<u8>> = in_trash.iter().map(|m| &m.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        (in_trash.len(), bodies.len()),
        (count as usize, count as usize),
        "each message once in the Trash"
    );
}

#[tokio::test]
async fn case_br_21_non_rfc_system_flags_dropped_before_append() {
    let Some(case) = Case::load("BR-21") else {
        return;
    };
    let Some(lab) = lab() else { return };
    let exp = case.expected();
    let fake = fake_host1(&case).await;
    let user = lab_user(&lab, &case.id, false);
    let ep2 = lab.endpoint(2, &user);
    let rep = sync(&fake.endpoint("host1", "u"), &ep2, &fake_opts()).await;
    assert_eq!(
        rep.exit_code(),
        0,
        "no APPEND refused, no flag error:\n{rep}"
    );
    assert_eq!(int(&exp, "failed_appends"), 0);
    assert!(
        rep.errors.is_empty(),
        "filtered before sending, no retry: {:?}",
        rep.errors
    );
    // host2's messages in host1's UID order (bodies 1..3.eml), each with the expected flags.
    let on2 = messages(&ep2, "INBOX").await;
    let want: Vec<Vec<String>> = exp["host2_flags"]
        .as_array()
        .expect("host2_flags")
        .iter()
        .map(|f| {
            let mut v = strings(Some(f));
            v.sort();
            v
        })
        .collect();
    for (i, flags) in want.iter().enumerate() {
        let body = case.file(&format!("host1/INBOX/{}.eml", i + 1));
        let copy = on2
            .iter()
            .find(|(_, b)| *b == body)
            .unwrap_or_else(|| panic!("{}.eml copied", i + 1));
        assert_eq!(&sorted_flags(&copy.0.flags), flags, "{}.eml", i + 1);
    }
    assert_eq!(on2.len(), want.len());
    assert_eq!(
        rep.totals.flags_dropped as usize,
        strings(exp.get("dropped_flags")).len(),
        "each drop counted:\n{rep}"
    );
}
