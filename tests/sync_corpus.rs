//! Every message of the real-world corpus (`../shared/corpus`, 817 messages from mail-parsing projects:
//! LF and CRLF line ends, 8-bit bytes, NULs, no Message-Id, odd MIME) migrates deep-identical, and a
//! second run copies nothing.

use std::sync::Arc;

use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{append_raw, corpus_dir, count, lab, snapshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_arrives_byte_for_byte_once() {
    let Some(lab) = lab() else { return };
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIP: ../shared/corpus is not present");
        return;
    };
    let user = "user0020";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));

    // One host1 folder per project of the corpus (e.g. "corpus.enmime"), as MANIFEST.tsv lists them.
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut by_project: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for line in manifest.lines().skip(1) {
        let path = line.split('\t').next().unwrap_or("");
        if path.is_empty() {
            continue;
        }
        let project = path.split('/').next().unwrap_or("misc").to_string();
        let bytes = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        by_project.entry(project).or_default().push(bytes);
    }
    let total: usize = by_project.values().map(Vec::len).sum();
    assert!(
        total >= 800,
        "the corpus should hold 817 messages, found {total}"
    );
    for (project, msgs) in &by_project {
        append_raw(&ep1, &format!("corpus.{project}"), msgs).await;
    }
    assert_eq!(
        count(&snapshot(&ep1).await),
        total,
        "host1 accepted every corpus message"
    );

    let opts = SyncOptions::default();
    let first = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(first.exit_code(), 0, "{first}");
    assert_eq!(first.totals.transferred as usize, total, "{first}");
    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    assert!(v.ok, "corpus not deep-identical:\n{v}");

    let second = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(second.exit_code(), 0, "{second}");
    assert_eq!(
        second.totals.transferred, 0,
        "the re-run appended corpus messages again:\n{second}"
    );
    assert_eq!(count(&snapshot(&ep2).await), total);
}
