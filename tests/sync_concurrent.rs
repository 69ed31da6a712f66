//! Users keep working during a migration (issue 4, item 6; docs/POLICIES.md "Users keep working
//! during a migration"), through `imapfleet sync` on the lab, each case with and without saved
//! state (`--statedir DIR` / `--nostate`):
//! - reading is safe: host1's flags (no `\Seen`) are never changed by a pass;
//! - a message added, re-flagged or moved on host1 between two passes is picked up by the next;
//! - a message added on host1 while a pass copies its folder: that pass does not fail, the next one
//!   copies it;
//! - folders and messages users add on host2 are kept, and removed only with --delete2 /
//!   --delete2folders;
//! - flags a user changed on host2 go back to host1's at the next pass, unless --noresyncflags.
//!
//! Users: user0055..user0069.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use imapfleet_imap::{Endpoint, Session, StoreMode};
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{
    append_raw, bin, count, fill_host1_with, lab, small_spec, snapshot, state_dir, Lab, Snapshot,
};
use serde_json::Value;

/// With saved state (a fresh `--statedir`) or without (`--nostate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    NoState,
    State,
}

const MODES: [Mode; 2] = [Mode::NoState, Mode::State];

struct Pair {
    lab: Lab,
    user: String,
    mode: Mode,
    dir: PathBuf,
}

impl Pair {
    fn new(lab: &Lab, user: &str, mode: Mode) -> Pair {
        lab.fresh(user);
        let dir = state_dir(&format!("concurrent-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        Pair {
            lab: lab.clone(),
            user: user.to_string(),
            mode,
            dir,
        }
    }

    fn ep(&self, host: u8) -> Endpoint {
        self.lab.endpoint(host, &self.user)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("sync")
            .args(self.lab.cli_args(&self.user, &self.user))
            .arg("--quiet")
            .arg("--report-json")
            .arg(self.dir.join("report.json"))
            .args(extra)
            .env_remove("IMAPFLEET_CONFIG")
            .env_remove("IMAPFLEET_STATE_DIR");
        match self.mode {
            Mode::NoState => c.arg("--nostate"),
            Mode::State => c.arg("--state-dir").arg(self.dir.join("state")),
        };
        c
    }

    fn report(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("report.json")).expect("report"))
            .expect("report JSON")
    }

    /// One pass; it must exit 0. Returns its report.
    fn sync(&self, extra: &[&str]) -> Value {
        let o = self.command(extra).output().expect("imapfleet sync");
        assert_eq!(
            o.status.code(),
            Some(0),
            "{:?} {}: {}",
            self.mode,
            self.user,
            text(&o)
        );
        self.report()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn transferred(r: &Value) -> u64 {
    r["totals"]["transferred"].as_u64().expect("transferred")
}

fn msg(tag: &str, i: usize) -> Vec<u8> {
    imapfleet_tests::message(tag, i)
}

fn msgs(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| msg(tag, i)).collect()
}

/// Message-Id -> sorted flags (without `\Recent`) of one folder (`raw` as the server names it).
async fn flags_by_id(ep: &Endpoint, raw: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut s = Session::connect(ep).await.expect("connect");
    let info = s.select(raw, true).await.expect("EXAMINE");
    let mut out = std::collections::BTreeMap::new();
    if info.exists > 0 {
        for m in s
            .fetch_meta("1:*", &["Message-Id".to_string()])
            .await
            .expect("FETCH")
        {
            let h = String::from_utf8_lossy(&m.headers).to_string();
            let id = h
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            let mut f: Vec<String> = m
                .flags
                .into_iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .collect();
            f.sort();
            out.insert(id, f);
        }
    }
    s.logout().await;
    out
}

/// UID of the message whose Message-Id is `<id>` in `raw`.
async fn uid_of(s: &mut Session, raw: &str, id: &str) -> u32 {
    s.select(raw, false).await.expect("SELECT");
    s.fetch_meta("1:*", &["Message-Id".to_string()])
        .await
        .expect("FETCH")
        .into_iter()
        .find(|m| String::from_utf8_lossy(&m.headers).contains(&format!("<{id}>")))
        .unwrap_or_else(|| panic!("no <{id}> in {raw}"))
        .uid
}

async fn store(ep: &Endpoint, raw: &str, id: &str, mode: StoreMode, flags: &[&str]) {
    let mut s = Session::connect(ep).await.expect("connect");
    let uid = uid_of(&mut s, raw, id).await;
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    s.uid_store(&[uid], mode, &flags).await.expect("STORE");
    s.logout().await;
}

fn no_seen(s: &Snapshot) -> bool {
    s.values()
        .flatten()
        .all(|(_, flags, _)| !flags.iter().any(|f| f == "\\Seen"))
}

async fn identical(p: &Pair) {
    let v = verify_account(&p.ep(1), &p.ep(2), &SyncOptions::default())
        .await
        .expect("verify");
    assert!(
        v.ok,
        "{:?} {}: host2 differs from host1:\n{v}",
        p.mode, p.user
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host1_changes_between_passes_are_picked_up_and_host1_is_only_read() {
    let Some(lab) = lab() else { return };
    for (mode, user) in MODES.into_iter().zip(["user0055", "user0056"]) {
        let p = Pair::new(&lab, user, mode);
        let (ep1, ep2) = (p.ep(1), p.ep(2));
        append_raw(&ep1, "INBOX", &msgs("in", 10)).await;
        append_raw(&ep1, "Work", &msgs("work", 5)).await;
        let before = snapshot(&ep1).await;
        assert!(no_seen(&before));

        let r = p.sync(&[]);
        assert_eq!(transferred(&r), 15, "{mode:?}: {r:#}");
        let again = p.sync(&[]);
        assert_eq!(transferred(&again), 0, "{mode:?}");
        assert_eq!(
            snapshot(&ep1).await,
            before,
            "{mode:?}: host1 unchanged, no \\Seen set by reading it"
        );

        // A user adds a message, flags another and moves a third, on host1.
        append_raw(&ep1, "INBOX", &[msg("late", 0)]).await;
        store(
            &ep1,
            "INBOX",
            "in-1@example.com",
            StoreMode::Add,
            &["\\Flagged"],
        )
        .await;
        {
            let mut s = Session::connect(&ep1).await.unwrap();
            let uid = uid_of(&mut s, "INBOX", "in-2@example.com").await;
            s.uid_move(&[uid], "Work").await.expect("MOVE on host1");
            s.logout().await;
        }
        let before = snapshot(&ep1).await;
        let r = p.sync(&[]);
        assert_eq!(
            transferred(&r),
            2,
            "{mode:?}: the new message and the moved one: {r:#}"
        );
        assert!(r["totals"]["flags_updated"].as_u64().unwrap() >= 1, "{r:#}");
        assert_eq!(snapshot(&ep1).await, before, "{mode:?}: host1 only read");
        assert!(no_seen(&snapshot(&ep1).await));
        let inbox2 = flags_by_id(&ep2, "INBOX").await;
        let work2 = flags_by_id(&ep2, "Work").await;
        assert!(inbox2.contains_key("<late-0@example.com>"), "{mode:?}");
        assert_eq!(
            inbox2["<in-1@example.com>"],
            vec!["\\Flagged".to_string()],
            "{mode:?}: the re-flag reached host2"
        );
        assert!(work2.contains_key("<in-2@example.com>"), "{mode:?}: moved");
        assert!(
            inbox2.contains_key("<in-2@example.com>"),
            "{mode:?}: without --delete2 host2 keeps the copy in its old folder"
        );
        assert_eq!((inbox2.len(), work2.len()), (11, 6), "{mode:?}");
        let again = p.sync(&[]);
        assert_eq!(transferred(&again), 0, "{mode:?}: nothing twice");
        // With --delete2 the old copy of the moved message goes: host2 is host1 again.
        let r = p.sync(&["--delete2"]);
        assert_eq!(r["totals"]["deleted2"].as_u64(), Some(1), "{mode:?}: {r:#}");
        identical(&p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_users_add_on_host2_is_kept_unless_deletions_are_asked() {
    let Some(lab) = lab() else { return };
    for (mode, user) in MODES.into_iter().zip(["user0057", "user0058"]) {
        let p = Pair::new(&lab, user, mode);
        let (ep1, ep2) = (p.ep(1), p.ep(2));
        append_raw(&ep1, "INBOX", &msgs("in", 10)).await;
        append_raw(&ep1, "Work", &msgs("work", 4)).await;
        p.sync(&[]);

        // A user files two messages in a folder of their own on host2 and gets one in INBOX.
        append_raw(&ep2, "Mine", &msgs("mine", 2)).await;
        append_raw(&ep2, "INBOX", &[msg("own", 0)]).await;
        for _ in 0..2 {
            let r = p.sync(&[]);
            assert_eq!(transferred(&r), 0, "{mode:?}");
            let s2 = snapshot(&ep2).await;
            assert_eq!(s2.get("Mine").map(Vec::len), Some(2), "{mode:?}: kept");
            assert_eq!(s2["INBOX"].len(), 11, "{mode:?}: kept");
        }
        assert_eq!(count(&snapshot(&ep1).await), 14, "host1 untouched");

        // --delete2 removes host2's own message from a synced folder, not the unsynced folder.
        let r = p.sync(&["--delete2"]);
        assert_eq!(r["totals"]["deleted2"].as_u64(), Some(1), "{mode:?}: {r:#}");
        let s2 = snapshot(&ep2).await;
        assert_eq!(s2["INBOX"].len(), 10, "{mode:?}");
        assert_eq!(s2.get("Mine").map(Vec::len), Some(2), "{mode:?}");
        // --delete2folders removes the folder host1 does not have.
        let r = p.sync(&["--delete2folders"]);
        let deleted: Vec<&str> = r["deleted_folders2"]
            .as_array()
            .expect("deleted_folders2")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(deleted, ["Mine"], "{mode:?}: {r:#}");
        assert!(!snapshot(&ep2).await.contains_key("Mine"), "{mode:?}");
        identical(&p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_changed_on_host2_go_back_to_host1s_unless_noresyncflags() {
    let Some(lab) = lab() else { return };
    for (mode, user) in MODES.into_iter().zip(["user0059", "user0060"]) {
        let p = Pair::new(&lab, user, mode);
        let (ep1, ep2) = (p.ep(1), p.ep(2));
        append_raw(&ep1, "INBOX", &msgs("in", 6)).await;
        store(
            &ep1,
            "INBOX",
            "in-0@example.com",
            StoreMode::Add,
            &["\\Answered"],
        )
        .await;
        p.sync(&[]);
        let host1 = flags_by_id(&ep1, "INBOX").await;
        assert_eq!(flags_by_id(&ep2, "INBOX").await, host1, "{mode:?}");

        // The user reads one message and flags another on host2, and unanswers a third.
        store(
            &ep2,
            "INBOX",
            "in-1@example.com",
            StoreMode::Add,
            &["\\Seen"],
        )
        .await;
        store(
            &ep2,
            "INBOX",
            "in-2@example.com",
            StoreMode::Add,
            &["\\Flagged"],
        )
        .await;
        store(
            &ep2,
            "INBOX",
            "in-0@example.com",
            StoreMode::Remove,
            &["\\Answered"],
        )
        .await;
        let changed = flags_by_id(&ep2, "INBOX").await;
        assert_ne!(changed, host1);

        let r = p.sync(&["--noresyncflags"]);
        assert_eq!(
            r["totals"]["flags_updated"].as_u64(),
            Some(0),
            "{mode:?}: {r:#}"
        );
        assert_eq!(
            flags_by_id(&ep2, "INBOX").await,
            changed,
            "{mode:?}: --noresyncflags leaves host2's flags"
        );
        let r = p.sync(&[]);
        assert_eq!(
            r["totals"]["flags_updated"].as_u64(),
            Some(3),
            "{mode:?}: {r:#}"
        );
        assert_eq!(
            flags_by_id(&ep2, "INBOX").await,
            host1,
            "{mode:?}: host1's flags are back on host2"
        );
        assert_eq!(flags_by_id(&ep1, "INBOX").await, host1, "host1 untouched");
        identical(&p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_added_while_its_folder_copies_is_caught_by_the_next_pass() {
    let Some(lab) = lab() else { return };
    for (mode, user) in MODES.into_iter().zip(["user0061", "user0062"]) {
        let p = Pair::new(&lab, user, mode);
        let (ep1, ep2) = (p.ep(1), p.ep(2));
        // One large folder: its copy takes a while.
        let spec = imapfleet_mailgen::MailboxSpec {
            no_message_id_per_mille: 0,
            duplicate_id_per_mille: 0,
            exact_duplicate_per_mille: 0,
            target_bytes: 3000 * 8_000,
            min_message_bytes: 4_000,
            max_message_bytes: 12_000,
            ..small_spec(6100, 1, 3000)
        };
        fill_host1_with(&ep1, &spec, |mut f| {
            f.path = vec!["INBOX".into()];
            for m in &mut f.messages {
                m.flags.retain(|f| f != "\\Deleted");
            }
            f
        })
        .await;
        let n1 = count(&snapshot(&ep1).await);
        assert!(n1 >= 1000, "{n1}");

        // host1's user has the folder open already: the changes land at once.
        let mut user1 = Session::connect(&ep1).await.unwrap();
        user1.select("INBOX", false).await.unwrap();
        let uids: Vec<u32> = imapfleet_tests::selected_uids(&mut user1).await;
        let mut child = p
            .command(&["--connections", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("imapfleet sync");
        // Once host2's INBOX receives copies, the folder has been listed: add to it on host1,
        // re-flag one of its messages and expunge another.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut s = Session::connect(&ep2).await.unwrap();
            let st = s.status("INBOX").await.unwrap();
            s.logout().await;
            if st.messages.unwrap_or(0) > 0 {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the pass ended before copying"
            );
            assert!(Instant::now() < deadline, "no copy within 2 minutes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let during = msgs("during", 3);
        let reqs: Vec<imapfleet_imap::AppendRequest<'_>> = during
            .iter()
            .map(|m| imapfleet_imap::AppendRequest {
                flags: vec![],
                internaldate: None,
                body: m,
            })
            .collect();
        user1.append("INBOX", &reqs).await.expect("APPEND on host1");
        let still_running = child.try_wait().unwrap().is_none();
        user1
            .uid_store(&uids[5..6], StoreMode::Add, &["$Label1".to_string()])
            .await
            .unwrap();
        user1
            .uid_store(&uids[7..8], StoreMode::Add, &["\\Deleted".to_string()])
            .await
            .unwrap();
        user1.expunge(&uids[7..8]).await.unwrap();
        user1.logout().await;
        assert!(
            still_running,
            "{mode:?}: the new messages must land while the pass runs (make the folder larger)"
        );
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode:?}: the pass must not fail: {}",
            text(&out)
        );

        // The next pass catches up: host2 is host1, with nothing twice.
        let r = p.sync(&[]);
        assert!(transferred(&r) >= 3, "{mode:?}: the 3 new ones: {r:#}");
        identical(&p).await;
        let n1 = count(&snapshot(&ep1).await);
        // The expunged one was copied before (kept on host2 without --delete2), or not.
        let n2 = count(&snapshot(&ep2).await);
        assert!(n2 == n1 || n2 == n1 + 1, "{mode:?}: host1 {n1}, host2 {n2}");
        let again = p.sync(&[]);
        assert_eq!(transferred(&again), 0, "{mode:?}");
    }
}
