//! Scheduled passes (`imapfleet dispatch --every 24h`, `--cron "0 2 * * *"`): when the next pass
//! starts, what each pass is called, and which accounts a pass leaves out. Pure: no I/O, no clock
//! (the caller hands in "now"), so every rule is pinned by unit tests.
//!
//! - **Ticks.** `--every D` starts a pass at once, then every `D` after the previous pass's start;
//!   a tick missed (the process was suspended, a pass took longer than `D` to enqueue) is not made
//!   up: one pass starts at once and the rhythm goes on from there. `--cron EXPR` starts a pass at
//!   each time the expression matches (5 fields, or 6 with seconds first), in the time zone of the
//!   times handed in (the dispatcher uses its local zone), never at start-up unless it matches then.
//! - **Passes.** Each pass is its own job, named `<schedule>-pass<N>` (N from 1, growing; a
//!   restarted dispatcher goes on after the highest N it finds), so `status` shows every pass
//!   separately and `status <schedule>` the newest.
//! - **Skip rule.** An account whose previous pass (the newest pass that did not skip it) is still
//!   pending or running is left out of this pass: it is recorded as skipped, with the reason, and
//!   not enqueued. The folder leases would keep two runs of one folder apart anyway; the rule keeps
//!   a slow account from piling up passes behind itself. A previous pass done or failed, or none,
//!   dispatches the account.
//!
//! Cron expressions are parsed by `croner` (chosen over `cron`: it reads the usual 5-field POSIX
//! form as well as a leading seconds field, follows Vixie cron's day-of-month/day-of-week rule, and
//! works on any `chrono` time zone, with no `Local`-only API).

use std::time::Duration;

use chrono::{DateTime, TimeZone};

use crate::state::{AccountRecord, AccountStatus};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("--every {0:?}: {1} (e.g. 24h, 30m, 1h 30m)")]
    Duration(String, String),
    #[error("--every {0:?}: must be at least one second")]
    TooShort(String),
    #[error("--cron {0:?}: {1}")]
    Cron(String, String),
}

/// Parse a duration in humantime's form (`24h`, `30m`, `1h 30m`, `2s`, `30d`).
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| ScheduleError::Duration(text.to_string(), e.to_string()))
}

/// When passes start.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// `--every`: a humantime duration of at least one second.
    pub fn every(text: &str) -> Result<Schedule, ScheduleError> {
        let d = parse_duration(text)?;
        if d < Duration::from_secs(1) {
            return Err(ScheduleError::TooShort(text.to_string()));
        }
        Ok(Schedule::Every(d))
    }

    /// `--cron`: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first;
    /// nicknames such as `@daily` too.
    pub fn cron(text: &str) -> Result<Schedule, ScheduleError> {
        let c: croner::Cron = text.parse().map_err(|e: croner::errors::CronError| {
            ScheduleError::Cron(text.to_string(), e.to_string())
        })?;
        Ok(Schedule::Cron(Box::new(c)))
    }

    /// The start of the next pass, given the start of the previous one (`None` before the first)
    /// and the time now; `None` when a cron expression never matches again.
    pub fn next_tick<Tz: TimeZone>(
        &self,
        previous: Option<&DateTime<Tz>>,
        now: &DateTime<Tz>,
    ) -> Option<DateTime<Tz>> {
        match self {
            Schedule::Every(d) => {
                let Some(prev) = previous else {
                    return Some(now.clone());
                };
                let step = chrono::Duration::from_std(*d).ok()?;
                let next = prev.clone() + step;
                Some(if next < *now { now.clone() } else { next })
            }
            Schedule::Cron(c) => {
                // Strictly after the previous pass and not before now: one pass per match.
                let from = match previous {
                    Some(p) if p > now => p.clone(),
                    _ => now.clone(),
                };
                let inclusive = previous.is_none_or(|p| *p < from);
                c.find_next_occurrence(&from, inclusive).ok()
            }
        }
    }

    /// How it reads in logs and `status`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => format!("cron {:?}", c.pattern.to_string()),
        }
    }
}

/// The job name of pass `n` of a schedule.
pub fn pass_name(schedule: &str, n: u32) -> String {
    format!("{schedule}-pass{n}")
}

/// The pass number of a job name of `schedule`, if it is one.
pub fn pass_number(schedule: &str, job_name: &str) -> Option<u32> {
    let n = job_name.strip_prefix(schedule)?.strip_prefix("-pass")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok()
}

/// The number of the next pass: one more than the highest among `job_names`.
pub fn next_pass_number<'a>(schedule: &str, job_names: impl IntoIterator<Item = &'a str>) -> u32 {
    job_names
        .into_iter()
        .filter_map(|n| pass_number(schedule, n))
        .max()
        .map_or(1, |n| n.saturating_add(1))
}

/// Who an account is across passes (its id in a job is only its position in the batch file):
/// both hosts with their ports and both users.
pub fn account_identity(rec: &AccountRecord) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        rec.host1.to_ascii_lowercase(),
        rec.user1,
        rec.host2.to_ascii_lowercase(),
        rec.user2
    )
}

/// The account in its previous pass: the newest pass that did not skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousPass {
    /// Job id and name of that pass.
    pub job: String,
    pub name: String,
    pub status: AccountStatus,
}

/// Whether a pass takes an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Dispatch,
    /// Left out of this pass; the reason as `status` shows it.
    Skip(String),
}

/// The skip rule: an account whose previous pass is still pending or running is skipped.
pub fn decide(previous: Option<&PreviousPass>) -> Decision {
    match previous {
        Some(p) if matches!(p.status, AccountStatus::Pending | AccountStatus::Running) => {
            Decision::Skip(format!(
                "previous pass still running ({} {}: {})",
                p.name,
                p.job,
                p.status.name()
            ))
        }
        _ => Decision::Dispatch,
    }
}

/// Find each account's previous pass. `passes` are the schedule's earlier passes, newest first,
/// each as (job id, job name, its accounts with their status); the first one that has the
/// account and did not skip it is its previous pass.
pub fn previous_pass<'a>(
    identity: &str,
    passes: impl IntoIterator<Item = (&'a str, &'a str, &'a [(String, AccountStatus)])>,
) -> Option<PreviousPass> {
    for (job, name, accounts) in passes {
        if let Some((_, status)) = accounts
            .iter()
            .find(|(id, s)| id == identity && *s != AccountStatus::Skipped)
        {
            return Some(PreviousPass {
                job: job.to_string(),
                name: name.to_string(),
                status: *status,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn durations_in_humantime_form() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(5_400)
        );
        assert_eq!(parse_duration(" 2s ").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("24").is_err(), "a unit is required");
        assert!(matches!(
            Schedule::every("500ms"),
            Err(ScheduleError::TooShort(_))
        ));
        assert!(Schedule::every("0s").is_err());
    }

    #[test]
    fn every_starts_at_once_then_keeps_its_rhythm() {
        let s = Schedule::every("24h").unwrap();
        let t0 = utc("2026-03-01T22:15:00Z");
        assert_eq!(s.next_tick(None, &t0), Some(t0));
        // Enqueueing took 3 s: the next pass is 24 h after the previous start, not after now.
        let now = utc("2026-03-01T22:15:03Z");
        assert_eq!(
            s.next_tick(Some(&t0), &now),
            Some(utc("2026-03-02T22:15:00Z")),
            "across the day boundary"
        );
        // Suspended for two days: one pass at once, not a burst.
        let late = utc("2026-03-04T08:00:00Z");
        assert_eq!(s.next_tick(Some(&t0), &late), Some(late));
        let s = Schedule::every("2s").unwrap();
        assert_eq!(
            s.next_tick(Some(&t0), &t0),
            Some(utc("2026-03-01T22:15:02Z"))
        );
    }

    #[test]
    fn cron_nightly_crosses_the_day_boundary() {
        let s = Schedule::cron("0 2 * * *").unwrap();
        // Started in the evening: the first pass is at 02:00 the next day, not at once.
        let now = utc("2026-03-01T22:15:00Z");
        let first = s.next_tick(None, &now).unwrap();
        assert_eq!(first, utc("2026-03-02T02:00:00Z"));
        // Right after that pass started, the next one is a day later.
        let after = utc("2026-03-02T02:00:01Z");
        assert_eq!(
            s.next_tick(Some(&first), &after),
            Some(utc("2026-03-03T02:00:00Z"))
        );
        // Woken exactly at the match time with that pass already done: not twice.
        assert_eq!(
            s.next_tick(Some(&first), &first),
            Some(utc("2026-03-03T02:00:00Z"))
        );
        // At start-up exactly on a match: that one counts.
        assert_eq!(s.next_tick(None, &first), Some(first));
        // Month and year boundaries.
        let eoy = utc("2026-12-31T23:59:59Z");
        assert_eq!(s.next_tick(None, &eoy), Some(utc("2027-01-01T02:00:00Z")));
    }

    #[test]
    fn cron_in_the_dispatchers_zone() {
        // 02:00 at UTC+2 is 00:00 UTC: the match is in the zone of the times handed in.
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        let s = Schedule::cron("0 2 * * *").unwrap();
        let now = utc("2026-03-01T23:30:00Z").with_timezone(&tz); // 01:30 local, March 2nd
        let next = s.next_tick(None, &now).unwrap();
        assert_eq!(next.with_timezone(&Utc), utc("2026-03-02T00:00:00Z"));
    }

    #[test]
    fn cron_with_seconds_weekdays_and_errors() {
        let s = Schedule::cron("*/2 * * * * *").unwrap();
        let t = utc("2026-03-01T10:00:01Z");
        assert_eq!(s.next_tick(None, &t), Some(utc("2026-03-01T10:00:02Z")));
        let t2 = utc("2026-03-01T10:00:02Z");
        assert_eq!(
            s.next_tick(Some(&t2), &t2),
            Some(utc("2026-03-01T10:00:04Z"))
        );
        // Weekdays only, at 01:30: from Friday evening the next is Monday.
        let s = Schedule::cron("30 1 * * 1-5").unwrap();
        let fri = utc("2026-03-06T20:00:00Z");
        assert_eq!(s.next_tick(None, &fri), Some(utc("2026-03-09T01:30:00Z")));
        assert!(Schedule::cron("61 * * * *").is_err());
        assert!(Schedule::cron("every night").is_err());
        assert!(Schedule::cron("@daily").is_ok());
        assert!(s.describe().contains("30 1 * * 1-5"), "{}", s.describe());
        assert_eq!(Schedule::every("24h").unwrap().describe(), "every 1day");
    }

    #[test]
    fn pass_names_and_numbers() {
        assert_eq!(pass_name("nightly", 3), "nightly-pass3");
        assert_eq!(pass_number("nightly", "nightly-pass3"), Some(3));
        assert_eq!(pass_number("nightly", "nightly-pass"), None);
        assert_eq!(pass_number("nightly", "nightly-pass03"), None);
        assert_eq!(pass_number("nightly", "nightly-2-pass3"), None);
        assert_eq!(pass_number("night", "nightly-pass3"), None);
        assert_eq!(pass_number("nightly", "other"), None);
        assert_eq!(next_pass_number("nightly", []), 1);
        assert_eq!(
            next_pass_number(
                "nightly",
                ["nightly-pass2", "x-pass9", "nightly-pass10", "nightly"]
            ),
            11
        );
    }

    fn rec(user: &str) -> AccountRecord {
        AccountRecord {
            account: "a00001".into(),
            user1: user.into(),
            host1: "Imap.Old:143".into(),
            user2: user.into(),
            host2: "imap.new:143".into(),
            ..AccountRecord::default()
        }
    }

    #[test]
    fn the_skip_rule() {
        let prev = |s| PreviousPass {
            job: "20260301T020000-ab".into(),
            name: "nightly-pass1".into(),
            status: s,
        };
        assert_eq!(decide(None), Decision::Dispatch);
        assert_eq!(decide(Some(&prev(AccountStatus::Done))), Decision::Dispatch);
        assert_eq!(
            decide(Some(&prev(AccountStatus::Failed))),
            Decision::Dispatch,
            "a failed pass is over: the next one tries again"
        );
        for s in [AccountStatus::Running, AccountStatus::Pending] {
            match decide(Some(&prev(s))) {
                Decision::Skip(why) => {
                    assert!(why.starts_with("previous pass still running"), "{why}");
                    assert!(
                        why.contains("nightly-pass1") && why.contains(s.name()),
                        "{why}"
                    );
                }
                d => panic!("{s:?}: {d:?}"),
            }
        }
    }

    #[test]
    fn the_previous_pass_is_the_newest_that_did_not_skip_the_account() {
        let alice = account_identity(&rec("alice"));
        let bob = account_identity(&rec("bob"));
        assert_ne!(alice, bob);
        // Host names compare without case; users exactly.
        let mut a2 = rec("alice");
        a2.host1 = "imap.old:143".into();
        assert_eq!(account_identity(&a2), alice);
        assert_ne!(account_identity(&rec("Alice")), alice);

        let p3 = vec![
            (alice.clone(), AccountStatus::Skipped),
            (bob.clone(), AccountStatus::Done),
        ];
        let p2 = vec![(alice.clone(), AccountStatus::Running)];
        let p1 = vec![(alice.clone(), AccountStatus::Done)];
        let passes = || {
            [
                ("j3", "n-pass3", p3.as_slice()),
                ("j2", "n-pass2", p2.as_slice()),
                ("j1", "n-pass1", p1.as_slice()),
            ]
        };
        let pa = previous_pass(&alice, passes()).unwrap();
        assert_eq!(
            (pa.job.as_str(), pa.status),
            ("j2", AccountStatus::Running),
            "pass 3 skipped alice: pass 2 is still hers"
        );
        assert!(matches!(decide(Some(&pa)), Decision::Skip(_)));
        let pb = previous_pass(&bob, passes()).unwrap();
        assert_eq!((pb.job.as_str(), pb.status), ("j3", AccountStatus::Done));
        assert_eq!(
            previous_pass(&account_identity(&rec("carol")), passes()),
            None
        );
    }
}
