//! Pure helpers of the executor: batching, UID sets, flag grouping and the flag fall-back ladder.
//! No I/O here, so everything is unit-tested.

use std::collections::BTreeMap;
use std::ops::Range;

/// Split `sizes` (in order) into consecutive ranges of at most `max_msgs` items and at most
/// `max_bytes` bytes. An item larger than `max_bytes` gets a batch of its own (it must still be
/// copied). Zero limits are treated as 1.
pub fn batches(sizes: &[u64], max_msgs: usize, max_bytes: u64) -> Vec<Range<usize>> {
    batches_with_solo(sizes, max_msgs, max_bytes, u64::MAX)
}

/// [`batches`], and every item of `solo_bytes` or more alone. For APPEND: a MULTIAPPEND is
/// refused whole, and finding the culprit means sending the batch again one by one, so a large
/// message (the likeliest to be refused for its size: `NO [LIMIT]`, `[TOOBIG]`) would travel
/// twice; alone, it is sent once and its neighbours are not resent. Its own command costs nothing
/// next to its size.
pub fn batches_with_solo(
    sizes: &[u64],
    max_msgs: usize,
    max_bytes: u64,
    solo_bytes: u64,
) -> Vec<Range<usize>> {
    let max_msgs = max_msgs.max(1);
    let max_bytes = max_bytes.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        let n = i - start;
        let solo = size >= solo_bytes;
        if n > 0 && (solo || n >= max_msgs || bytes.saturating_add(size) > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        if solo {
            out.push(i..i + 1);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Compact IMAP sequence set of UIDs: `1:3,7,9:10`. Input order does not matter; duplicates are merged.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}:{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Group `(uid, flags)` by identical flag *set* (order and case of the flags as given by the first
/// occurrence; sets compared case-insensitively), so one `UID STORE` per distinct set suffices.
/// Groups come out in a deterministic order; UIDs within a group ascending.
pub fn group_by_flags<'a>(
    items: impl IntoIterator<Item = (u32, &'a [String])>,
) -> Vec<(Vec<String>, Vec<u32>)> {
    let mut groups: BTreeMap<Vec<String>, (Vec<String>, Vec<u32>)> = BTreeMap::new();
    for (uid, flags) in items {
        let mut key: Vec<String> = flags.iter().map(|f| f.to_ascii_lowercase()).collect();
        key.sort();
        key.dedup();
        let entry = groups.entry(key).or_insert_with(|| {
            let mut canonical: Vec<String> = Vec::new();
            for f in flags {
                if !canonical.iter().any(|c| c.eq_ignore_ascii_case(f)) {
                    canonical.push(f.clone());
                }
            }
            (canonical, Vec::new())
        });
        entry.1.push(uid);
    }
    groups
        .into_values()
        .map(|(flags, mut uids)| {
            uids.sort_unstable();
            (flags, uids)
        })
        .collect()
}

/// The five system flags every server can store with APPEND (RFC 3501 minus `\Recent`).
const STANDARD_SYSTEM_FLAGS: [&str; 5] =
    ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Dovecot's default `mail_max_keyword_length`; longer keywords are refused with `NO [CANNOT]`.
const MAX_KEYWORD_LEN: usize = 50;

fn is_standard_system_flag(f: &str) -> bool {
    STANDARD_SYSTEM_FLAGS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(f))
}

/// A keyword an IMAP server should accept: a non-empty atom (RFC 3501 `atom`, no `]`) of modest length.
fn is_plain_keyword(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= MAX_KEYWORD_LEN
        && f.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// When host2 refuses a message because of its flags, the flag sets to try next, in order, each
/// strictly smaller than the one before, ending with no flags at all:
/// 1. the standard system flags plus plain keywords (drops `\Indexed`, `\$NotJunk`, over-long keywords...),
/// 2. only the standard system flags,
/// 3. no flags.
///
/// A message is never given up because of its flags: at worst it is copied without them.
pub fn flag_fallbacks(flags: &[String]) -> Vec<Vec<String>> {
    let step1: Vec<String> = flags
        .iter()
        .filter(|f| is_standard_system_flag(f) || is_plain_keyword(f))
        .cloned()
        .collect();
    let step2: Vec<String> = flags
        .iter()
        .filter(|f| is_standard_system_flag(f))
        .cloned()
        .collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut last_len = flags.len();
    for step in [step1, step2, Vec::new()] {
        if step.len() < last_len {
            last_len = step.len();
            out.push(step);
        }
    }
    out
}

/// When host2 refuses an APPEND and the refusal may be about its flags, the flag sets to APPEND
/// with next, strictly smaller each time: the backslash flags without any keyword, then the five
/// standard system flags, then none. Whatever a step leaves out is added back with `STORE
/// +FLAGS` afterwards, flag by flag where needed ([`super::refused`]), so the message arrives
/// with every flag host2 accepts and only the refused ones are lost (and reported).
pub fn append_fallbacks(flags: &[String]) -> Vec<Vec<String>> {
    let system: Vec<String> = flags
        .iter()
        .filter(|f| f.starts_with('\\'))
        .cloned()
        .collect();
    let standard: Vec<String> = flags
        .iter()
        .filter(|f| is_standard_system_flag(f))
        .cloned()
        .collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut last_len = flags.len();
    for step in [system, standard, Vec::new()] {
        if step.len() < last_len {
            last_len = step.len();
            out.push(step);
        }
    }
    out
}

/// Split a flag list into its backslash flags and its keywords, order kept.
pub fn split_keywords(flags: &[String]) -> (Vec<String>, Vec<String>) {
    flags.iter().cloned().partition(|f| f.starts_with('\\'))
}

/// Flags of `original` that are not in `kept` (case-insensitive), for the report.
pub fn removed_flags(original: &[String], kept: &[String]) -> Vec<String> {
    original
        .iter()
        .filter(|f| !kept.iter().any(|k| k.eq_ignore_ascii_case(f)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn batches_respect_both_limits() {
        assert_eq!(
            batches(&[10, 10, 10, 10, 10], 2, 1000),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(
            batches(&[10, 10, 10, 10, 10], 100, 25),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(batches(&[], 2, 25), Vec::<Range<usize>>::new());
    }

    #[test]
    fn large_messages_go_alone_and_their_neighbours_stay_together() {
        assert_eq!(
            batches_with_solo(&[10, 10, 300, 10, 10, 300, 300, 10], 100, 10_000, 300),
            vec![0..2, 2..3, 3..5, 5..6, 6..7, 7..8]
        );
        assert_eq!(batches_with_solo(&[299, 1], 100, 10_000, 300), vec![0..2]);
        assert_eq!(
            batches_with_solo(&[], 100, 10_000, 300),
            Vec::<Range<usize>>::new()
        );
        // Without a solo size it is `batches`.
        assert_eq!(
            batches_with_solo(&[10, 500, 10], 100, 100, u64::MAX),
            batches(&[10, 500, 10], 100, 100)
        );
    }

    #[test]
    fn oversized_message_gets_its_own_batch() {
        assert_eq!(batches(&[10, 500, 10], 100, 100), vec![0..1, 1..2, 2..3]);
        assert_eq!(batches(&[500], 100, 100), vec![0..1]);
    }

    proptest! {
        #[test]
        fn batches_cover_everything_in_order(sizes in proptest::collection::vec(0u64..5000, 0..200), m in 1usize..20, b in 1u64..20000) {
            let bs = batches(&sizes, m, b);
            let mut next = 0;
            for r in &bs {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                prop_assert!(r.len() <= m);
                let total: u64 = sizes[r.clone()].iter().sum();
                prop_assert!(total <= b || r.len() == 1);
                next = r.end;
            }
            prop_assert_eq!(next, sizes.len());
        }

        #[test]
        fn solo_items_are_alone_and_everything_is_covered(sizes in proptest::collection::vec(0u64..5000, 0..200), m in 1usize..20, b in 1u64..20000, solo in 1u64..6000) {
            let bs = batches_with_solo(&sizes, m, b, solo);
            let mut next = 0;
            for r in &bs {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start && r.len() <= m);
                if r.len() > 1 {
                    prop_assert!(sizes[r.clone()].iter().all(|s| *s < solo));
                    prop_assert!(sizes[r.clone()].iter().sum::<u64>() <= b);
                }
                next = r.end;
            }
            prop_assert_eq!(next, sizes.len());
        }
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[3, 1, 2, 2]), "1:3");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn grouping_merges_equal_sets() {
        let a = s(&["\\Seen", "$Label1"]);
        let b = s(&["$label1", "\\SEEN"]);
        let c = s(&[]);
        let g = group_by_flags([(3, &a[..]), (1, &b[..]), (2, &c[..])]);
        assert_eq!(g.len(), 2);
        let seen = g.iter().find(|(f, _)| !f.is_empty()).unwrap();
        assert_eq!(seen.1, vec![1, 3]);
        assert_eq!(seen.0.len(), 2);
    }

    #[test]
    fn fallbacks_shrink_to_nothing() {
        let f = s(&["\\Seen", "\\Indexed", "$Label1", &"k".repeat(80)]);
        assert_eq!(
            flag_fallbacks(&f),
            vec![s(&["\\Seen", "$Label1"]), s(&["\\Seen"]), s(&[])]
        );
        assert_eq!(flag_fallbacks(&s(&["\\Seen"])), vec![s(&[])]);
        assert_eq!(flag_fallbacks(&s(&[])), Vec::<Vec<String>>::new());
        assert_eq!(flag_fallbacks(&s(&["$a", "$b"])), vec![s(&[])]);
    }

    #[test]
    fn append_fallbacks_drop_keywords_first_then_extensions_then_all() {
        // BR-23: a keyword host2 refuses; the others come back by STORE after the APPEND.
        let f = s(&[
            "\\Seen",
            "$X-ME-Annot-2",
            "example.com",
            "TEST:FLAG211",
            "Long-keyword",
        ]);
        assert_eq!(append_fallbacks(&f), vec![s(&["\\Seen"]), s(&[])]);
        // A non-standard backslash flag host2 lists but then refuses, plus keywords.
        let f = s(&["\\Answered", "\\X-EON-HAS-ATTACHMENT", "$Label1", "\\Seen"]);
        assert_eq!(
            append_fallbacks(&f),
            vec![
                s(&["\\Answered", "\\X-EON-HAS-ATTACHMENT", "\\Seen"]),
                s(&["\\Answered", "\\Seen"]),
                s(&[])
            ]
        );
        // Keywords only: straight to none; nothing at all: no fall-back.
        assert_eq!(append_fallbacks(&s(&["$a", "$b"])), vec![s(&[])]);
        assert_eq!(append_fallbacks(&s(&[])), Vec::<Vec<String>>::new());
        // Only standard flags: one step, none.
        assert_eq!(append_fallbacks(&s(&["\\Seen", "\\Flagged"])), vec![s(&[])]);
    }

    proptest! {
        #[test]
        fn append_fallbacks_shrink_and_keep_order(
            flags in proptest::collection::vec(
                proptest::sample::select(vec!["\\Seen", "\\Draft", "\\Indexed", "$a", "kw", "\\Flagged", "x.y"]),
                0..8,
            )
        ) {
            let flags: Vec<String> = flags.into_iter().map(String::from).collect();
            let steps = append_fallbacks(&flags);
            let mut last = flags.len();
            for step in &steps {
                prop_assert!(step.len() < last);
                last = step.len();
                // A subsequence of the original, no keyword in it.
                prop_assert!(step.iter().all(|f| f.starts_with('\\') && flags.contains(f)));
            }
            if !flags.is_empty() {
                prop_assert_eq!(steps.last().unwrap(), &Vec::<String>::new());
            }
            let (sys, kw) = split_keywords(&flags);
            prop_assert_eq!(sys.len() + kw.len(), flags.len());
        }
    }

    #[test]
    fn removed_flags_are_reported() {
        assert_eq!(
            removed_flags(&s(&["\\Seen", "\\Indexed"]), &s(&["\\seen"])),
            s(&["\\Indexed"])
        );
    }
}
