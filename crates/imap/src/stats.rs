//! Commands sent, counted per login (user on host:port) and per command name, for the whole process.
//!
//! Tests and benchmarks read these to prove what a run did ("a re-run after no change sends no
//! SELECT"); reports carry them. Counting costs one uncontended mutex per command: nothing next to a
//! network round trip. Keyed by login so that concurrent tests with distinct users do not mix.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use crate::Endpoint;

type Counts = BTreeMap<String, u64>;

fn registry() -> &'static Mutex<HashMap<String, Counts>> {
    static R: OnceLock<Mutex<HashMap<String, Counts>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The registry key of an endpoint's login: `user@host:port`.
pub fn login_key(ep: &Endpoint) -> String {
    format!("{}@{}", ep.user, ep.addr())
}

/// Count one command (by its name: `SELECT`, `EXAMINE`, `UID FETCH`, `APPEND`...) sent for `ep`.
pub(crate) fn count(ep: &Endpoint, command: &str) {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    *r.entry(login_key(ep))
        .or_default()
        .entry(command.to_string())
        .or_default() += 1;
}

/// Commands sent so far for `ep`'s login, by name (all sessions of the process).
pub fn commands(ep: &Endpoint) -> BTreeMap<String, u64> {
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    r.get(&login_key(ep)).cloned().unwrap_or_default()
}

/// What was sent between two [`commands`] snapshots (names with a zero difference left out).
pub fn since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, &n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_keeps_only_what_changed() {
        let a: Counts = [("SELECT".to_string(), 2), ("LIST".to_string(), 1)].into();
        let b: Counts = [
            ("SELECT".to_string(), 2),
            ("LIST".to_string(), 2),
            ("STATUS".to_string(), 3),
        ]
        .into();
        let d = since(&a, &b);
        assert_eq!(d.get("SELECT"), None);
        assert_eq!(d["LIST"], 1);
        assert_eq!(d["STATUS"], 3);
    }
}
