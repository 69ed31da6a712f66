//! Properties of the generated mail: determinism, sizes, well-formedness, and the awkward cases.

use std::collections::{HashMap, HashSet};

use imapfleet_mailgen::{GenFolder, IdMode, MailboxSpec, KEYWORDS, SYSTEM_FLAGS};
use sha2::{Digest, Sha256};

fn digest(folders: impl IntoIterator<Item = GenFolder>) -> String {
    let mut h = Sha256::new();
    for f in folders {
        h.update(f.path.join("\u{1}").as_bytes());
        h.update([0]);
        for m in &f.messages {
            h.update(m.flags.join(" ").as_bytes());
            h.update([0]);
            h.update(m.internaldate.to_rfc3339().as_bytes());
            h.update([0]);
            h.update((m.bytes.len() as u64).to_le_bytes());
            h.update(&m.bytes);
        }
    }
    hex::encode(h.finalize())
}

/// The header block (without the blank line) and the body.
fn split(msg: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = msg.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&msg[..pos + 2], &msg[pos + 4..]))
}

fn header_value(head: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(v) = out.as_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        if out.is_some() {
            return out;
        }
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                out = Some(line[colon + 1..].trim_ascii().to_vec());
            }
        }
    }
    out
}

/// Checks RFC 5322 shape: CRLF only, header fields then CRLF CRLF, lines <= 998, boundaries closed.
fn check_message(msg: &[u8]) -> Result<(), String> {
    for (i, b) in msg.iter().enumerate() {
        match b {
            b'\n' if i == 0 || msg[i - 1] != b'\r' => return Err(format!("bare LF at {i}")),
            b'\r' if msg.get(i + 1) != Some(&b'\n') => return Err(format!("bare CR at {i}")),
            0 => return Err(format!("NUL at {i}")),
            _ => {}
        }
    }
    if !msg.ends_with(b"\r\n") {
        return Err("does not end with CRLF".into());
    }
    for line in msg.split(|b| *b == b'\n') {
        if line.len() > 999 {
            return Err(format!("line of {} bytes", line.len()));
        }
    }
    let (head, body) = split(msg).ok_or("no CRLF CRLF after the header")?;
    let mut first = true;
    for line in head
        .strip_suffix(b"\r\n")
        .unwrap_or(head)
        .split(|b| *b == b'\n')
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if first {
                return Err("header starts with a continuation line".into());
            }
            continue;
        }
        first = false;
        let colon = line.iter().position(|b| *b == b':').ok_or_else(|| {
            format!(
                "header line without colon: {:?}",
                String::from_utf8_lossy(line)
            )
        })?;
        if colon == 0 || !line[..colon].iter().all(|b| (33..=126).contains(b)) {
            return Err(format!(
                "bad field name in {:?}",
                String::from_utf8_lossy(line)
            ));
        }
    }
    for name in [
        "Date",
        "From",
        "To",
        "Subject",
        "MIME-Version",
        "Content-Type",
    ] {
        if header_value(head, name).is_none() {
            return Err(format!("no {name}"));
        }
    }
    // Every declared boundary is opened and closed.
    let text = String::from_utf8_lossy(msg);
    for (i, _) in text.match_indices("boundary=\"") {
        let rest = &text[i + 10..];
        let b = &rest[..rest.find('"').ok_or("unterminated boundary")?];
        if !text.contains(&format!("\r\n--{b}\r\n")) || !text.contains(&format!("\r\n--{b}--\r\n"))
        {
            return Err(format!("boundary {b} not opened and closed"));
        }
    }
    let _ = body;
    Ok(())
}

#[test]
fn same_seed_same_bytes() {
    let a: Vec<GenFolder> = MailboxSpec::small().generate().collect();
    let b: Vec<GenFolder> = MailboxSpec::small().generate().collect();
    assert_eq!(a, b);
    let c: Vec<GenFolder> = MailboxSpec::small().with_seed(2).generate().collect();
    assert_ne!(a, c);
    // Folders can be generated alone and equal the same folder of a full run.
    let plan = MailboxSpec::small().plan();
    assert_eq!(plan.folder(3), a[3]);
}

#[test]
fn small_preset_digest_is_pinned() {
    // Pinned: any change to the generator changes this. Update it deliberately (and say so in the
    // commit): tests elsewhere may rely on the exact mailbox.
    let d = digest(MailboxSpec::small().generate());
    assert_eq!(
        d, "35c9f90a4d78d3d3e60d5bb31532f06daefff5f96eb454cdb85090004dd2e0cf",
        "digest of MailboxSpec::small() changed"
    );
}

#[test]
fn small_preset_shape() {
    let spec = MailboxSpec::small();
    let plan = spec.plan();
    let folders: Vec<GenFolder> = spec.generate().collect();
    assert_eq!(folders.len(), spec.folders);
    let n: usize = folders.iter().map(|f| f.messages.len()).sum();
    assert_eq!(n, spec.messages);
    assert_eq!(folders[0].path, vec!["INBOX"]);

    // Parents come before children; nested, non-ASCII, spaces and '&' are all there.
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    for f in &folders {
        for d in 1..f.path.len() {
            assert!(
                seen.contains(&f.path[..d]),
                "{:?} before its parent",
                f.path
            );
        }
        seen.insert(f.path.clone());
    }
    assert!(folders.iter().any(|f| f.path.len() >= 3));
    assert!(folders.iter().any(|f| f.path.iter().any(|c| !c.is_ascii())));
    assert!(folders
        .iter()
        .any(|f| f.path.iter().any(|c| c.contains('&') && c.contains(' '))));
    assert!(
        folders.iter().any(|f| f.messages.is_empty()),
        "an empty folder"
    );

    // All flags and keywords occur.
    let flags: HashSet<&str> = folders
        .iter()
        .flat_map(|f| &f.messages)
        .flat_map(|m| &m.flags)
        .map(String::as_str)
        .collect();
    for f in SYSTEM_FLAGS.iter().chain(KEYWORDS) {
        assert!(flags.contains(f), "no message has {f}");
    }

    let mut total = 0u64;
    for (fi, f) in folders.iter().enumerate() {
        let fp = &plan.folders[fi];
        for (i, m) in f.messages.iter().enumerate() {
            check_message(&m.bytes).unwrap_or_else(|e| panic!("{}/{i}: {e}", f.name('/')));
            let planned = plan.messages[fp.first + i].size as i64;
            let got = m.bytes.len() as i64;
            assert!(
                (got - planned).abs() < 1200 || (got - planned).abs() * 50 < planned,
                "{}/{i}: planned {planned}, got {got}",
                f.name('/')
            );
            // The plan's Message-Id is the header's.
            let (head, _) = split(&m.bytes).unwrap();
            let id = header_value(head, "Message-ID").map(|v| String::from_utf8(v).unwrap());
            assert_eq!(id, plan.message_id(fp.first + i));
            total += m.bytes.len() as u64;
        }
    }
    assert!(
        total.abs_diff(spec.target_bytes) * 20 < spec.target_bytes,
        "total {total}"
    );
}

#[test]
fn bench_plan_meets_the_target() {
    let spec = MailboxSpec::bench();
    let plan = spec.plan();
    assert_eq!(plan.folders.len(), 20);
    assert_eq!(plan.messages.len(), 5_000);
    let planned = plan.planned_bytes();
    assert!(
        planned.abs_diff(spec.target_bytes) * 100 < spec.target_bytes,
        "planned {planned}"
    );
    let missing = plan
        .messages
        .iter()
        .filter(|m| m.id == IdMode::Missing)
        .count();
    assert_eq!(missing, 150);
    let big = plan.messages.iter().filter(|m| m.size > 1_000_000).count();
    assert_eq!(big, spec.big_messages);
    let years: HashSet<i32> = plan
        .messages
        .iter()
        .map(|m| chrono::Datelike::year(&m.internaldate.naive_utc()))
        .collect();
    assert!(years.len() >= 15, "{years:?}");
    let zones: HashSet<i32> = plan
        .messages
        .iter()
        .map(|m| m.internaldate.offset().local_minus_utc())
        .collect();
    assert!(zones.len() >= 10, "{zones:?}");
}

/// Generates the whole bench mailbox (145 MB) once, folder by folder, and checks everything.
#[test]
fn bench_preset_generated() {
    let spec = MailboxSpec::bench();
    let mut total = 0u64;
    let mut count = 0usize;
    let mut no_id = 0usize;
    let mut eight_bit = 0usize;
    let mut latin1 = 0usize;
    let mut large = 0usize;
    let mut by_id: HashMap<Vec<u8>, Vec<[u8; 32]>> = HashMap::new();
    let mut by_hash: HashMap<[u8; 32], usize> = HashMap::new();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut folders = 0;
    for f in spec.generate() {
        folders += 1;
        for (i, m) in f.messages.iter().enumerate() {
            check_message(&m.bytes).unwrap_or_else(|e| panic!("{}/{i}: {e}", f.name('/')));
            let len = m.bytes.len() as u64;
            total += len;
            count += 1;
            if len > 1_000_000 {
                large += 1;
            } else {
                assert!(
                    (1_500..=52_000).contains(&len),
                    "{}/{i}: {len} bytes",
                    f.name('/')
                );
            }
            let (head, _) = split(&m.bytes).unwrap();
            if head.iter().any(|b| *b >= 0x80) {
                eight_bit += 1;
                if std::str::from_utf8(head).is_err() {
                    latin1 += 1;
                }
            }
            let ct =
                String::from_utf8_lossy(&header_value(head, "Content-Type").unwrap()).to_string();
            let kind = ["multipart/mixed", "multipart/alternative", "text/plain"]
                .into_iter()
                .find(|k| ct.starts_with(k))
                .unwrap_or("other");
            *kinds.entry(kind).or_default() += 1;
            let hash: [u8; 32] = Sha256::digest(&m.bytes).into();
            *by_hash.entry(hash).or_default() += 1;
            match header_value(head, "Message-ID") {
                Some(id) => by_id.entry(id).or_default().push(hash),
                None => no_id += 1,
            }
        }
    }
    assert_eq!(folders, 20);
    assert_eq!(count, 5_000);
    assert!(
        total.abs_diff(spec.target_bytes) * 100 < spec.target_bytes * 3,
        "total {total} bytes"
    );
    assert!((100..=200).contains(&no_id), "{no_id} without Message-Id");
    assert!(
        (2..=100).contains(&eight_bit) && latin1 >= 1,
        "{eight_bit} with 8-bit headers, {latin1} Latin-1"
    );
    assert_eq!(large, spec.big_messages);
    let exact = by_hash.values().filter(|c| **c > 1).count();
    assert!(exact >= 10, "{exact} exact duplicates");
    let same_id_different_body = by_id
        .values()
        .filter(|hs| hs.iter().collect::<HashSet<_>>().len() > 1)
        .count();
    assert!(
        same_id_different_body >= 10,
        "{same_id_different_body} reused Message-Ids"
    );
    for k in ["multipart/mixed", "multipart/alternative", "text/plain"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 300, "{kinds:?}");
    }
}
