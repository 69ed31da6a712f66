//! Tests of the built `imapfleet` binary that need no server.
//!
//! Having an integration test here also makes `cargo test --workspace` build `target/<profile>/imapfleet`,
//! which the lab tests in `tests/` run as a subprocess (cargo only builds a package's binary for its own
//! integration tests).

use std::process::Command;

fn imapfleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imapfleet"))
}

#[test]
fn version_names_the_program() {
    let out = imapfleet()
        .arg("--version")
        .output()
        .expect("run imapfleet");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("imapfleet "), "{text}");
}

#[test]
fn delete1_with_delete2_is_a_usage_error_before_any_connection() {
    // Port 9 (discard) on loopback: nothing answers there, so a connection attempt would fail with a
    // different class; the usage check must come first.
    let out = imapfleet()
        .args([
            "sync",
            "--host1",
            "127.0.0.1",
            "--port1",
            "9",
            "--user1",
            "a",
        ])
        .args(["--host2", "127.0.0.1", "--port2", "9", "--user2", "b"])
        .args(["--delete1", "--delete2"])
        .env("IMAPFLEET_PASSWORD1", "x")
        .env("IMAPFLEET_PASSWORD2", "y")
        .output()
        .expect("run imapfleet");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delete1") && err.contains("delete2"), "{err}");
}

#[test]
fn unknown_option_is_a_usage_error() {
    let out = imapfleet()
        .args(["sync", "--no-such-option"])
        .output()
        .expect("run imapfleet");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn an_f1f2_with_an_empty_side_is_a_usage_error() {
    for spec in ["INBOX=", "=Archive", "no-equals-sign"] {
        let out = imapfleet()
            .args([
                "sync",
                "--host1",
                "127.0.0.1",
                "--port1",
                "9",
                "--user1",
                "a",
            ])
            .args(["--host2", "127.0.0.1", "--port2", "9", "--user2", "b"])
            .args(["--f1f2", spec])
            .env("IMAPFLEET_PASSWORD1", "x")
            .env("IMAPFLEET_PASSWORD2", "y")
            .output()
            .expect("run imapfleet");
        assert_eq!(out.status.code(), Some(2), "{spec}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("--f1f2 {spec:?}")), "{spec}: {err}");
    }
}
