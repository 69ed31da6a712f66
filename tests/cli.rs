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
