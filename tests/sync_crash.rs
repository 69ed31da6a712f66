//! Crash safety on the real lab (issue 4, item 4): `imapfleet sync --statedir DIR` is started
//! again and again and killed with SIGKILL at random moments, then one final run must exit 0 and
//! leave host2 holding every host1 message exactly once: 0 duplicates, 0 missing (deep verifier,
//! body digests as multisets). Two variants: the kills land during the first pass, and during a
//! delta pass (after a completed first pass and new host1 mail).
//!
//! Most kills come a random delay after the run has visibly started appending (host2's message
//! count grew); one in four comes a random delay after the start, whatever the run was doing
//! (logging in, resolving the intents of the previous kill, waiting out their grace). The delays
//! come from a fixed-seed RNG, printed; `IMAPFLEET_CRASH_SEED=N` replays another sequence.
//!
//! Users: user0043 (first pass), user0044 (delta pass).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use imapfleet_imap::{Endpoint, Session};
use imapfleet_mailgen::rng::Rng;
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{bin, count, fill_host1_with, lab, small_spec, snapshot, state_dir, Lab};

/// Kills that interrupt a running `imapfleet sync`: during the first pass, during a delta pass.
const KILLS_FIRST: usize = 12;
const KILLS_DELTA: usize = 10;
/// Give up on a run that has not started appending after this long (it is killed anyway).
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn seed() -> u64 {
    std::env::var("IMAPFLEET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5)
}

/// Messages of a spec not flagged `\Deleted` (those are not copied).
fn live(spec: &MailboxSpec) -> usize {
    spec.live_messages()
}

/// `imapfleet sync` of `user` (same login on both sides) with saved state in `dir`, its output in
/// `log`.
fn start(lab: &Lab, user: &str, dir: &Path, log: &Path, report: Option<&Path>) -> Child {
    let out = std::fs::File::create(log).expect("create log");
    let mut c = Command::new(bin());
    c.args(["--log", "imapfleet_sync=info,warn", "sync"])
        .args(lab.cli_args(user, user))
        .arg("--statedir")
        .arg(dir)
        .arg("--quiet");
    if let Some(r) = report {
        c.arg("--report-json").arg(r);
    }
    c.stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("start imapfleet sync")
}

/// host2's messages over all folders, by one LIST-STATUS on a session kept open.
async fn host2_total(s: &mut Session) -> usize {
    let (_, st) = s.list_with_status().await.expect("LIST-STATUS on host2");
    st.values().map(|s| s.messages.unwrap_or(0) as usize).sum()
}

/// One start of the kill loop.
#[derive(Debug)]
struct Attempt {
    /// The kill waited for host2 to grow first.
    after_growth: bool,
    /// The run was still running when the signal came (else it had exited by itself).
    killed: bool,
    before: usize,
    after: usize,
    /// host1's live messages at the time (the loop tops host1 up when a run completes early).
    expected: usize,
}

/// Where the loop gets more host1 mail when a run completed before enough kills landed (a fast,
/// quiet machine copies everything sooner than the kills come): `folders` folders, new seeds.
struct TopUp<'a> {
    ep1: &'a Endpoint,
    seed: u64,
    folders: usize,
}

/// Start and SIGKILL `imapfleet sync` until `kills` kills interrupted a run. When a run finishes
/// by itself first (nothing left to interrupt), host1 gets more mail (`top_up`, `expected` grows)
/// and the loop goes on, up to 5 times. Returns every attempt.
#[allow(clippy::too_many_arguments)]
async fn kill_loop(
    lab: &Lab,
    user: &str,
    dir: &Path,
    logs: &Path,
    rng: &mut Rng,
    kills: usize,
    expected: &mut usize,
    top_up: &TopUp<'_>,
) -> Vec<Attempt> {
    let mut top_ups = 0u64;
    let mut poll = Session::connect(&lab.endpoint(2, user))
        .await
        .expect("host2 session for polling");
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut before = host2_total(&mut poll).await;
    for n in 0..kills * 4 {
        if attempts.iter().filter(|a| a.killed).count() >= kills {
            break;
        }
        let after_growth = rng.below(4) != 0;
        let delay_ms = if after_growth {
            rng.range(0, 400)
        } else {
            rng.range(0, 2_500)
        };
        let mut child = start(lab, user, dir, &logs.join(format!("run{n:02}.log")), None);
        let started = Instant::now();
        let mut exited = None;
        if after_growth {
            while started.elapsed() < START_TIMEOUT {
                if let Some(st) = child.try_wait().expect("try_wait") {
                    exited = Some(st);
                    break;
                }
                if host2_total(&mut poll).await > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let until = Instant::now() + Duration::from_millis(delay_ms);
        while exited.is_none() && Instant::now() < until {
            exited = child.try_wait().expect("try_wait");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let killed = exited.is_none();
        if killed {
            child.kill().expect("SIGKILL");
        }
        let status = child.wait().expect("wait");
        let after = host2_total(&mut poll).await;
        let expected_now = *expected;
        println!(
            "run {n:02}: {} after {:?} ({}+{delay_ms} ms): host2 {before} -> {after} of {expected_now}",
            if killed {
                "killed".to_string()
            } else {
                format!("exited by itself ({status})")
            },
            started.elapsed(),
            if after_growth { "growth" } else { "start" },
        );
        let (p, l, w) = resolution(&logs.join(format!("run{n:02}.log")));
        println!("        this run resolved {p} pending intents ({l} had landed), {w} grace waits");
        attempts.push(Attempt {
            after_growth,
            killed,
            before,
            after,
            expected: *expected,
        });
        before = after;
        if !killed {
            let landed = attempts.iter().filter(|a| a.killed).count();
            if landed >= kills || top_ups >= 5 {
                break;
            }
            let more = small_spec(top_up.seed + top_ups, top_up.folders, 1500);
            fill_host1_with(top_up.ep1, &more, |f| f).await;
            *expected += live(&more);
            top_ups += 1;
            println!(
                "        completed early: host1 topped up to {} live messages",
                *expected
            );
        }
    }
    poll.logout().await;
    attempts
}

/// The loop really interrupted runs in progress: enough kills, and several of them came while
/// host2 was growing and not yet complete.
fn assert_kills_interrupted(attempts: &[Attempt], kills: usize) {
    let killed = attempts.iter().filter(|a| a.killed).count();
    assert!(
        killed >= kills,
        "only {killed} kills interrupted a run (the pass completed first: more data or shorter delays needed): {attempts:#?}"
    );
    let mid_append = attempts
        .iter()
        .filter(|a| a.killed && a.after > a.before && a.after < a.expected)
        .count();
    assert!(
        mid_append >= kills / 2,
        "only {mid_append} kills came while host2 was growing and incomplete: {attempts:#?}"
    );
    assert!(
        attempts.iter().any(|a| a.killed && !a.after_growth),
        "some kills come at any moment, not only while appending"
    );
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What one run's log says about intents: (pending found, of them landed, grace waits), from
/// the engine's info lines.
fn resolution(log: &Path) -> (u64, u64, u64) {
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
    let mut sum = (0, 0, 0);
    for line in text.lines() {
        if line.contains("APPEND intents of an interrupted pass resolved") {
            sum.0 += field(line, "pending");
            sum.1 += field(line, "landed");
        } else if line.contains("in case host2 is still storing it") {
            sum.2 += 1;
        }
    }
    sum
}

/// [`resolution`] summed over every log in `logs`.
fn resolved_in_logs(logs: &Path) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for e in std::fs::read_dir(logs).expect("logs") {
        let (p, l, w) = resolution(&e.expect("entry").path());
        sum = (sum.0 + p, sum.1 + l, sum.2 + w);
    }
    sum
}

/// The final run: exit 0; then the deep verifier: nothing missing, nothing extra (a duplicate is an
/// extra host2 message), and host2 holds exactly host1's live messages; a run after it finds
/// every folder unchanged (no intent left pending).
async fn final_run_and_verify(
    lab: &Lab,
    user: &str,
    dir: &Path,
    logs: &Path,
    expected: usize,
) -> serde_json::Value {
    let (ep1, ep2): (Endpoint, Endpoint) = (lab.endpoint(1, user), lab.endpoint(2, user));
    let report = logs.join("final.json");
    let t = Instant::now();
    let status = start(lab, user, dir, &logs.join("final.log"), Some(&report))
        .wait()
        .expect("final run");
    let log = std::fs::read_to_string(logs.join("final.log")).unwrap_or_default();
    assert!(status.success(), "final run: {status}\n{log}");
    println!("final run: {:?}", t.elapsed());
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("final report")).expect("json");

    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .expect("verify");
    let missing: u64 = v.folders.iter().map(|f| f.missing_on_host2).sum();
    let extra: u64 = v.folders.iter().map(|f| f.extra_on_host2).sum();
    assert_eq!((missing, extra), (0, 0), "0 missing, 0 duplicates: {v}");
    assert!(v.ok, "{v}");
    assert_eq!(
        count(&snapshot(&ep2).await),
        expected,
        "host2 message count"
    );

    let again = logs.join("again.json");
    let status = start(lab, user, dir, &logs.join("again.log"), Some(&again))
        .wait()
        .expect("re-run");
    assert!(status.success());
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&again).expect("report")).expect("json");
    let folders = again["folders"].as_array().expect("folders");
    assert!(
        !folders.is_empty() && folders.iter().all(|f| f["unchanged"] == true),
        "after the final run every folder is clean, no intent pending: {again:#}"
    );
    rep
}

fn logs_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("imapfleet-{name}-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("logs dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_first_pass_leaves_no_duplicate_and_nothing_missing() {
    let Some(lab) = lab() else { return };
    let user = "user0043";
    lab.fresh(user);
    let t = Instant::now();
    let spec = small_spec(4301, 8, 4000);
    fill_host1_with(&lab.endpoint(1, user), &spec, |f| f).await;
    let mut expected = live(&spec);
    println!(
        "host1: {expected} live messages, filled in {:?}",
        t.elapsed()
    );
    let dir = state_dir("crash-first");
    let logs = logs_dir("crash-first");
    let seed = seed();
    println!("kill delays: seed {seed}");
    let mut rng = Rng::new(seed);

    let top_up = TopUp {
        ep1: &lab.endpoint(1, user),
        seed: 43_100,
        folders: 8,
    };
    let attempts = kill_loop(
        &lab,
        user,
        &dir,
        &logs,
        &mut rng,
        KILLS_FIRST,
        &mut expected,
        &top_up,
    )
    .await;
    assert_kills_interrupted(&attempts, KILLS_FIRST);
    let rep = final_run_and_verify(&lab, user, &dir, &logs, expected).await;
    let (pending, landed, waits) = resolved_in_logs(&logs);
    println!(
        "intents resolved over all runs: {pending} pending, {landed} landed, {waits} grace waits; final run: {} / {}",
        rep["totals"]["intents_pending"], rep["totals"]["intents_landed"]
    );
    assert!(
        pending > 0,
        "the restarts found the intents of interrupted batches (logs in {})",
        logs.display()
    );
    println!("total {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_delta_pass_leaves_no_duplicate_and_nothing_missing() {
    let Some(lab) = lab() else { return };
    let user = "user0044";
    lab.fresh(user);
    let t = Instant::now();
    let ep1 = lab.endpoint(1, user);
    let base = small_spec(4401, 6, 500);
    fill_host1_with(&ep1, &base, |f| f).await;
    let dir = state_dir("crash-delta");
    let logs = logs_dir("crash-delta");
    let status = start(&lab, user, &dir, &logs.join("first.log"), None)
        .wait()
        .expect("first pass");
    assert!(status.success(), "first pass: {status}");
    let before = count(&snapshot(&lab.endpoint(2, user)).await);
    assert_eq!(before, live(&base));
    // New mail in the same folders: the next pass reads them as a delta from the saved state.
    let new = small_spec(4402, 6, 3000);
    fill_host1_with(&ep1, &new, |f| f).await;
    let mut expected = before + live(&new);
    println!(
        "host1: {expected} live messages ({before} synced), filled in {:?}",
        t.elapsed()
    );
    let seed = seed() ^ 0xde17a;
    println!("kill delays: seed {seed}");
    let mut rng = Rng::new(seed);

    let top_up = TopUp {
        ep1: &ep1,
        seed: 44_100,
        folders: 6,
    };
    let attempts = kill_loop(
        &lab,
        user,
        &dir,
        &logs,
        &mut rng,
        KILLS_DELTA,
        &mut expected,
        &top_up,
    )
    .await;
    assert_kills_interrupted(&attempts, KILLS_DELTA);
    let rep = final_run_and_verify(&lab, user, &dir, &logs, expected).await;
    let folders = rep["folders"].as_array().expect("folders");
    // The saved state survived the kills: the final run read folders as a delta from it, or,
    // when the last killed run had finished its work and saved before the signal, skipped them
    // as unchanged. A full read would do neither.
    assert!(
        folders
            .iter()
            .any(|f| f["delta_read"] == true || f["unchanged"] == true),
        "the final run used the saved state: {rep:#}"
    );
    let (pending, landed, waits) = resolved_in_logs(&logs);
    println!(
        "intents resolved over all runs: {pending} pending, {landed} landed, {waits} grace waits"
    );
    assert!(pending > 0, "the restarts found pending intents");
    println!("total {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&logs);
}
