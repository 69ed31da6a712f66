//! The `imapfleet` binary as a user runs it: exit codes, the report, the JSON file, no password leaks.

use std::process::{Command, Output};

use imapfleet_tests::{append_raw, bin, count, lab, snapshot, Lab};

fn run(args: &[String]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("IMAPFLEET_PASSWORD1")
        .env_remove("IMAPFLEET_PASSWORD2")
        .output()
        .expect("run imapfleet")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn msg(id: &str, subject: &str) -> Vec<u8> {
    format!("From: a@example.com\r\nTo: b@example.org\r\nSubject: {subject}\r\nMessage-Id: <{id}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {subject}\r\n").into_bytes()
}

fn sync_args(lab: &Lab, user: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["sync".to_string()];
    a.extend(lab.cli_args(user, user));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn wrong_password_gives_the_auth_exit_code_of_that_side_and_never_prints_it() {
    let Some(lab) = lab() else { return };
    let user = "user0030";
    let bad = lab.dir.join("wrong.pass");
    std::fs::write(&bad, "Wr0ngPassw0rdXYZ\n").unwrap();
    let bad = bad.display().to_string();

    let mut a = sync_args(&lab, user, &[]);
    let i = a.iter().position(|s| s == "--passfile1").unwrap();
    a[i + 1] = bad.clone();
    let o = run(&a);
    assert_eq!(
        o.status.code(),
        Some(10),
        "host1 auth failure -> 10:\n{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("Wr0ngPassw0rdXYZ"),
        "password leaked:\n{}",
        text(&o)
    );
    assert!(text(&o).to_lowercase().contains("auth"), "{}", text(&o));

    let mut a = sync_args(&lab, user, &[]);
    let i = a.iter().position(|s| s == "--passfile2").unwrap();
    a[i + 1] = bad;
    let o = run(&a);
    assert_eq!(
        o.status.code(),
        Some(11),
        "host2 auth failure -> 11:\n{}",
        text(&o)
    );
}

#[test]
fn password_on_the_command_line_works_but_warns() {
    let Some(lab) = lab() else { return };
    let user = "user0031";
    let mut a = sync_args(&lab, user, &["--justlogin"]);
    let i = a.iter().position(|s| s == "--passfile1").unwrap();
    a[i] = "--password1".into();
    a[i + 1] = "secret".into();
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("visible to other local users"),
        "no warning:\n{}",
        text(&o)
    );
}

#[test]
fn connection_refused_gives_the_connect_exit_code() {
    let Some(lab) = lab() else { return };
    let mut a = sync_args(&lab, "user0032", &["--timeout", "5"]);
    let i = a.iter().position(|s| s == "--port2").unwrap();
    a[i + 1] = "1".into(); // nothing listens on port 1
    let o = run(&a);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
}

#[test]
fn missing_password_and_conflicting_tls_options_are_usage_errors() {
    let o = run(&[
        "sync", "--host1", "h", "--user1", "u", "--host2", "h", "--user2", "u",
    ]
    .map(String::from));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("IMAPFLEET_PASSWORD1"), "{}", text(&o));
    let o = Command::new(bin())
        .args([
            "sync", "--host1", "h", "--user1", "u", "--host2", "h", "--user2", "u", "--ssl1",
            "--notls1",
        ])
        .env("IMAPFLEET_PASSWORD1", "x")
        .env("IMAPFLEET_PASSWORD2", "y")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn sync_writes_the_report_and_justfolders_copies_no_message() {
    let Some(lab) = lab() else { return };
    let user = "user0033";
    lab.fresh(user);
    let ep1 = lab.endpoint(1, user);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        append_raw(&ep1, "INBOX", &[msg("c1", "one"), msg("c2", "two")]).await;
        append_raw(&ep1, "Projects", &[msg("c3", "three")]).await;
        append_raw(&ep1, "Projects.2024", &[msg("c4", "four")]).await;
    });

    let o = run(&sync_args(&lab, user, &["--justfolders"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s2 = rt.block_on(snapshot(&lab.endpoint(2, user)));
    assert!(
        s2.contains_key("Projects/2024"),
        "folders created with host2's separator: {s2:?}"
    );
    assert_eq!(count(&s2), 0, "--justfolders copied messages: {s2:?}");

    let json = lab.dir.join("report-0033.json");
    let o = run(&sync_args(
        &lab,
        user,
        &["--report-json", &json.display().to_string()],
    ));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("Messages transferred"),
        "statistics block missing:\n{out}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["totals"]["transferred"], 4, "{report:#}");
    assert_eq!(report["user1"], user);
    assert!(
        !std::fs::read_to_string(&json).unwrap().contains("secret"),
        "password in the JSON report"
    );

    let v = Command::new(bin())
        .arg("verify")
        .args(lab.cli_args(user, user))
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn passwords_and_defaults_come_from_the_environment_and_the_config_file() {
    let Some(lab) = lab() else { return };
    let user = "user0034";
    // Passwords from IMAPFLEET_PASSWORD1/2, nothing secret in argv.
    let o = Command::new(bin())
        .args([
            "sync",
            "--justlogin",
            "--host1",
            "127.0.0.1",
            "--port1",
            "1143",
            "--user1",
            user,
        ])
        .args(["--host2", "127.0.0.1", "--port2", "2143", "--user2", user])
        .args([
            "--cafile1",
            &lab.ca.display().to_string(),
            "--cafile2",
            &lab.ca.display().to_string(),
        ])
        .env("IMAPFLEET_PASSWORD1", &lab.password)
        .env("IMAPFLEET_PASSWORD2", &lab.password)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !text(&o).contains("visible to other local users"),
        "{}",
        text(&o)
    );

    // Everything from a config file; the command line still wins (a wrong port2 in the file is overridden).
    let conf = lab.dir.join("cli-test-config.toml");
    std::fs::write(
        &conf,
        format!(
            "host1 = \"127.0.0.1\"\nport1 = 1143\nuser1 = \"{user}\"\npassfile1 = \"{pf}\"\ncafile1 = \"{ca}\"\n\
             host2 = \"127.0.0.1\"\nport2 = 1\nuser2 = \"{user}\"\npassfile2 = \"{pf}\"\ncafile2 = \"{ca}\"\ntimeout = 30\n",
            pf = lab.passfile().display(),
            ca = lab.ca.display()
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args([
            "--config",
            &conf.display().to_string(),
            "sync",
            "--justlogin",
            "--port2",
            "2143",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Without the override, the file's port2 = 1 is used and the connection fails (exit 13).
    let o = Command::new(bin())
        .args([
            "--config",
            &conf.display().to_string(),
            "sync",
            "--justlogin",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
}

#[test]
fn implicit_tls_and_master_user_logins_work_from_the_command_line() {
    let Some(lab) = lab() else { return };
    let user = "user0035";
    let admin_pass = lab.dir.join("admin.pass");
    std::fs::write(&admin_pass, "adminsecret\n").unwrap();
    let o = Command::new(bin())
        .args(["sync", "--justlogin"])
        .args([
            "--host1",
            "127.0.0.1",
            "--port1",
            "1993",
            "--ssl1",
            "--user1",
            user,
        ])
        .args([
            "--authuser1",
            "admin",
            "--passfile1",
            &admin_pass.display().to_string(),
        ])
        .args(["--cafile1", &lab.ca.display().to_string()])
        .args([
            "--host2",
            "127.0.0.1",
            "--port2",
            "2993",
            "--ssl2",
            "--user2",
            user,
            "--insecure2",
        ])
        .args(["--passfile2", &lab.passfile().display().to_string()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("insecure2"),
        "--insecure must warn:\n{}",
        text(&o)
    );

    // Without the lab CA, the self-signed certificate is refused: a connect-class failure, not a hang.
    let o = Command::new(bin())
        .args(["sync", "--justlogin", "--timeout", "10"])
        .args([
            "--host1",
            "127.0.0.1",
            "--port1",
            "1993",
            "--ssl1",
            "--user1",
            user,
        ])
        .args(["--passfile1", &lab.passfile().display().to_string()])
        .args(["--host2", "127.0.0.1", "--port2", "2143", "--user2", user])
        .args([
            "--passfile2",
            &lab.passfile().display().to_string(),
            "--cafile2",
            &lab.ca.display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
}

/// Two processes writing into one host2 account would both copy what they find missing. While
/// another process holds the account's machine-wide guard, `sync` and `run` refuse to start
/// (usage exit code, the account named), a `--dry` sync still runs, and once the guard is free
/// the sync goes through.
#[test]
fn a_second_process_into_the_same_host2_account_is_refused() {
    use imapfleet_fleet::lock::host::try_guard;
    let Some(lab) = lab() else { return };
    let user = "user0036";
    lab.fresh(user);
    let locks = std::env::temp_dir().join(format!("imapfleet-cli-guard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&locks);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(append_raw(
        &lab.endpoint(1, user),
        "INBOX",
        &[msg("guard-1", "one"), msg("guard-2", "two")],
    ));
    let guarded = |args: &[String]| {
        Command::new(bin())
            .args(args)
            .env("IMAPFLEET_LOCK_DIR", &locks)
            .env_remove("IMAPFLEET_PASSWORD1")
            .env_remove("IMAPFLEET_PASSWORD2")
            .output()
            .expect("run imapfleet")
    };
    let held = try_guard(&locks, "127.0.0.1", lab.host2_port, user).expect("guard");
    let o = guarded(&sync_args(&lab, user, &["--nostate"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "another imapfleet process on this machine is syncing into {user}@127.0.0.1"
        )),
        "{}",
        text(&o)
    );
    assert_eq!(
        count(&rt.block_on(snapshot(&lab.endpoint(2, user)))),
        0,
        "nothing copied"
    );
    // A dry run writes nothing: it runs beside the holder.
    let o = guarded(&sync_args(&lab, user, &["--nostate", "--dry"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // `run` with a batch naming that account (and another one): nothing starts.
    let pw = lab.password.clone();
    let batch = lab.dir.join("cli-guard-batch.txt");
    std::fs::write(
        &batch,
        format!("127.0.0.1;user0037;{pw};127.0.0.1;user0037;{pw};\n127.0.0.1;{user};{pw};127.0.0.1;{user};{pw};\n"),
    )
    .unwrap();
    let defaults = format!(
        "--port1 {} --port2 {} --cafile1 {} --cafile2 {}",
        lab.host1_port,
        lab.host2_port,
        lab.ca.display(),
        lab.ca.display()
    );
    let o = guarded(&[
        "run".into(),
        "--accounts".into(),
        batch.display().to_string(),
        "--defaults".into(),
        defaults,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("line 2: {user}@127.0.0.1")),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("line 1:"),
        "the free account is not named: {}",
        text(&o)
    );
    // Free again: the sync runs and copies both messages.
    drop(held);
    let o = guarded(&sync_args(&lab, user, &["--nostate"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(count(&rt.block_on(snapshot(&lab.endpoint(2, user)))), 2);
    let _ = std::fs::remove_dir_all(&locks);
}
