//! The loader against the lab (skipped when the lab is not running: `scripts/lab.sh start`):
//! `fill` creates every folder (nested, non-ASCII, `&`) on Maildir++ (`.`) and LAYOUT=fs (`/`), and
//! every message lands with its bytes' size, its flags and its INTERNALDATE (as an instant).

use std::time::Duration;

use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security, Session};
use imapfleet_mailgen::{fill, raw_name, GenFolder, MailboxSpec};

fn lab_up(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        .is_ok()
}

fn wipe(host: u8, user: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lab.sh");
    let st = std::process::Command::new("bash")
        .arg(script)
        .args(["wipe", &host.to_string(), user])
        .status();
    assert!(
        st.map(|s| s.success()).unwrap_or(false),
        "lab.sh wipe {host} {user}"
    );
}

fn endpoint(port: u16, user: &str) -> Endpoint {
    Endpoint {
        label: format!("lab:{port}"),
        host: "127.0.0.1".into(),
        port,
        security: Security::Plain,
        user: user.into(),
        authuser: None,
        password: Secret::new("secret"),
        auth: AuthMethod::Auto,
        ca_file: None,
        insecure: false,
        timeout: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fill_small_on_both_lab_hosts() {
    if !lab_up(1143) || !lab_up(2143) {
        eprintln!("lab not running (scripts/lab.sh start): skipped");
        return;
    }
    let user = "user0118";
    let folders: Vec<GenFolder> = MailboxSpec::small().generate().collect();
    for (host, port, sep) in [(1u8, 1143u16, '.'), (2, 2143, '/')] {
        wipe(host, user);
        let mut s = Session::connect(&endpoint(port, user))
            .await
            .expect("login");
        let stats = fill(&mut s, sep, folders.clone()).await.expect("fill");
        assert_eq!(stats.messages, 60);
        assert_eq!(
            stats.bytes,
            folders.iter().map(GenFolder::total_bytes).sum::<u64>()
        );

        let listed = s.list().await.expect("LIST");
        for f in &folders {
            let name = f.name(sep);
            let entry = listed
                .iter()
                .find(|e| {
                    e.name == name
                        || (f.path == ["INBOX"] && e.raw_name.eq_ignore_ascii_case("INBOX"))
                })
                .unwrap_or_else(|| panic!("host{host}: {name:?} not listed: {listed:?}"));
            assert_eq!(entry.raw_name, raw_name(&f.path, sep).unwrap());
            let st = s.status(&entry.raw_name).await.expect("STATUS");
            assert_eq!(
                st.messages,
                Some(f.messages.len() as u32),
                "host{host}: {name}"
            );

            if f.messages.is_empty() {
                continue;
            }
            s.select(&entry.raw_name, true).await.expect("EXAMINE");
            let metas = s
                .fetch_meta("1:*", &["Message-ID".to_string()])
                .await
                .expect("FETCH");
            assert_eq!(metas.len(), f.messages.len());
            for (m, g) in metas.iter().zip(&f.messages) {
                assert_eq!(
                    m.size as usize,
                    g.bytes.len(),
                    "host{host}: {name} uid {}",
                    m.uid
                );
                let mut got: Vec<&str> = m
                    .flags
                    .iter()
                    .map(String::as_str)
                    .filter(|x| *x != "\\Recent")
                    .collect();
                let mut want: Vec<&str> = g.flags.iter().map(String::as_str).collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "host{host}: {name} uid {} flags", m.uid);
                assert_eq!(
                    m.internaldate.map(|d| d.timestamp()),
                    Some(g.internaldate.timestamp())
                );
            }
        }
        // The bytes of one message come back intact.
        s.select("INBOX", true).await.expect("EXAMINE INBOX");
        let bodies = s.fetch_bodies(&[1, 2, 3]).await.expect("FETCH bodies");
        for (i, (_, b)) in bodies.iter().enumerate() {
            assert_eq!(
                b, &folders[0].messages[i].bytes,
                "host{host}: INBOX message {i}"
            );
        }
        s.logout().await;
        wipe(host, user);
    }
}
