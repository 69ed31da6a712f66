//! The bug-report cases that stock Dovecot reproduces (`../shared/cases/BR-NN`, see their README),
//! one named test each, against lab instances started for the cases' Dovecot profiles
//! (`scripts/lab.sh profile`). Each test seeds its hosts as `case.toml` says, runs the real engine
//! ([`sync_account`]) or the `imapfleet` binary, and checks the case's `[expected]` outcome; command
//! counts come from Dovecot's raw log of the user's sessions.
//!
//! Gated like the other lab tests: without `IMAPFLEET_LAB=1` and no lab running they print a skip
//! note; without the cases directory (`$IMAPFLEET_CASES`, else `../shared/cases`) likewise. Users
//! user0100..user0199 are reserved for these tests, one (or a few) per test: tests run in parallel.

#[path = "support/cases.rs"]
mod cases;

use std::collections::BTreeMap;
use std::sync::Arc;

use cases::{digests, read_mailbox, seed, sha, sorted, Case, HostSpec, Instance, SeedMessage};
use chrono::{DateTime, FixedOffset, Utc};
use imapfleet_imap::Endpoint;
use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::report::AccountReport;

/// One case ready to run: both hosts' instances, endpoints for the test's user, the case.
struct Setup {
    case: Case,
    user: String,
    h1: HostSpec,
    h2: HostSpec,
    i1: Instance,
    i2: Instance,
}

impl Setup {
    /// Load the case, start the instances, wipe `user` on both. `None` = skipped.
    fn new(id: &str, user: &str) -> Option<Setup> {
        imapfleet_tests::lab()?;
        let case = Case::load(id)?;
        let h1 = case.host("host1");
        let h2 = case.host("host2");
        let i1 = h1.instance();
        let i2 = h2.instance();
        i1.wipe(user);
        i2.wipe(user);
        Some(Setup {
            case,
            user: user.to_string(),
            h1,
            h2,
            i1,
            i2,
        })
    }

    fn ep1(&self) -> Endpoint {
        self.i1.endpoint(&self.user)
    }

    fn ep2(&self) -> Endpoint {
        self.i2.endpoint(&self.user)
    }

    /// Seed a host from the case: its `folders` (each filled from `hostN/<dir>/*.eml` when such a
    /// directory exists) and its `[[hostN.message]]` list.
    async fn seed_host(&self, n: u8) {
        let (spec, ep) = if n == 1 {
            (&self.h1, self.ep1())
        } else {
            (&self.h2, self.ep2())
        };
        let host = format!("host{n}");
        let sep = separator(spec);
        let mut msgs: Vec<SeedMessage> = Vec::new();
        for f in &spec.folders {
            for (file, body) in self.case.folder_files(&host, f, sep) {
                msgs.push(SeedMessage {
                    folder: f.clone(),
                    file,
                    body,
                    flags: Vec::new(),
                    internaldate: None,
                });
            }
        }
        msgs.extend(spec.messages.iter().cloned());
        seed(&ep, &spec.folders, &msgs).await;
    }

    /// Seed both hosts.
    async fn seed(&self) {
        self.seed_host(1).await;
        self.seed_host(2).await;
    }

    /// One engine run; clears the host2 command log first, so [`Setup::host2_commands`] tells what
    /// this run sent.
    async fn run(&self, opts: &SyncOptions) -> AccountReport {
        self.i1.clear_commands(&self.user);
        self.i2.clear_commands(&self.user);
        sync_account(&self.ep1(), &self.ep2(), opts, Arc::new(NoProgress)).await
    }

    /// Commands of `verb` that host2 received during the last run.
    fn host2_count(&self, verb: &str) -> usize {
        self.i2.count_commands(&self.user, verb)
    }

    /// Write commands host2 received in the last run (APPEND, STORE, EXPUNGE, CREATE, DELETE...).
    fn host2_writes(&self) -> Vec<String> {
        self.i2
            .commands(&self.user)
            .into_iter()
            .filter(|c| {
                let v = cases::command_verb(c);
                [
                    "APPEND", "STORE", "EXPUNGE", "CREATE", "DELETE", "RENAME", "COPY", "MOVE",
                    "CLOSE",
                ]
                .contains(&v.as_str())
            })
            .collect()
    }
}

/// The separator of a host's profile.
fn separator(spec: &HostSpec) -> char {
    if let Some(s) = spec.sep.as_deref().and_then(|s| s.chars().next()) {
        return s;
    }
    match spec.profile.as_str() {
        "lab-host2" | "dovecot-gmail-emulation" => '/',
        _ => '.',
    }
}

/// Bodies of host2 folder `raw` as sorted digests.
fn folder_digests(mb: &BTreeMap<String, Vec<cases::Stored>>, raw: &str) -> Vec<String> {
    digests(
        mb.get(raw)
            .unwrap_or_else(|| panic!("host2 has no folder {raw:?}; it has {:?}", mb.keys()))
            .iter()
            .map(|m| m.body.as_slice()),
    )
}

/// Sorted digests of case files.
fn file_digests(case: &Case, files: &[String]) -> Vec<String> {
    let bodies: Vec<Vec<u8>> = files.iter().map(|f| case.file(f)).collect();
    digests(bodies.iter().map(Vec::as_slice))
}

fn strs(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

fn int(case: &Case, path: &str) -> i64 {
    case.value(path)
        .and_then(|v| v.as_integer())
        .unwrap_or_else(|| panic!("{}: {path} is not an integer", case.id))
}

/// Check `expected.<table>`: host2 folder (wire name) -> case files, byte-identical, nothing more.
fn check_host2_files(s: &Setup, mb: &BTreeMap<String, Vec<cases::Stored>>, table: &str) {
    for (folder, files) in s.case.table(table) {
        let Some(files) = files.as_array().map(|_| strs(&files)) else {
            continue;
        };
        assert_eq!(
            folder_digests(mb, &folder),
            file_digests(&s.case, &files),
            "{}: host2 {folder:?} should hold exactly {files:?}",
            s.case.id
        );
    }
}

/// Check `expected.mapping`: each host1 folder (one case file each) landed, byte-identical, in the
/// host2 folder the case names.
fn check_mapping(s: &Setup, mb: &BTreeMap<String, Vec<cases::Stored>>) {
    for (f1, f2) in s.case.table("expected.mapping") {
        let f2 = f2.as_str().expect("host2 folder name");
        let files: Vec<String> = s
            .case
            .folder_files("host1", &f1, '/')
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(files.len(), 1, "{}: case files of {f1}", s.case.id);
        assert_eq!(
            folder_digests(mb, f2),
            file_digests(&s.case, &files),
            "{}: {f1} -> {f2}",
            s.case.id
        );
    }
}

/// A run that changed nothing on host2: no write command at all, nothing counted as done.
fn assert_quiet(s: &Setup, r: &AccountReport, what: &str) {
    assert_eq!(r.exit_code(), 0, "{}: {what}:\n{r}", s.case.id);
    assert_eq!(
        r.totals.transferred, 0,
        "{}: {what} copied:\n{r}",
        s.case.id
    );
    assert_eq!(
        r.totals.flags_updated, 0,
        "{}: {what} stored flags:\n{r}",
        s.case.id
    );
    assert!(
        r.created_folders.is_empty(),
        "{}: {what} created {:?}",
        s.case.id,
        r.created_folders
    );
    assert_eq!(
        s.host2_writes(),
        Vec::<String>::new(),
        "{}: {what} wrote to host2",
        s.case.id
    );
}

/// A small distinct message (unique Message-ID).
fn gen_message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: Robot <robot@example.com>\r\nTo: user@example.org\r\nSubject: {tag} message {i}\r\n\
Message-ID: <{tag}-{i}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
Body of {tag} message {i}.\r\n"
    )
    .into_bytes()
}

/// Messages `--delete2` removed from host2 (read through the JSON report, as an operator would).
fn deleted2(r: &AccountReport) -> u64 {
    let v = serde_json::to_value(r).expect("report as JSON");
    v["totals"]["deleted2"]
        .as_u64()
        .unwrap_or_else(|| panic!("the report has no totals.deleted2: {}", v["totals"]))
}

fn instant(d: &DateTime<FixedOffset>) -> DateTime<Utc> {
    d.with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_10_bracket_folder_names_unquoted() {
    let Some(s) = Setup::new("BR-10", "user0100") else {
        return;
    };
    s.seed().await;
    // Dovecot lists these names as bare atoms; the IMAP layer must read them exactly.
    let listed = cases::list_raw(&s.ep1()).await;
    for name in &s.h1.folders {
        assert!(
            listed.contains(name),
            "host1 LIST lost {name:?}: {listed:?}"
        );
    }
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    let mb = read_mailbox(&s.ep2()).await;
    check_host2_files(&s, &mb, "expected.host2");
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_14_internaldate_kept_as_instant() {
    // The case as written, then its harder variant: host1 renders dates in Los Angeles time and
    // host2 in Kolkata time, so the strings differ on each side while the instants must not.
    for (user, tz1, tz2) in [
        ("user0101", None, None),
        (
            "user0102",
            Some("America/Los_Angeles"),
            Some("Asia/Kolkata"),
        ),
    ] {
        let Some(mut s) = Setup::new("BR-14", user) else {
            return;
        };
        if tz1.is_some() {
            s.h1.tz = tz1.map(String::from);
            s.h2.tz = tz2.map(String::from);
            s.i1 = s.h1.instance();
            s.i2 = s.h2.instance();
            s.i1.wipe(user);
            s.i2.wipe(user);
        }
        s.seed().await;
        let opts = SyncOptions::default();
        let r = s.run(&opts).await;
        assert_eq!(r.exit_code(), 0, "first run ({tz1:?}):\n{r}");
        let mb = read_mailbox(&s.ep2()).await;
        let mut got: Vec<String> = mb["INBOX"]
            .iter()
            .map(|m| {
                instant(m.internaldate.as_ref().expect("INTERNALDATE"))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
            .collect();
        got.sort();
        let mut want = strs(&s.case.value("expected.host2_internaldate_utc").unwrap());
        want.sort();
        assert_eq!(
            got, want,
            "host2 INTERNALDATE instants ({tz1:?} -> {tz2:?})"
        );
        let r2 = s.run(&opts).await;
        assert_eq!(int(&s.case, "expected.second_run_changes"), 0);
        assert_quiet(&s, &r2, "second run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_16_identical_headers_different_bodies() {
    let Some(s) = Setup::new("BR-16", "user0103") else {
        return;
    };
    s.seed().await;
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    let mb = read_mailbox(&s.ep2()).await;
    check_host2_files(&s, &mb, "expected.host2");
    let r2 = s.run(&opts).await;
    assert_eq!(int(&s.case, "expected.second_run_appends"), 0);
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_16_identical_headers_same_size_partial_host2() {
    // Beyond the case: the two notices also have the same size and date, and host2 already holds
    // only the second one (an interrupted earlier run). Only the body tells them apart: the run
    // must copy the first, not a second copy of the second.
    let Some(s) = Setup::new("BR-16", "user0104") else {
        return;
    };
    let head = "From: Monitor <monitor@example.com>\r\nTo: ops@example.org\r\n\
Subject: Daily check\r\nDate: Mon, 1 Jan 2024 06:00:00 +0000\r\n\r\n";
    let a = format!("{head}Status: green\r\n").into_bytes();
    let b = format!("{head}Status: amber\r\n").into_bytes();
    assert_eq!(a.len(), b.len());
    let date = Some(cases::parse_date("01-Jan-2024 06:00:05 +0000", Utc::now()));
    let msg = |body: &Vec<u8>| SeedMessage {
        folder: "Archive".into(),
        file: "generated".into(),
        body: body.clone(),
        flags: vec!["\\Seen".into()],
        internaldate: date,
    };
    seed(&s.ep1(), &[], &[msg(&a), msg(&b)]).await;
    seed(&s.ep2(), &[], &[msg(&b)]).await;
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(
        folder_digests(&mb, "Archive"),
        digests([a.as_slice(), b.as_slice()]),
        "host2 Archive must hold both notices once"
    );
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_17_no_message_id_not_duplicated() {
    let Some(s) = Setup::new("BR-17", "user0105") else {
        return;
    };
    s.seed().await;
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    let mb = read_mailbox(&s.ep2()).await;
    // Byte-identical: no header added.
    check_host2_files(&s, &mb, "expected.host2");
    // Fresh worker processes for run 2: the engine keeps no state between calls; run the binary
    // to be sure nothing survives in memory.
    s.i2.clear_commands(&s.user);
    let out = run_binary(&s, &[]);
    assert_eq!(out.status.code(), Some(0), "second run:\n{}", text(&out));
    assert_eq!(int(&s.case, "expected.second_run_appends"), 0);
    assert_eq!(
        s.host2_writes(),
        Vec::<String>::new(),
        "second run wrote to host2"
    );
    assert_eq!(
        folder_digests(&read_mailbox(&s.ep2()).await, "INBOX").len(),
        3
    );
}

/// Run `imapfleet sync` between the setup's instances (password "secret" on both).
fn run_binary(s: &Setup, extra: &[&str]) -> std::process::Output {
    run_binary_as(s, &s.user, "secret", extra)
}

fn run_binary_as(s: &Setup, user: &str, password: &str, extra: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("imapfleet-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pf = dir.join(format!("{user}.pass"));
    std::fs::write(&pf, format!("{password}\n")).unwrap();
    let pf = pf.display().to_string();
    let ca = s.i1.ca.display().to_string();
    let (p1, p2) = (s.i1.port.to_string(), s.i2.port.to_string());
    let mut args: Vec<&str> = vec![
        "sync",
        "--host1",
        "127.0.0.1",
        "--port1",
        &p1,
        "--user1",
        user,
        "--passfile1",
        &pf,
        "--cafile1",
        &ca,
        "--host2",
        "127.0.0.1",
        "--port2",
        &p2,
        "--user2",
        user,
        "--passfile2",
        &pf,
        "--cafile2",
        &ca,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(imapfleet_tests::bin())
        .args(&args)
        .env_remove("IMAPFLEET_PASSWORD1")
        .env_remove("IMAPFLEET_PASSWORD2")
        .env_remove("RUST_LOG")
        .output()
        .expect("run imapfleet")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_20_keyword_case_difference_is_in_sync() {
    let Some(s) = Setup::new("BR-20", "user0106") else {
        return;
    };
    s.seed().await;
    let dry = SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    };
    let d = s.run(&dry).await;
    assert_eq!(
        d.exit_code(),
        0,
        "the dry run sees the message in sync:\n{d}"
    );
    assert_eq!(d.totals.flags_updated, 0, "dry run would store flags:\n{d}");
    assert_eq!(d.totals.skipped, 1, "dry run: the message is in sync:\n{d}");
    let r = s.run(&SyncOptions::default()).await;
    assert_eq!(int(&s.case, "expected.host2_store_commands"), 0);
    assert_eq!(
        s.host2_count("STORE"),
        0,
        "STORE sent: {:?}",
        s.host2_writes()
    );
    assert_quiet(&s, &r, "the run");
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(mb["INBOX"].len(), 1);
    assert_eq!(
        mb["INBOX"][0].sorted_flags(),
        sorted(&strs(&s.case.value("expected.host2_flags").unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_23_refused_keyword_does_not_block_the_message() {
    let Some(s) = Setup::new("BR-23", "user0107") else {
        return;
    };
    s.seed().await;
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(mb["INBOX"].len(), 1, "the message must arrive:\n{r}");
    let want = sorted(&strs(&s.case.value("expected.host2_flags").unwrap()));
    assert_eq!(mb["INBOX"][0].sorted_flags(), want, "{r}");
    // The drop is reported, by name, as a flags problem (exit 24), not a lost message.
    let dropped = strs(&s.case.value("expected.dropped_keywords").unwrap());
    assert_eq!(r.exit_code(), 24, "{r}");
    for k in &dropped {
        assert!(
            r.errors.iter().any(|e| e.message.contains(k.as_str())),
            "{k} not reported as dropped:\n{r}"
        );
    }
    assert_eq!(r.totals.transferred, 1, "{r}");
    // A re-run keeps the storable keywords (it must not strip them to get rid of the refused one).
    let _ = s.run(&opts).await;
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(mb["INBOX"].len(), 1);
    assert_eq!(mb["INBOX"][0].sorted_flags(), want, "after the re-run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_24_modified_utf7_names_round_trip() {
    let Some(s) = Setup::new("BR-24", "user0108") else {
        return;
    };
    s.seed().await;
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    // The report speaks decoded names.
    for name in strs(&s.case.value("host1.folders_unicode").unwrap()) {
        assert!(
            r.folders.iter().any(|f| f.name1 == name),
            "report lacks {name:?}: {:?}",
            r.folders.iter().map(|f| &f.name1).collect::<Vec<_>>()
        );
    }
    let mb = read_mailbox(&s.ep2()).await;
    for wire in strs(&s.case.value("expected.host2_folders_wire_include").unwrap()) {
        let files: Vec<String> = s
            .case
            .folder_files("host1", &wire, '.')
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(files.len(), 1, "case files of {wire}");
        assert_eq!(
            folder_digests(&mb, &wire),
            file_digests(&s.case, &files),
            "{wire}"
        );
    }
    // Nothing but these, INBOX and nothing else.
    assert_eq!(
        mb.len(),
        1 + s.h1.folders.len(),
        "host2 folders: {:?}",
        mb.keys()
    );
    let r2 = s.run(&opts).await;
    assert_eq!(int(&s.case, "expected.second_run_new_folders"), 0);
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_26_slash_source_to_inbox_prefix_destination() {
    let Some(s) = Setup::new("BR-26", "user0109") else {
        return;
    };
    s.seed().await;
    let listed1 = cases::list_raw(&s.ep1()).await;
    assert!(listed1.contains(&"Clients".to_string()), "{listed1:?}");
    let opts = SyncOptions::default();
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    let mb = read_mailbox(&s.ep2()).await;
    check_mapping(&s, &mb);
    let all2 = cases::list_raw(&s.ep2()).await;
    assert!(
        !all2
            .iter()
            .any(|n| n.to_ascii_uppercase().starts_with("INBOX.INBOX")),
        "{all2:?}"
    );
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_26_variant_mixed_case_inbox_from_a_fake_host1() {
    use imapfleet_tests::fake_server::{Config, FakeServer, Folder, DEFAULT_DATE};
    // The SmarterMail-like variant: host1 lists `Inbox` and `Inbox/Status` in mixed case.
    let Some(s) = Setup::new("BR-26", "user0124") else {
        return;
    };
    let variant = s.case.table("variant.smartermail");
    let list = variant["list_reply"].as_str().unwrap();
    let names: Vec<String> = list
        .lines()
        .filter(|l| l.starts_with("* LIST"))
        .map(|l| l.rsplit(' ').next().unwrap().trim().to_string())
        .collect();
    assert_eq!(names, ["Inbox", "Inbox/Status"]);
    let folders: Vec<Folder> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut f = Folder::new(n);
            f.push(&["\\Seen"], DEFAULT_DATE, gen_message("br26-variant", i));
            f
        })
        .collect();
    let host1 = FakeServer::start(Config {
        capabilities: "IMAP4rev1 AUTH=PLAIN UIDPLUS".into(),
        separator: '/',
        folders,
        ..Config::default()
    })
    .await;
    let ep1 = host1.endpoint("host1", &s.user);
    let r = sync_account(
        &ep1,
        &s.ep2(),
        &SyncOptions::default(),
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let mb = read_mailbox(&s.ep2()).await;
    for (f1, f2) in variant["expected_mapping"].as_table().unwrap() {
        let i = names.iter().position(|n| n == f1).unwrap();
        let want = gen_message("br26-variant", i);
        assert_eq!(
            folder_digests(&mb, f2.as_str().unwrap()),
            digests([want.as_slice()]),
            "{f1}"
        );
    }
    assert_eq!(
        folder_digests(&mb, "INBOX"),
        digests([gen_message("br26-variant", 0).as_slice()])
    );
    assert!(
        !mb.keys()
            .any(|k| k.to_ascii_uppercase().starts_with("INBOX.INBOX")),
        "{:?}",
        mb.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_28_localized_special_folders_without_special_use() {
    let Some(s) = Setup::new("BR-28", "user0110") else {
        return;
    };
    s.seed().await;
    let mut opts = SyncOptions::default();
    opts.mapping.automap = true;
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "first run:\n{r}");
    let mb = read_mailbox(&s.ep2()).await;
    check_mapping(&s, &mb);
    let all2 = cases::list_raw(&s.ep2()).await;
    assert!(
        !all2.iter().any(|n| n.starts_with("Posta") || n == "Bozze"),
        "a localized name was created on host2: {all2:?}"
    );
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "second run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_29_gmail_labels_all_mail_only_unlabelled() {
    let Some(s) = Setup::new("BR-29", "user0111") else {
        return;
    };
    // Letter -> bytes; each folder of host1 gets the letters `host1.content` lists.
    let files = s.case.table("host1.message_files");
    let body = |letter: &str| s.case.file(files[letter].as_str().unwrap());
    let mut msgs = Vec::new();
    for (folder, letters) in s.case.table("host1.content") {
        for l in strs(&letters) {
            msgs.push(SeedMessage {
                folder: folder.clone(),
                file: l.clone(),
                body: body(&l),
                flags: vec!["\\Seen".into()],
                internaldate: None,
            });
        }
    }
    seed(&s.ep1(), &[], &msgs).await;
    // Gmail-source mode: special folders by attribute (Sent Mail -> Sent), All Mail last and only
    // for what no label folder holds (the default for any host1 \All folder).
    let mut opts = SyncOptions::default();
    opts.mapping.automap = true;
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "run 1:\n{r}");
    let check = |mb: &BTreeMap<String, Vec<cases::Stored>>, what: &str| {
        for (folder, letters) in s.case.table("expected.host2") {
            let Some(_) = letters.as_array() else {
                continue;
            };
            let want: Vec<Vec<u8>> = strs(&letters).iter().map(|l| body(l)).collect();
            assert_eq!(
                folder_digests(mb, &folder),
                digests(want.iter().map(Vec::as_slice)),
                "{what}: host2 {folder} should hold {letters}"
            );
        }
        let total: usize = mb.values().map(Vec::len).sum();
        assert_eq!(total, 6, "{what}: host2 folders {:?}", mb.keys());
    };
    check(&read_mailbox(&s.ep2()).await, "after run 1");
    assert_eq!(int(&s.case, "expected.host2.later_runs_changes"), 0);
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "run 2");
    // Run 3, "the opposite folder priority": one connection, so folders go one by one in another
    // order than run 1's parallel workers. Placement must not depend on it.
    let seq = SyncOptions {
        connections: 1,
        ..opts.clone()
    };
    let r3 = s.run(&seq).await;
    assert_quiet(&s, &r3, "run 3");
    check(&read_mailbox(&s.ep2()).await, "after run 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_31_message_too_large_for_host2() {
    let Some(s) = Setup::new("BR-31", "user0112") else {
        return;
    };
    s.seed().await;
    let opts = SyncOptions::default();
    let expected: Vec<String> = strs(&s.case.value("expected.host2_inbox").unwrap());
    for run in 1..=2 {
        let r = s.run(&opts).await;
        let mb = read_mailbox(&s.ep2()).await;
        assert_eq!(
            folder_digests(&mb, "INBOX"),
            file_digests(&s.case, &expected),
            "run {run}: host2 INBOX = {{1, 3}}, never a duplicate:\n{r}"
        );
        assert_eq!(
            r.errors.len() as i64,
            int(&s.case, "expected.permanent_failures"),
            "run {run}: one permanent failure:\n{r}"
        );
        let e = &r.errors[0];
        assert_eq!(e.folder.as_deref(), Some("INBOX"), "{e}");
        assert!(e.uid.is_some(), "{e}");
        assert!(
            e.message.contains("<br31-2@example.com>"),
            "names the message: {e}"
        );
        assert!(
            e.message.contains("larger than"),
            "carries the server's words: {e}"
        );
        assert_eq!(r.exit_code(), 23, "append class:\n{r}");
        // Permanent: the big message goes to host2 once per run, in an APPEND of its own (a
        // refused MULTIAPPEND would have to be resent one by one), never again with fewer flags.
        let big = s.h1.messages[1].body.len();
        let sent = s.i2.raw_input(&s.user).matches(&format!("{{{big}")).count();
        assert_eq!(sent, 1, "run {run}: the big message was sent {sent} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_34_source_connection_limit() {
    let Some(s) = Setup::new("BR-34", "user0113") else {
        return;
    };
    let gen = s.case.table("host1.generate");
    let folders = strs(&gen["folders"]);
    let per = gen["messages_per_folder"].as_integer().unwrap() as usize;
    let mut msgs = Vec::new();
    for f in &folders {
        for i in 0..per {
            msgs.push(SeedMessage {
                folder: f.clone(),
                file: "generated".into(),
                body: gen_message(&format!("br34-{f}"), i),
                flags: vec![],
                internaldate: None,
            });
        }
    }
    seed(&s.ep1(), &[], &msgs).await;
    let workers = s.case.value("fleet.workers").unwrap().as_integer().unwrap() as usize;
    // More workers than host1 allows connections: the extra logins get `NO [LIMIT]`, which is
    // back-pressure, not an authentication failure.
    let opts = SyncOptions {
        connections: workers,
        ..SyncOptions::default()
    };
    let from = log_len(&s.i1);
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(int(&s.case, "expected.failed_tasks"), 0);
    let mb = read_mailbox(&s.ep2()).await;
    let total: usize = mb.values().map(Vec::len).sum();
    assert_eq!(total as i64, int(&s.case, "expected.host2_messages"), "{r}");
    // Dovecot's own log: never more than the limit logged in at once, and the refused logins
    // were the limit's doing.
    let limit = int(&s.case, "expected.max_concurrent_host1_sessions_for_user") as usize;
    let max = max_concurrent_sessions(&s.i1, &s.user, from);
    assert!(max <= limit, "{max} host1 sessions at once");
    // The verifier with as many workers: the extra ones that cannot log in leave every folder to
    // the others, none goes unverified (several rounds: the race was between workers).
    for round in 0..3 {
        let v = imapfleet_sync::verify::verify_account(&s.ep1(), &s.ep2(), &opts)
            .await
            .expect("verify");
        assert!(v.ok, "round {round}:\n{v}");
        for f in &folders {
            assert!(
                v.folders.iter().any(|x| &x.name1 == f && x.error.is_none()),
                "round {round}: {f} verified:\n{v}"
            );
        }
    }
}

/// Length of an instance's Dovecot log now (where [`max_concurrent_sessions`] starts reading).
fn log_len(i: &Instance) -> usize {
    std::fs::read(i.dir.join("dovecot.log")).map_or(0, |b| b.len())
}

/// Most sessions of `user` open at once on an instance, from Dovecot's log (Login / Disconnected)
/// after byte `from`.
fn max_concurrent_sessions(i: &Instance, user: &str, from: usize) -> usize {
    let log = std::fs::read(i.dir.join("dovecot.log")).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
    let (mut open, mut max) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains(&format!("imap-login: Info: Login: user=<{user}>")) {
            open += 1;
            max = max.max(open);
        } else if line.contains(&format!("imap({user})")) && line.contains("Disconnected") {
            open = open.saturating_sub(1);
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_36_awkward_passwords() {
    imapfleet_tests::lab();
    let Some(case) = Case::load("BR-36") else {
        return;
    };
    if imapfleet_tests::lab().is_none() {
        return;
    }
    let users: Vec<(String, String)> = case.toml["user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["password"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // A second passdb with the case's users (base64 in the file: no character needs escaping).
    let dir = std::path::PathBuf::from("/dev/shm/imapfleet-lab/overrides");
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("br36.passwd");
    let mut lines = String::new();
    for (u, p) in &users {
        lines.push_str(&format!("{u}:{{PLAIN.b64}}{}::::::\n", b64(p.as_bytes())));
    }
    std::fs::write(&pw, lines).unwrap();
    let overrides = vec![format!(
        "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {}\n}}",
        pw.display()
    )];
    let i1 = Instance::start("lab-host1", &overrides, None, None);
    let i2 = Instance::start("lab-host2", &overrides, None, None);
    let s = Setup {
        case: case.clone(),
        user: String::new(),
        h1: case.host("host1"),
        h2: case.host("host2"),
        i1,
        i2,
    };
    assert!(case
        .value("expected.all_jobs_succeed")
        .unwrap()
        .as_bool()
        .unwrap());
    for (user, password) in &users {
        s.i1.wipe(user);
        s.i2.wipe(user);
        let body = gen_message(&format!("br36-{user}"), 1);
        let m = SeedMessage {
            folder: "INBOX".into(),
            file: "generated".into(),
            body: body.clone(),
            flags: vec![],
            internaldate: None,
        };
        seed(&s.i1.endpoint_with(user, password), &[], &[m]).await;
        // Full tracing, to prove that not even the wire log holds the password.
        let out = run_binary_as(&s, user, password, &["--log", "trace"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(0), "{user}:\n{all}");
        assert_eq!(int(&case, "expected.password_occurrences_in_logs"), 0);
        assert!(
            !all.contains(password.as_str()),
            "{user}: password in the output"
        );
        let mb = read_mailbox(&s.i2.endpoint_with(user, password)).await;
        assert_eq!(
            folder_digests(&mb, "INBOX"),
            digests([body.as_slice()]),
            "{user}"
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_37_deleted_on_source_not_copied_nothing_expunged() {
    let Some(s) = Setup::new("BR-37", "user0114") else {
        return;
    };
    s.seed().await;
    let r = s.run(&SyncOptions::default()).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let mb = read_mailbox(&s.ep2()).await;
    let inbox = &mb["INBOX"];
    let want = s.case.table("expected.host2_inbox");
    assert_eq!(inbox.len(), want.len(), "host2 INBOX: {inbox:?}");
    for (file, flags) in want {
        let digest = sha(&s.case.file(&file));
        let m = inbox
            .iter()
            .find(|m| sha(&m.body) == digest)
            .unwrap_or_else(|| panic!("{file} missing on host2"));
        assert_eq!(m.sorted_flags(), sorted(&strs(&flags)), "{file}");
    }
    assert_eq!(r.totals.skipped_deleted, 1, "m2 counted as left out:\n{r}");
    assert_eq!(int(&s.case, "expected.host2_expunge_commands"), 0);
    // CLOSE would expunge too.
    for verb in ["EXPUNGE", "CLOSE"] {
        assert_eq!(s.host2_count(verb), 0, "{verb}: {:?}", s.host2_writes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_39_source_uidvalidity_changes() {
    let Some(s) = Setup::new("BR-39", "user0115") else {
        return;
    };
    let file = |n: &str| s.case.file(&format!("host1/Projects/{n}"));
    let m = |n: &str, flags: &[&str]| SeedMessage {
        folder: "Projects".into(),
        file: n.into(),
        body: file(n),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internaldate: None,
    };
    let run1: Vec<SeedMessage> = strs(&s.case.value("host1.run1_content").unwrap())
        .iter()
        .map(|n| m(n, &["\\Seen"]))
        .collect();
    seed(&s.ep1(), &[], &run1).await;
    let mut opts = SyncOptions::default();
    opts.plan.delete2 = true;
    let r1 = s.run(&opts).await;
    assert_eq!(r1.exit_code(), 0, "run 1:\n{r1}");
    let uv_before = uidvalidity(&s.ep1(), "Projects").await;

    // Between the runs: the folder is deleted, re-created (new UIDVALIDITY) and refilled in
    // another order, so UID 1 now holds message 3.
    let mut s1 = imapfleet_imap::Session::connect(&s.ep1()).await.unwrap();
    s1.delete("Projects").await.unwrap();
    s1.logout().await;
    seed(
        &s.ep1(),
        &["Projects".into()],
        &[
            m("3.eml", &["\\Seen"]),
            m("1.eml", &["\\Seen", "\\Flagged"]),
            m("2.eml", &["\\Seen"]),
            m("4.eml", &["\\Seen"]),
        ],
    )
    .await;
    assert_ne!(uidvalidity(&s.ep1(), "Projects").await, uv_before);

    let r2 = s.run(&opts).await;
    assert_eq!(r2.exit_code(), 0, "run 2:\n{r2}");
    assert_eq!(deleted2(&r2), 0, "nothing deleted:\n{r2}");
    assert_eq!(s.host2_count("EXPUNGE"), 0);
    let mb = read_mailbox(&s.ep2()).await;
    let projects = &mb["Projects"];
    let want = s.case.table("expected.host2_after_run2");
    assert_eq!(projects.len(), want.len(), "no duplicate: {projects:?}");
    for (f, flags) in want {
        let d = sha(&s.case.file(&f));
        let got = projects
            .iter()
            .find(|m| sha(&m.body) == d)
            .unwrap_or_else(|| panic!("{f} missing"));
        assert_eq!(
            got.sorted_flags(),
            sorted(&strs(&flags)),
            "flags follow the message: {f}"
        );
    }
    let r3 = s.run(&opts).await;
    assert_quiet(&s, &r3, "run 3");

    // The lighter variant: only the value changes (doveadm), the UIDs stay.
    s.i1.doveadm(&[
        "mailbox",
        "update",
        "-u",
        &s.user,
        "--uid-validity",
        "4242",
        "Projects",
    ]);
    assert_eq!(uidvalidity(&s.ep1(), "Projects").await, Some(4242));
    let r4 = s.run(&opts).await;
    assert_quiet(&s, &r4, "run after the UIDVALIDITY-only change");
}

async fn uidvalidity(ep: &Endpoint, folder: &str) -> Option<u32> {
    let mut s = imapfleet_imap::Session::connect(ep).await.unwrap();
    let st = s.status(folder).await.unwrap();
    s.logout().await;
    st.uidvalidity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_43_rerun_of_large_folder_is_cheap() {
    let Some(s) = Setup::new("BR-43", "user0116") else {
        return;
    };
    let gen = s.case.table("host1.generate");
    let n = gen["messages_per_folder"].as_integer().unwrap() as usize;
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| gen_message("br43", i)).collect();
    imapfleet_tests::append_raw(&s.ep1(), "INBOX", &msgs).await;
    // Incremental runs keep sync state (issue 4): a file store of their own.
    let dir = std::env::temp_dir().join(format!("imapfleet-br43-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = SyncOptions {
        state: Some(imapfleet_sync::state::StateHandle::new(
            Arc::new(imapfleet_sync::state::file::FileState::new(&dir).expect("state dir")),
            0,
        )),
        ..SyncOptions::default()
    };
    let r1 = s.run(&opts).await;
    assert_eq!(r1.exit_code(), 0, "run 1:\n{r1}");

    // Between the runs: 5 new messages, \Flagged on 10 old ones.
    let new: Vec<Vec<u8>> = (n..n + 5).map(|i| gen_message("br43", i)).collect();
    imapfleet_tests::append_raw(&s.ep1(), "INBOX", &new).await;
    let mut s1 = imapfleet_imap::Session::connect(&s.ep1()).await.unwrap();
    s1.select("INBOX", false).await.unwrap();
    let flagged: Vec<u32> = (1..=10).map(|i| i * 97).collect();
    s1.uid_store(
        &flagged,
        imapfleet_imap::StoreMode::Add,
        &["\\Flagged".into()],
    )
    .await
    .unwrap();
    s1.logout().await;

    let started = std::time::Instant::now();
    let r2 = s.run(&opts).await;
    let wall2 = started.elapsed();
    assert_eq!(r2.exit_code(), 0, "run 2:\n{r2}");
    assert_eq!(
        r2.totals.transferred as i64,
        int(&s.case, "expected.run2_appends")
    );
    assert_eq!(
        r2.totals.flags_updated as i64,
        int(&s.case, "expected.run2_stores")
    );
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(
        mb["INBOX"].len() as i64,
        int(&s.case, "expected.host2_inbox_count")
    );
    // The cost: no header or body fetch over the known UIDs on host1 in run 2.
    let fetches: Vec<String> =
        s.i1.commands(&s.user)
            .into_iter()
            .filter(|c| cases::command_verb(c) == "FETCH" && c.contains("BODY"))
            .collect();
    assert_eq!(
        int(
            &s.case,
            "expected.run2_body_or_header_fetches_of_known_messages"
        ),
        0
    );
    for f in &fetches {
        let set = f.split_whitespace().nth(2).unwrap_or("");
        assert!(
            !set.starts_with("1:") && !set.starts_with("1,"),
            "run 2 re-read known messages: {f}"
        );
    }
    // The bench figures of the case (printed, not asserted: timings vary run to run).
    let read1 = s.i1.raw_output_len(&s.user);
    let budget = int(&s.case, "expected.bench_budget_host1_bytes_read_run2");
    println!(
        "BR-43 run 2: {read1} bytes read from host1 (budget {budget}), {:.2} s (run 1: {:.2} s)",
        wall2.as_secs_f64(),
        r1.elapsed_secs
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_44_eight_bit_bytes_copied_exactly() {
    let Some(s) = Setup::new("BR-44", "user0117") else {
        return;
    };
    s.seed().await;
    let r = s.run(&SyncOptions::default()).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let files: Vec<String> = s.h1.messages.iter().map(|m| m.file.clone()).collect();
    assert!(s
        .case
        .value("expected.byte_identical")
        .unwrap()
        .as_bool()
        .unwrap());
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(folder_digests(&mb, "INBOX"), file_digests(&s.case, &files));
    // Run 2 through the binary with full tracing: logging invalid UTF-8 must not hurt.
    s.i2.clear_commands(&s.user);
    let out = run_binary(&s, &["--log", "trace"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(int(&s.case, "expected.second_run_appends"), 0);
    assert_eq!(
        s.host2_writes(),
        Vec::<String>::new(),
        "run 2 wrote to host2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_51_age_window_across_time_zones() {
    let Some(s) = Setup::new("BR-51", "user0118") else {
        return;
    };
    let now = Utc::now();
    let msg = |rel: &str| SeedMessage {
        folder: "INBOX".into(),
        file: rel.into(),
        body: gen_message(&format!("br51{rel}"), 0),
        flags: vec![],
        internaldate: Some(cases::parse_date(rel, now)),
    };
    let rels = strs(
        &s.case
            .value("host1.messages_relative_internaldate")
            .unwrap(),
    );
    seed(
        &s.ep1(),
        &[],
        &rels.iter().map(|r| msg(r)).collect::<Vec<_>>(),
    )
    .await;
    let pre = strs(&s.case.value("host2.preseed_relative_internaldate").unwrap());
    // Beyond the case: host2 also holds a message of its own inside the window, which delete2
    // must remove (so the test shows that delete2 is live and only the window limits it).
    let mut host2: Vec<SeedMessage> = pre.iter().map(|r| msg(r)).collect();
    let own = SeedMessage {
        body: gen_message("br51-host2-only", 1),
        ..msg("-1d")
    };
    host2.push(own.clone());
    seed(&s.ep2(), &[], &host2).await;

    let mut opts = SyncOptions::default();
    let days = s.case.value("operation.options.maxage_days").unwrap();
    opts.plan.not_before =
        Some((now - chrono::Duration::days(days.as_integer().unwrap())).fixed_offset());
    opts.plan.delete2 = true;
    let r = s.run(&opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let mb = read_mailbox(&s.ep2()).await;
    let copied = strs(&s.case.value("expected.copied").unwrap());
    let mut want: Vec<Vec<u8>> = copied.iter().map(|r| msg(r).body).collect();
    want.extend(pre.iter().map(|r| msg(r).body));
    assert_eq!(
        folder_digests(&mb, "INBOX"),
        digests(want.iter().map(Vec::as_slice)),
        "copied by instant; the old host2 copy kept; host2's own recent message deleted:\n{r}"
    );
    assert_eq!(int(&s.case, "expected.host2_deleted"), 0);
    assert_eq!(deleted2(&r), 1, "only host2's own in-window message:\n{r}");
    let r2 = s.run(&opts).await;
    assert_quiet(&s, &r2, "re-run");
}

// --- beyond the cases: the same kinds with other values ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_of_one_is_never_exceeded_whatever_the_pool() {
    // BR-34's kind with a tighter server (one session per user) and a larger pool (8 workers,
    // 7 folders): the extra workers are turned away one at a time, one pair does all the work.
    if imapfleet_tests::lab().is_none() {
        return;
    }
    let user = "user0120";
    let limit = ["protocol imap {\n  mail_max_userip_connections = 1\n}".to_string()];
    let i1 = Instance::start("lab-host1", &limit, None, None);
    let i2 = Instance::start("lab-host2", &[], None, None);
    i1.wipe(user);
    i2.wipe(user);
    let folders: Vec<String> = (1..=7).map(|n| format!("L{n}")).collect();
    let msgs: Vec<SeedMessage> = folders
        .iter()
        .flat_map(|f| {
            (0..2).map(move |i| SeedMessage {
                folder: f.clone(),
                file: "generated".into(),
                body: gen_message(&format!("lim1-{f}"), i),
                flags: vec![],
                internaldate: None,
            })
        })
        .collect();
    seed(&i1.endpoint(user), &[], &msgs).await;
    // Dovecot counts a session until its process is gone: let the seeding one go.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let from = log_len(&i1);
    let opts = SyncOptions {
        connections: 8,
        ..SyncOptions::default()
    };
    let r = sync_account(
        &i1.endpoint(user),
        &i2.endpoint(user),
        &opts,
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.transferred, 14, "{r}");
    let max = max_concurrent_sessions(&i1, user, from);
    assert_eq!(max, 1, "{max} host1 sessions at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete2_guard_keeps_host2_when_host1_empties_and_force_deletes() {
    // The guard of BR-39's --delete2 on the lab: a host1 folder that suddenly lists nothing, and
    // one that lost most of its mail, delete nothing on host2 unless forced; a small share goes.
    if imapfleet_tests::lab().is_none() {
        return;
    }
    let user = "user0121";
    let i1 = Instance::start("lab-host1", &[], None, None);
    let i2 = Instance::start("lab-host2", &[], None, None);
    i1.wipe(user);
    i2.wipe(user);
    let (ep1, ep2) = (i1.endpoint(user), i2.endpoint(user));
    let m = |f: &str, i: usize| SeedMessage {
        folder: f.into(),
        file: "generated".into(),
        body: gen_message(&format!("guard-{f}"), i),
        flags: vec![],
        internaldate: None,
    };
    let seeded: Vec<SeedMessage> = (0..4)
        .map(|i| m("Emptied", i))
        .chain((0..10).map(|i| m("Shrunk", i)))
        .collect();
    seed(&ep1, &[], &seeded).await;
    let mut opts = SyncOptions::default();
    opts.plan.delete2 = true;
    let r = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");

    // host1: Emptied loses all 4, Shrunk loses 6 of 10.
    let mut s1 = imapfleet_imap::Session::connect(&ep1).await.unwrap();
    for (folder, n) in [("Emptied", 4u32), ("Shrunk", 6)] {
        s1.select(folder, false).await.unwrap();
        let uids: Vec<u32> = (1..=n).collect();
        s1.uid_store(&uids, imapfleet_imap::StoreMode::Add, &["\\Deleted".into()])
            .await
            .unwrap();
        s1.expunge(&uids).await.unwrap();
    }
    s1.logout().await;
    let r = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 26, "both folders refused:\n{r}");
    assert_eq!(deleted2(&r), 0, "{r}");
    assert_eq!(r.errors.len(), 2, "{r}");
    let mb = read_mailbox(&ep2).await;
    assert_eq!((mb["Emptied"].len(), mb["Shrunk"].len()), (4, 10));

    // 60 % > 90 %? No: with a higher share Shrunk goes; Emptied still needs --force-delete.
    let wide = SyncOptions {
        delete2_max_percent: 90,
        ..opts.clone()
    };
    let r = sync_account(&ep1, &ep2, &wide, Arc::new(NoProgress)).await;
    assert_eq!(deleted2(&r), 6, "{r}");
    assert_eq!(r.exit_code(), 26, "Emptied still refused:\n{r}");
    let forced = SyncOptions {
        force_delete: true,
        ..opts.clone()
    };
    let r = sync_account(&ep1, &ep2, &forced, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(deleted2(&r), 4, "{r}");
    let mb = read_mailbox(&ep2).await;
    assert_eq!((mb["Emptied"].len(), mb["Shrunk"].len()), (0, 4));
}

// --- BR-41: the fleet -------------------------------------------------------------------------

/// A worker process of the fleet, with the port of its metrics server.
struct FleetWorker {
    child: std::process::Child,
    metrics: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Sum of a metric's samples (any labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let m = series.split('{').next()?;
            (m == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_41_killed_lock_holder_does_not_leave_the_job_stuck() {
    use std::time::{Duration, Instant};
    let Some(s) = Setup::new("BR-41", "user0119") else {
        return;
    };
    if std::env::var("IMAPFLEET_SERVICES").as_deref() != Ok("1") {
        eprintln!("SKIP BR-41: IMAPFLEET_SERVICES is not 1 (RabbitMQ and Redis: scripts/services.sh start)");
        return;
    }
    let gen = s.case.table("host1.generate");
    let folder = strs(&gen["folders"])[0].clone();
    let n = gen["messages_per_folder"].as_integer().unwrap() as usize;
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| gen_message("br41", i)).collect();
    imapfleet_tests::append_raw(&s.ep1(), &folder, &msgs).await;
    let fleet = s.case.table("fleet");
    let workers = fleet["workers"].as_integer().unwrap() as usize;
    let ttl = fleet["lock_lease_ttl_s"].as_integer().unwrap();
    let kill_at = int(&s.case, "fault.when_host2_count_reaches") as u32;

    // The fleet of the case: RabbitMQ queue, Redis leases, `workers` worker processes.
    let dir = std::env::temp_dir().join(format!("imapfleet-br41-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) % 251))
        .collect();
    let queue = format!(
        "imapfleet.test.br41.{}.{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(imapfleet_tests::bin());
        c.args(args)
            .env("IMAPFLEET_SECRET_KEY", &key)
            .env("IMAPFLEET_QUEUE", &queue)
            .env("RUST_LOG", "warn,imapfleet_fleet=info")
            .env_remove("IMAPFLEET_CONFIG");
        c
    };
    let batch = dir.join("batch.txt");
    std::fs::write(
        &batch,
        format!("127.0.0.1;{u};secret;127.0.0.1;{u};secret;\n", u = s.user),
    )
    .unwrap();
    let defaults = format!(
        "--defaults=--port1 {} --port2 {} --cafile1 {ca} --cafile2 {ca}",
        s.i1.port,
        s.i2.port,
        ca = s.i1.ca.display()
    );
    let o = cmd(&["dispatch", "--job", "br41", "--accounts"])
        .arg(&batch)
        .arg(&defaults)
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let job = out
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .expect("job id")
        .to_string();
    let run_log = dir.join("runs.jsonl");
    let mut fleet_workers: Vec<FleetWorker> = Vec::new();
    for w in 0..workers {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("worker{w}.log"))).unwrap();
        let child = cmd(&[
            "worker",
            "--concurrency",
            "1",
            "--slice-messages",
            "25",
            "--lease-ttl",
            &ttl.to_string(),
        ])
        .arg(format!("--run-log={}", run_log.display()))
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
        fleet_workers.push(FleetWorker {
            child,
            metrics: port,
        });
    }

    // When host2's folder reaches the case's count, SIGKILL the worker inside a folder task (the
    // one holding the leases: its IMAP sessions are open).
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed = loop {
        let count = {
            let mut s2 = imapfleet_imap::Session::connect(&s.ep2()).await.unwrap();
            let c = s2.status(&folder).await.ok().and_then(|st| st.messages);
            s2.logout().await;
            c.unwrap_or(0)
        };
        if count >= kill_at {
            let holder = fleet_workers.iter().position(|w| {
                http_get(w.metrics, "/metrics")
                    .is_some_and(|m| metric(&m, "imapfleet_imap_connections_open") > 0.0)
            });
            if let Some(h) = holder {
                fleet_workers[h].child.kill().expect("kill -9");
                let _ = fleet_workers[h].child.wait();
                break h;
            }
        }
        assert!(count < n as u32, "the copy ended before the kill");
        assert!(Instant::now() < deadline, "host2 never reached {kill_at}");
        tokio::time::sleep(Duration::from_millis(15)).await;
    };
    let killed_at = Utc::now().timestamp_millis() as u64;

    // Nobody touches Redis: the survivors finish once the lease has expired.
    let o = cmd(&["status", &job, "--json", "--wait", "--wait-timeout", "300"])
        .output()
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", text(&o)));
    for w in &mut fleet_workers {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    assert_eq!(o.status.code(), Some(0), "{view:#}");
    let want_state = s.case.value("expected.job_state").unwrap();
    assert_eq!(
        view["accounts"][0]["status"], "done",
        "job {want_state}: {view:#}"
    );
    let mb = read_mailbox(&s.ep2()).await;
    let got = folder_digests(&mb, &folder);
    assert_eq!(got.len() as i64, int(&s.case, "expected.host2_bulk_count"));
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(
        (got.len() - unique.len()) as i64,
        int(&s.case, "expected.duplicates")
    );
    assert_eq!(got, digests(msgs.iter().map(Vec::as_slice)));
    // The slices after the kill ran under a newer fence than any before it.
    let runs: Vec<serde_json::Value> = std::fs::read_to_string(&run_log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fence = |r: &serde_json::Value| r["folder_fence"].as_u64().unwrap_or(0);
    let before = runs
        .iter()
        .filter(|r| r["end_ms"].as_u64().unwrap_or(0) <= killed_at)
        .map(fence)
        .max()
        .unwrap_or(0);
    let after: Vec<u64> = runs
        .iter()
        .filter(|r| r["start_ms"].as_u64().unwrap_or(0) > killed_at)
        .map(fence)
        .collect();
    assert!(
        !after.is_empty(),
        "no slice after the kill of worker {killed}"
    );
    assert!(
        after.iter().all(|f| *f > before),
        "fences {before} then {after:?}"
    );
    assert!(!s
        .case
        .value("expected.manual_intervention")
        .unwrap()
        .as_bool()
        .unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_br_47_uids_above_2_pow_31_and_open_ranges() {
    let Some(s) = Setup::new("BR-47", "user0122") else {
        return;
    };
    let folder = s.h1.folders[0].clone();
    let files: Vec<(String, Vec<u8>)> = s.case.folder_files("host1", &folder, '.');
    assert_eq!(files.len(), 3);
    // Setup of the case: create Big, append and expunge one message, move UIDNEXT up, append 3.
    imapfleet_tests::append_raw(&s.ep1(), &folder, &[gen_message("br47-first", 0)]).await;
    let mut s1 = imapfleet_imap::Session::connect(&s.ep1()).await.unwrap();
    s1.select(&folder, false).await.unwrap();
    s1.uid_store(&[1], imapfleet_imap::StoreMode::Add, &["\\Deleted".into()])
        .await
        .unwrap();
    s1.expunge(&[1]).await.unwrap();
    s1.logout().await;
    s.i1.doveadm(&[
        "mailbox",
        "update",
        "-u",
        &s.user,
        "--min-next-uid",
        "2147483646",
        &folder,
    ]);
    let bodies: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
    imapfleet_tests::append_raw(&s.ep1(), &folder, &bodies).await;
    let mb1 = read_mailbox(&s.ep1()).await;
    let uids: Vec<i64> = mb1[&folder].iter().map(|m| i64::from(m.uid)).collect();
    let want: Vec<i64> = s
        .case
        .value("expected.source_uids")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_integer().unwrap())
        .collect();
    assert_eq!(uids, want, "host1's UIDs as the case sets them up");

    // Incremental runs (saved state), so run 2 lists from the recorded UIDNEXT: `UID FETCH
    // 2147483649:*`, which Dovecot answers with UID 2147483648.
    let dir = std::env::temp_dir().join(format!("imapfleet-br47-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = SyncOptions {
        state: Some(imapfleet_sync::state::StateHandle::new(
            Arc::new(imapfleet_sync::state::file::FileState::new(&dir).expect("state dir")),
            0,
        )),
        ..SyncOptions::default()
    };
    let r1 = s.run(&opts).await;
    assert_eq!(r1.exit_code(), 0, "run 1:\n{r1}");
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(
        mb[&folder].len() as i64,
        int(&s.case, "expected.host2_big_count")
    );
    assert_eq!(
        folder_digests(&mb, &folder),
        digests(bodies.iter().map(Vec::as_slice))
    );
    // A flag change makes host1's folder differ (HIGHESTMODSEQ) while no UID is new: the delta
    // read asks for UIDs from UIDNEXT on and must discard the last message the server returns.
    let mut s1 = imapfleet_imap::Session::connect(&s.ep1()).await.unwrap();
    s1.select(&folder, false).await.unwrap();
    s1.uid_store(
        &[2147483647],
        imapfleet_imap::StoreMode::Add,
        &["\\Flagged".into()],
    )
    .await
    .unwrap();
    s1.logout().await;
    let r2 = s.run(&opts).await;
    assert_eq!(r2.exit_code(), 0, "run 2:\n{r2}");
    assert_eq!(
        r2.totals.transferred as i64,
        int(&s.case, "expected.run2_appends"),
        "{r2}"
    );
    assert_eq!(r2.totals.flags_updated, 1, "{r2}");
    let open_range =
        s.i1.commands(&s.user)
            .into_iter()
            .any(|c| c.starts_with("UID FETCH 2147483649:*"));
    let mb = read_mailbox(&s.ep2()).await;
    assert_eq!(mb[&folder].len(), 3, "no duplicate of the last message");
    // The same rule at small scale and without saved state: nothing new, nothing copied.
    let r3 = s.run(&SyncOptions::default()).await;
    assert_quiet(&s, &r3, "a full re-run");
    assert!(
        open_range,
        "run 2 did not list from UIDNEXT (the case's open range)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
