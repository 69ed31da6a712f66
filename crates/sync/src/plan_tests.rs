//! Unit and property tests of the planner (`plan.rs`).

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use proptest::prelude::*;

use super::*;

fn date(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn msg(uid: u32, key: &str, flags: &[&str], size: u32, when: Option<&str>) -> MsgInfo {
    MsgInfo {
        uid,
        key: IdentityKey(key.into()),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internaldate: when.map(date),
        size,
    }
}

fn m(uid: u32, key: &str) -> MsgInfo {
    msg(uid, key, &[], 100, Some("2024-01-01T10:00:00Z"))
}

fn side(messages: Vec<MsgInfo>) -> FolderSide {
    FolderSide {
        messages,
        ..FolderSide::default()
    }
}

/// Dovecot's answer to SELECT: the system flags and `\*`.
fn dovecot(messages: Vec<MsgInfo>) -> FolderSide {
    let perm = [
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Seen",
        "\\Draft",
        "\\*",
    ];
    FolderSide {
        permanent_flags: Some(perm.iter().map(|f| f.to_string()).collect()),
        flags: ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        messages,
        ..FolderSide::default()
    }
}

fn uids1(plan: &FolderPlan) -> Vec<u32> {
    plan.copies.iter().map(|c| c.uid1).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// --- matching ---------------------------------------------------------------------------------

#[test]
fn copies_what_host2_lacks() {
    let plan = plan_folder(
        &side(vec![m(1, "a"), m(2, "b")]),
        &side(vec![m(7, "a")]),
        &PlanOptions::default(),
    );
    assert_eq!(uids1(&plan), vec![2]);
    assert_eq!(plan.matched, vec![(1, 7)]);
    assert_eq!(plan.only_on_host2, 0);
}

#[test]
fn duplicates_on_host1_are_kept_as_a_multiset() {
    let h1 = side(vec![m(1, "a"), m(2, "a"), m(3, "a")]);
    let plan = plan_folder(&h1, &side(vec![m(9, "a")]), &PlanOptions::default());
    assert_eq!(
        plan.copies.len(),
        2,
        "3 copies on host1, 1 on host2: append 2"
    );
    assert_eq!(plan.matched.len(), 1);
}

#[test]
fn extra_copies_on_host2_are_not_deleted_without_delete2() {
    let plan = plan_folder(
        &side(vec![m(1, "a")]),
        &side(vec![m(5, "a"), m(6, "a")]),
        &PlanOptions::default(),
    );
    assert!(plan.copies.is_empty());
    assert!(plan.deletions2.is_empty());
    assert_eq!(plan.only_on_host2, 1);
    assert!(plan.is_empty());
}

#[test]
fn delete2_lists_unmatched_host2_messages() {
    let opts = PlanOptions {
        delete2: true,
        ..PlanOptions::default()
    };
    let plan = plan_folder(
        &side(vec![m(1, "a")]),
        &side(vec![m(6, "a"), m(5, "a"), m(8, "z")]),
        &opts,
    );
    assert_eq!(plan.matched, vec![(1, 5)]);
    assert_eq!(plan.deletions2, vec![6, 8]);
}

#[test]
fn pairing_prefers_equal_size() {
    let h1 = side(vec![
        msg(1, "a", &["\\Seen"], 100, None),
        msg(2, "a", &[], 200, None),
    ]);
    let h2 = side(vec![msg(5, "a", &[], 200, None)]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert_eq!(plan.matched, vec![(2, 5)]);
    assert_eq!(uids1(&plan), vec![1]);
}

#[test]
fn pairing_then_prefers_equal_internaldate_as_instant() {
    // Same instant written in two zones (Dovecot answers in its own zone) counts as equal.
    let h1 = side(vec![
        msg(1, "a", &[], 100, Some("2024-03-01T10:00:00+01:00")),
        msg(2, "a", &[], 100, Some("2024-03-01T12:00:00+01:00")),
    ]);
    let h2 = side(vec![msg(5, "a", &[], 100, Some("2024-03-01T11:00:00Z"))]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert_eq!(plan.matched, vec![(2, 5)]);
    // Size beats date.
    let h1 = side(vec![
        msg(1, "a", &[], 100, Some("2024-03-01T11:00:00Z")),
        msg(2, "a", &[], 300, Some("2024-01-01T00:00:00Z")),
    ]);
    let h2 = side(vec![msg(5, "a", &[], 300, Some("2024-03-01T11:00:00Z"))]);
    assert_eq!(
        plan_folder(&h1, &h2, &PlanOptions::default()).matched,
        vec![(2, 5)]
    );
}

#[test]
fn pairing_is_deterministic_and_ignores_input_order() {
    let mut ones = vec![m(3, "a"), m(1, "a"), m(2, "b"), m(4, "a")];
    let twos = vec![m(9, "a"), m(8, "a")];
    let plan = plan_folder(
        &side(ones.clone()),
        &side(twos.clone()),
        &PlanOptions::default(),
    );
    assert_eq!(plan.matched, vec![(1, 8), (3, 9)]);
    ones.reverse();
    let mut twos_rev = twos;
    twos_rev.reverse();
    assert_eq!(
        plan_folder(&side(ones), &side(twos_rev), &PlanOptions::default()),
        plan
    );
}

#[test]
fn a_uid_listed_twice_is_copied_once() {
    let plan = plan_folder(
        &side(vec![m(1, "a"), m(1, "a"), m(2, "a")]),
        &side(vec![]),
        &PlanOptions::default(),
    );
    assert_eq!(uids1(&plan), vec![1, 2]);
}

#[test]
fn outputs_are_in_uid_order() {
    let h1 = side(vec![m(5, "e"), m(2, "b"), m(9, "x"), m(1, "a")]);
    let h2 = side(vec![m(40, "q"), m(30, "x"), m(10, "r")]);
    let plan = plan_folder(
        &h1,
        &h2,
        &PlanOptions {
            delete2: true,
            ..PlanOptions::default()
        },
    );
    assert_eq!(uids1(&plan), vec![1, 2, 5]);
    assert_eq!(plan.deletions2, vec![10, 40]);
}

// --- flags ------------------------------------------------------------------------------------

#[test]
fn recent_is_never_sent_nor_reported() {
    let h1 = side(vec![msg(1, "a", &["\\Recent", "\\Seen"], 1, None)]);
    let plan = plan_folder(&h1, &dovecot(vec![]), &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["\\Seen"]));
    assert!(plan.copies[0].dropped_flags.is_empty());
}

#[test]
fn nonstandard_system_flags_are_dropped_and_reported() {
    // BR-21: \Indexed, \X-EON-HAS-ATTACHMENT, \FORWARDED make Dovecot refuse the APPEND.
    let h1 = side(vec![msg(
        1,
        "a",
        &[
            "\\Seen",
            "\\Indexed",
            "\\X-EON-HAS-ATTACHMENT",
            "\\FORWARDED",
            "$Label1",
        ],
        1,
        None,
    )]);
    let plan = plan_folder(&h1, &dovecot(vec![]), &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["\\Seen", "$Label1"]));
    assert_eq!(
        plan.copies[0].dropped_flags,
        strings(&["\\Indexed", "\\X-EON-HAS-ATTACHMENT", "\\FORWARDED"])
    );
    // Even when host2 announces no list at all.
    let plan = plan_folder(&h1, &side(vec![]), &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["\\Seen", "$Label1"]));
}

#[test]
fn permanentflags_without_wildcard_limits_keywords() {
    let host2 = FolderSide {
        permanent_flags: Some(strings(&["\\Seen", "$Label1"])),
        ..FolderSide::default()
    };
    let h1 = side(vec![msg(
        1,
        "a",
        &["\\Seen", "\\Flagged", "$label1", "Junk"],
        1,
        None,
    )]);
    let plan = plan_folder(&h1, &host2, &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["\\Seen", "$label1"]));
    assert_eq!(
        plan.copies[0].dropped_flags,
        strings(&["\\Flagged", "Junk"])
    );
}

#[test]
fn permanentflags_with_wildcard_allows_any_keyword() {
    let h1 = side(vec![msg(
        1,
        "a",
        &["$X-ME-Annot-2", "example.com", "TEST:FLAG211"],
        1,
        None,
    )]);
    let plan = plan_folder(&h1, &dovecot(vec![]), &PlanOptions::default());
    assert_eq!(
        plan.copies[0].flags,
        strings(&["$X-ME-Annot-2", "example.com", "TEST:FLAG211"])
    );
}

#[test]
fn empty_permanentflags_means_nothing_is_permanent() {
    let host2 = FolderSide {
        permanent_flags: Some(vec![]),
        flags: strings(&["\\Seen"]),
        ..FolderSide::default()
    };
    let plan = plan_folder(
        &side(vec![msg(1, "a", &["\\Seen"], 1, None)]),
        &host2,
        &PlanOptions::default(),
    );
    assert!(plan.copies[0].flags.is_empty());
    assert_eq!(plan.copies[0].dropped_flags, strings(&["\\Seen"]));
}

#[test]
fn without_permanentflags_the_flags_list_decides() {
    let host2 = FolderSide {
        flags: strings(&["\\Seen", "\\Answered", "$Forwarded"]),
        ..FolderSide::default()
    };
    let h1 = side(vec![msg(
        1,
        "a",
        &["\\SEEN", "\\Draft", "$forwarded", "Other"],
        1,
        None,
    )]);
    let plan = plan_folder(&h1, &host2, &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["\\SEEN", "$forwarded"]));
    assert_eq!(plan.copies[0].dropped_flags, strings(&["\\Draft", "Other"]));
}

#[test]
fn invalid_flag_syntax_is_dropped() {
    let h1 = side(vec![msg(
        1,
        "a",
        &["ok", "two words", "par(en", "\\", "", "é", "\\*"],
        1,
        None,
    )]);
    let plan = plan_folder(&h1, &side(vec![]), &PlanOptions::default());
    assert_eq!(plan.copies[0].flags, strings(&["ok"]));
    assert_eq!(plan.copies[0].dropped_flags.len(), 6);
}

#[test]
fn duplicate_flags_differing_in_case_are_sent_once() {
    let plan = plan_folder(
        &side(vec![msg(
            1,
            "a",
            &["$MdnSent", "$MDNSENT", "\\Seen"],
            1,
            None,
        )]),
        &dovecot(vec![]),
        &PlanOptions::default(),
    );
    assert_eq!(plan.copies[0].flags, strings(&["$MdnSent", "\\Seen"]));
}

#[test]
fn keyword_case_difference_is_in_sync() {
    // BR-20: $MdnSent on host1, $MDNSent on host2: no STORE.
    let h1 = side(vec![msg(1, "a", &["\\Seen", "$MdnSent"], 225, None)]);
    let h2 = dovecot(vec![msg(
        1,
        "a",
        &["$MDNSent", "\\Seen", "\\Recent"],
        225,
        None,
    )]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.matched, vec![(1, 1)]);
}

#[test]
fn flag_difference_gives_a_replace_update() {
    let h1 = side(vec![msg(
        1,
        "a",
        &["\\Seen", "$Label1", "\\Recent"],
        1,
        None,
    )]);
    let h2 = dovecot(vec![msg(4, "a", &["\\Flagged"], 1, None)]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert_eq!(
        plan.flag_updates,
        vec![FlagAction {
            uid1: 1,
            uid2: 4,
            flags: strings(&["\\Seen", "$Label1"]),
            dropped_flags: vec![]
        }]
    );
    let off = PlanOptions {
        resync_flags: false,
        ..PlanOptions::default()
    };
    assert!(plan_folder(&h1, &h2, &off).is_empty());
}

#[test]
fn flags_host2_cannot_store_do_not_cause_updates() {
    // host1's \Indexed can never reach host2: comparing it would STORE on every run.
    let h1 = side(vec![msg(1, "a", &["\\Seen", "\\Indexed"], 1, None)]);
    let h2 = dovecot(vec![msg(4, "a", &["\\Seen"], 1, None)]);
    assert!(plan_folder(&h1, &h2, &PlanOptions::default()).is_empty());
    // A keyword host2 holds but lists as not permanent is ignored too.
    let limited = FolderSide {
        permanent_flags: Some(strings(&["\\Seen"])),
        ..FolderSide::default()
    };
    let h2 = FolderSide {
        messages: vec![msg(4, "a", &["\\Seen", "Session"], 1, None)],
        ..limited
    };
    assert!(plan_folder(
        &side(vec![msg(1, "a", &["\\Seen"], 1, None)]),
        &h2,
        &PlanOptions::default()
    )
    .is_empty());
}

#[test]
fn pairing_prefers_equal_flags_among_equals() {
    // Two identical copies on each side: pair them so that no STORE is needed.
    let h1 = side(vec![
        msg(1, "a", &["\\Seen"], 1, None),
        msg(2, "a", &[], 1, None),
    ]);
    let h2 = dovecot(vec![
        msg(5, "a", &[], 1, None),
        msg(6, "a", &["\\Seen"], 1, None),
    ]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert_eq!(plan.matched, vec![(1, 6), (2, 5)]);
    assert!(plan.is_empty());
}

// --- skips ------------------------------------------------------------------------------------

#[test]
fn max_size_skips_big_messages() {
    let opts = PlanOptions {
        max_size: Some(150),
        ..PlanOptions::default()
    };
    let h1 = side(vec![
        msg(1, "a", &[], 150, None),
        msg(2, "b", &[], 151, None),
    ]);
    let plan = plan_folder(&h1, &side(vec![]), &opts);
    assert_eq!(uids1(&plan), vec![1]);
    assert_eq!(
        plan.skipped,
        vec![Skip {
            uid1: 2,
            reason: SkipReason::TooBig {
                size: 151,
                max: 150
            }
        }]
    );
}

#[test]
fn age_window_uses_instants_and_keeps_undated_messages() {
    let opts = PlanOptions {
        not_before: Some(date("2024-01-10T00:00:00+14:00")),
        not_after: Some(date("2024-01-20T00:00:00-11:00")),
        ..PlanOptions::default()
    };
    let h1 = side(vec![
        msg(1, "a", &[], 1, Some("2024-01-09T10:00:00Z")), // == not_before instant: kept
        msg(2, "b", &[], 1, Some("2024-01-09T09:59:59Z")), // one second too old
        msg(3, "c", &[], 1, Some("2024-01-20T11:00:00Z")), // == not_after instant: kept
        msg(4, "d", &[], 1, Some("2024-01-20T12:00:01+01:00")), // one second too new
        msg(5, "e", &[], 1, None),                         // no INTERNALDATE: not skipped by age
    ]);
    let plan = plan_folder(&h1, &side(vec![]), &opts);
    assert_eq!(uids1(&plan), vec![1, 3, 5]);
    assert_eq!(
        plan.skipped,
        vec![
            Skip {
                uid1: 2,
                reason: SkipReason::TooOld
            },
            Skip {
                uid1: 4,
                reason: SkipReason::TooNew
            }
        ]
    );
}

#[test]
fn delete2_stays_inside_the_window() {
    // BR-51: the host2 copy of an 8-day-old message is outside a 7-day window and is kept.
    let now = date("2024-06-15T12:00:00Z");
    let day = Duration::days(1);
    let at = |d: DateTime<FixedOffset>| Some(d.to_rfc3339());
    let old = at(now - day * 8);
    let h1 = side(vec![
        msg(1, "six", &[], 1, at(now - day * 6).as_deref()),
        msg(
            2,
            "seven-plus",
            &[],
            1,
            at(now - day * 7 + Duration::hours(2)).as_deref(),
        ),
        msg(
            3,
            "seven-minus",
            &[],
            1,
            at(now - day * 7 - Duration::hours(2)).as_deref(),
        ),
    ]);
    let h2 = side(vec![
        msg(1, "eight", &[], 1, old.as_deref()),
        msg(2, "gone", &[], 1, at(now - day).as_deref()),
    ]);
    let opts = PlanOptions {
        not_before: Some(now - day * 7),
        delete2: true,
        ..PlanOptions::default()
    };
    let plan = plan_folder(&h1, &h2, &opts);
    assert_eq!(uids1(&plan), vec![1, 2]);
    assert_eq!(plan.deletions2, vec![2], "only the in-window host2 orphan");
    assert_eq!(plan.only_on_host2, 2);
}

#[test]
fn skipped_messages_still_protect_their_host2_copies() {
    let opts = PlanOptions {
        max_size: Some(10),
        delete2: true,
        ..PlanOptions::default()
    };
    let h1 = side(vec![msg(1, "big", &["\\Seen"], 50, None)]);
    let h2 = dovecot(vec![msg(3, "big", &[], 5, None)]);
    let plan = plan_folder(&h1, &h2, &opts);
    assert!(plan.is_empty(), "not deleted, flags untouched: {plan:?}");
    assert_eq!(plan.matched, vec![(1, 3)]);
    assert!(
        plan.skipped.is_empty(),
        "a matched message is not reported as skipped"
    );
}

#[test]
fn deleted_on_host1_is_not_copied_by_default() {
    // BR-37: m2 is \Seen \Deleted on host1; host2's own \Deleted message is left alone.
    let h1 = side(vec![
        msg(1, "m1", &["\\Seen"], 1, None),
        msg(2, "m2", &["\\Seen", "\\Deleted"], 1, None),
        msg(3, "m3", &[], 1, None),
    ]);
    let h2 = dovecot(vec![msg(1, "u1", &["\\Deleted"], 1, None)]);
    let plan = plan_folder(&h1, &h2, &PlanOptions::default());
    assert_eq!(uids1(&plan), vec![1, 3]);
    assert_eq!(
        plan.skipped,
        vec![Skip {
            uid1: 2,
            reason: SkipReason::DeletedOnHost1
        }]
    );
    assert!(plan.deletions2.is_empty());
    let copy = PlanOptions {
        copy_deleted: true,
        ..PlanOptions::default()
    };
    let plan = plan_folder(&h1, &h2, &copy);
    assert_eq!(plan.copies[1].flags, strings(&["\\Seen", "\\Deleted"]));
}

#[test]
fn flag_filter_is_public_for_the_executor() {
    let f = FlagFilter::for_host2(&dovecot(vec![]));
    assert!(
        f.allows("\\seen") && f.allows("$Junk") && !f.allows("\\Recent") && !f.allows("\\Indexed")
    );
    let out = f.filter(&strings(&["\\Recent", "\\Indexed", "\\Seen"]));
    assert_eq!(
        out,
        FilteredFlags {
            kept: strings(&["\\Seen"]),
            dropped: strings(&["\\Indexed"])
        }
    );
}

// --- the \All folder ---------------------------------------------------------------------------

#[test]
fn all_folder_contributes_only_what_no_other_folder_holds() {
    // BR-29's Gmail view and more: All Mail holds every message; A, B, D, S have labels elsewhere,
    // C and E are archived (E twice on host1: both copies go), and B is already on host2 from an
    // earlier run without the rule: kept (never deleted) and its flags left alone.
    let keys: BTreeSet<IdentityKey> = ["a", "b", "d", "s"]
        .iter()
        .map(|k| IdentityKey(k.to_string()))
        .collect();
    let opts = PlanOptions {
        skip_keys: Some(Arc::new(keys)),
        delete2: true,
        ..PlanOptions::default()
    };
    let all = side(vec![
        m(1, "a"),
        m(2, "b"),
        m(3, "c"),
        m(4, "d"),
        m(5, "s"),
        m(6, "e"),
        m(7, "e"),
    ]);
    let h2 = dovecot(vec![msg(1, "b", &["\\Flagged"], 100, None)]);
    let plan = plan_folder(&all, &h2, &opts);
    assert_eq!(uids1(&plan), vec![3, 6, 7]);
    assert_eq!(plan.matched, vec![(2, 1)]);
    assert!(
        plan.flag_updates.is_empty() && plan.deletions2.is_empty(),
        "{plan:?}"
    );
    let skipped: Vec<(u32, SkipReason)> = plan
        .skipped
        .iter()
        .map(|s| (s.uid1, s.reason.clone()))
        .collect();
    assert_eq!(
        skipped,
        [1, 4, 5]
            .iter()
            .map(|u| (*u, SkipReason::InOtherFolder))
            .collect::<Vec<_>>()
    );
    // Without the keys, All Mail is an ordinary folder.
    let plain = plan_folder(&all, &h2, &PlanOptions::default());
    assert_eq!(plain.copies.len(), 6);
}

// --- the delete2 guard -----------------------------------------------------------------------

#[test]
fn delete2_guard_refuses_an_empty_host1_and_large_shares() {
    let opts = PlanOptions {
        delete2: true,
        ..PlanOptions::default()
    };
    let h2 = |n: u32| side((1..=n).map(|u| m(u, &format!("k{u}"))).collect());
    let h1 = |keys: &[u32]| side(keys.iter().map(|u| m(100 + u, &format!("k{u}"))).collect());
    let guard = |h1: &FolderSide, h2: &FolderSide, pct: u32| {
        delete2_guard(&plan_folder(h1, h2, &opts), h1, h2, pct)
    };
    // Nothing to delete: always fine, even from an empty host1 folder.
    assert_eq!(guard(&side(vec![]), &side(vec![]), 50), None);
    assert_eq!(guard(&h1(&[1, 2]), &h2(2), 0), None);
    // Empty host1 folder with host2 messages: refused whatever the share.
    assert_eq!(
        guard(&side(vec![]), &h2(3), 100),
        Some(DeleteRefusal::Host1Empty { would_delete: 3 })
    );
    // 5 of 10 is not more than 50 %; 6 of 10 is.
    assert_eq!(guard(&h1(&[1, 2, 3, 4, 5]), &h2(10), 50), None);
    assert_eq!(
        guard(&h1(&[1, 2, 3, 4]), &h2(10), 50),
        Some(DeleteRefusal::TooMany {
            would_delete: 6,
            host2_messages: 10,
            max_percent: 50
        })
    );
    // The share is configurable: 90 % lets 6 of 10 through, 0 % refuses any deletion.
    assert_eq!(guard(&h1(&[1, 2, 3, 4]), &h2(10), 90), None);
    assert!(guard(&h1(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), &h2(10), 0).is_some());
    // A UID host2 listed twice counts once.
    let mut dup = h2(2);
    dup.messages.push(m(2, "k2"));
    assert!(guard(&h1(&[1]), &dup, 50).is_none(), "1 of 2 UIDs");
}

proptest! {
    #[test]
    fn delete2_guard_never_lets_through_more_than_the_share(
        (host1, host2, mut opts) in arb_case(),
        pct in 0u32..=100,
    ) {
        opts.delete2 = true;
        let plan = plan_folder(&host1, &host2, &opts);
        if delete2_guard(&plan, &host1, &host2, pct).is_none() && !plan.deletions2.is_empty() {
            let uids: BTreeSet<u32> = host2.messages.iter().map(|m| m.uid).collect();
            prop_assert!(!host1.messages.is_empty());
            prop_assert!(plan.deletions2.len() as u64 * 100 <= u64::from(pct) * uids.len() as u64);
        }
    }
}

// --- properties -------------------------------------------------------------------------------

/// Carry out a plan on a simulated host2 the way a server would.
fn apply(host1: &FolderSide, host2: &FolderSide, plan: &FolderPlan) -> FolderSide {
    let mut out = host2.clone();
    out.messages.retain(|m| !plan.deletions2.contains(&m.uid));
    for f in &plan.flag_updates {
        for m in out.messages.iter_mut().filter(|m| m.uid == f.uid2) {
            m.flags = f.flags.clone();
        }
    }
    // UIDs are never reused, not even those of deleted messages.
    let first_new_uid = host2.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
    let server_now = FixedOffset::east_opt(0)
        .unwrap()
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .unwrap();
    for (c, uid) in plan.copies.iter().zip(first_new_uid..) {
        let source = host1
            .messages
            .iter()
            .find(|m| m.uid == c.uid1)
            .expect("copy of a host1 uid");
        out.messages.push(MsgInfo {
            uid,
            key: source.key.clone(),
            flags: c.flags.clone(),
            internaldate: Some(c.internaldate.unwrap_or(server_now)),
            size: c.size,
        });
    }
    out
}

const FLAG_POOL: [&str; 9] = [
    "\\Seen",
    "\\Flagged",
    "\\Deleted",
    "\\Recent",
    "$Label1",
    "$label1",
    "\\Indexed",
    "Junk",
    "\\Draft",
];

fn arb_msg(uid: std::ops::Range<u32>) -> impl Strategy<Value = MsgInfo> {
    let base = FixedOffset::east_opt(3600)
        .unwrap()
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .unwrap();
    let dates = prop_oneof![
        Just(None),
        Just(Some(base)),
        // The same instant in another zone.
        Just(Some(
            base.with_timezone(&FixedOffset::west_opt(5 * 3600).unwrap())
        )),
        Just(Some(base + Duration::days(10))),
    ];
    (
        uid,
        0..4u8,
        proptest::sample::subsequence(FLAG_POOL.to_vec(), 0..4),
        prop_oneof![Just(10u32), Just(20u32)],
        dates,
    )
        .prop_map(|(uid, key, flags, size, internaldate)| MsgInfo {
            uid,
            key: IdentityKey(format!("k{key}")),
            flags: flags.into_iter().map(String::from).collect(),
            internaldate,
            size,
        })
}

fn arb_host2_flags() -> impl Strategy<Value = (Option<Vec<String>>, Vec<String>)> {
    prop_oneof![
        Just((None, vec![])),
        Just((None, strings(&["\\Seen", "\\Deleted", "$Label1"]))),
        Just((
            Some(strings(&[
                "\\Seen",
                "\\Flagged",
                "\\Deleted",
                "\\Draft",
                "\\*"
            ])),
            vec![]
        )),
        Just((Some(strings(&["\\Seen", "Junk"])), vec![])),
    ]
}

fn arb_opts() -> impl Strategy<Value = PlanOptions> {
    let base = FixedOffset::east_opt(0)
        .unwrap()
        .with_ymd_and_hms(2024, 1, 5, 0, 0, 0)
        .unwrap();
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(Just(15u32)),
        proptest::option::of(Just(base)),
    )
        .prop_map(
            |(resync_flags, delete2, copy_deleted, max_size, not_before)| PlanOptions {
                resync_flags,
                delete2,
                delete2_duplicates: resync_flags ^ copy_deleted,
                max_size,
                not_before,
                not_after: None,
                copy_deleted,
                skip_keys: None,
            },
        )
}

fn arb_case() -> impl Strategy<Value = (FolderSide, FolderSide, PlanOptions)> {
    (
        proptest::collection::vec(arb_msg(1..12), 0..10),
        proptest::collection::vec(arb_msg(1..12), 0..10),
        arb_host2_flags(),
        arb_opts(),
    )
        .prop_map(|(m1, m2, (permanent_flags, flags), opts)| {
            let host2 = FolderSide {
                permanent_flags,
                flags,
                messages: m2,
                uidvalidity: Some(7),
            };
            (side(m1), host2, opts)
        })
}

/// Count of messages per key, each UID once.
fn key_counts(
    messages: &[MsgInfo],
    keep: impl Fn(&MsgInfo) -> bool,
) -> BTreeMap<IdentityKey, usize> {
    let mut seen = std::collections::BTreeSet::new();
    let mut counts = BTreeMap::new();
    for msg in messages.iter().filter(|m| seen.insert(m.uid)) {
        if keep(msg) {
            *counts.entry(msg.key.clone()).or_insert(0) += 1;
        }
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn replanning_after_applying_is_empty((host1, host2, opts) in arb_case()) {
        let plan = plan_folder(&host1, &host2, &opts);
        let after = apply(&host1, &host2, &plan);
        let again = plan_folder(&host1, &after, &opts);
        prop_assert!(again.is_empty(), "first {:?}\nthen {:?}", plan, again);
    }

    #[test]
    fn no_host1_uid_is_appended_twice((host1, host2, opts) in arb_case()) {
        let plan = plan_folder(&host1, &host2, &opts);
        let mut uids = uids1(&plan);
        uids.sort();
        uids.dedup();
        prop_assert_eq!(uids.len(), plan.copies.len());
        let mut matched1: Vec<u32> = plan.matched.iter().map(|p| p.0).collect();
        matched1.dedup();
        prop_assert_eq!(matched1.len(), plan.matched.len());
        prop_assert!(plan.copies.iter().all(|c| !plan.matched.iter().any(|p| p.0 == c.uid1)));
    }

    #[test]
    fn nothing_is_deleted_without_delete2((host1, host2, mut opts) in arb_case()) {
        opts.delete2 = false;
        opts.delete2_duplicates = false;
        prop_assert!(plan_folder(&host1, &host2, &opts).deletions2.is_empty());
    }

    #[test]
    fn host2_ends_with_every_copy_host1_has((host1, host2, opts) in arb_case()) {
        let plan = plan_folder(&host1, &host2, &opts);
        let after = apply(&host1, &host2, &plan);
        let skipped: Vec<u32> = plan.skipped.iter().map(|s| s.uid1).collect();
        let wanted = key_counts(&host1.messages, |m| !skipped.contains(&m.uid));
        let have = key_counts(&after.messages, |_| true);
        for (key, n) in wanted {
            prop_assert!(have.get(&key).copied().unwrap_or(0) >= n, "key {:?}: {:?}", key, plan);
        }
    }

    #[test]
    fn with_default_options_every_undeleted_host1_message_is_on_host2((host1, host2, _o) in arb_case()) {
        let opts = PlanOptions::default();
        let plan = plan_folder(&host1, &host2, &opts);
        let after = apply(&host1, &host2, &plan);
        let deleted = |m: &MsgInfo| m.flags.iter().any(|f| f == "\\Deleted");
        let wanted = key_counts(&host1.messages, |m| !deleted(m));
        let have = key_counts(&after.messages, |_| true);
        for (key, n) in wanted {
            prop_assert!(have.get(&key).copied().unwrap_or(0) >= n);
        }
    }

    #[test]
    fn copies_only_carry_storable_flags((host1, host2, opts) in arb_case()) {
        let filter = FlagFilter::for_host2(&host2);
        let plan = plan_folder(&host1, &host2, &opts);
        for c in &plan.copies {
            prop_assert!(c.flags.iter().all(|f| filter.allows(f)));
            prop_assert!(!c.flags.iter().chain(&c.dropped_flags).any(|f| f.eq_ignore_ascii_case("\\Recent")));
        }
    }
}

#[test]
fn delete2duplicates_keeps_as_many_copies_as_host1_and_at_least_one() {
    // host1: a once, b twice, c never; host2: a three times, b three times, c twice, d once.
    let host1 = side(vec![m(1, "a"), m(2, "b"), m(3, "b")]);
    let host2 = dovecot(vec![
        m(10, "a"),
        m(11, "a"),
        m(12, "a"),
        m(13, "b"),
        m(14, "b"),
        m(15, "b"),
        m(16, "c"),
        m(17, "c"),
        m(18, "d"),
    ]);
    let opts = PlanOptions {
        delete2_duplicates: true,
        ..PlanOptions::default()
    };
    let plan = plan_folder(&host1, &host2, &opts);
    assert_eq!(plan.deletions2, vec![11, 12, 15, 17]);
    assert!(plan.copies.is_empty());
    // With delete2 as well, everything unpaired goes (d and both c included).
    let both = PlanOptions {
        delete2: true,
        ..opts.clone()
    };
    assert_eq!(
        plan_folder(&host1, &host2, &both).deletions2,
        vec![11, 12, 15, 16, 17, 18]
    );
    // Nothing is deleted when host2 holds no duplicate.
    let single = dovecot(vec![m(10, "a"), m(13, "b"), m(18, "d")]);
    assert!(plan_folder(&host1, &single, &opts).deletions2.is_empty());
}

#[test]
fn large_folders_plan_quickly() {
    // 100k distinct messages plus 5k identical header-less notices (one shared key).
    let mut ones: Vec<MsgInfo> = (1..=100_000).map(|u| m(u, &format!("k{u}"))).collect();
    ones.extend((100_001..=105_000).map(|u| msg(u, "same", &["\\Seen"], u % 7, None)));
    let twos: Vec<MsgInfo> = ones.iter().filter(|x| x.uid % 2 == 0).cloned().collect();
    let started = std::time::Instant::now();
    let plan = plan_folder(&side(ones), &dovecot(twos), &PlanOptions::default());
    assert_eq!(plan.copies.len(), 52_500);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
