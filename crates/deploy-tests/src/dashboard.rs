//! The Grafana dashboard and the alert rules, and what the fleet exports (see tests/dashboard.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value as Json;

use crate::metrics::{families_from_text, promql_metric_names, substitute_grafana_variables};
use crate::workspace_root;

pub use crate::metrics::all_series;

pub fn dashboard() -> Json {
    let p = workspace_root().join("deploy/grafana/imapfleet.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read the dashboard"))
        .expect("the dashboard is JSON")
}

pub fn rules_path() -> PathBuf {
    workspace_root().join("deploy/prometheus/imapfleet-alerts.yaml")
}

pub fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(rules_path()).unwrap()).expect("rules YAML")
}

/// Metric families the fleet's metrics module registers: name -> type ("histogram" or "other").
pub fn exported_families() -> BTreeMap<String, String> {
    let src_path = workspace_root().join("crates/fleet/src/metrics.rs");
    let src = std::fs::read_to_string(&src_path)
        .unwrap_or_else(|e| panic!("{}: {e}", src_path.display()));
    let lit = regex::Regex::new(r#""(imapfleet_[a-z0-9_]+)""#).unwrap();
    let hist = regex::Regex::new(r"HistogramOpts::new\(\s*$").unwrap();
    let mut out = BTreeMap::new();
    for m in lit.captures_iter(&src) {
        let whole = m.get(0).unwrap();
        let before = &src[..whole.start()];
        let typ = if hist.is_match(before) {
            "histogram"
        } else {
            "other"
        };
        out.insert(m[1].to_string(), typ.to_string());
    }
    // A refactor that hides the names from this reader must fail here, not pass vacuously.
    for must in [
        "imapfleet_messages_copied_total",
        "imapfleet_bytes_copied_total",
        "imapfleet_errors_total",
        "imapfleet_folder_task_duration_seconds",
    ] {
        assert!(
            out.contains_key(must),
            "{must} not found in {}: teach exported_families() the new way metrics are declared",
            src_path.display()
        );
    }
    assert_eq!(
        out["imapfleet_folder_task_duration_seconds"], "histogram",
        "the folder-task duration is a histogram"
    );
    out
}

pub fn exported_series() -> BTreeSet<String> {
    all_series(&exported_families())
}

/// Family -> type, and series name -> label names seen.
pub type Sample = (BTreeMap<String, String>, BTreeMap<String, BTreeSet<String>>);

/// A `/metrics` answer: families and the label names of each series name.
pub fn parse_sample(text: &str) -> Sample {
    let families = families_from_text(text);
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let label_re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let set = labels.entry(name).or_default();
        if let Some(i) = line.find('{') {
            let j = line.rfind('}').unwrap_or(line.len());
            for c in label_re.captures_iter(&line[i..j]) {
                set.insert(c[1].to_string());
            }
        }
    }
    (families, labels)
}

/// Every (panel title, expression) of the dashboard, rows' nested panels included.
pub fn dashboard_queries(d: &Json) -> Vec<(String, String)> {
    fn walk(panels: &[Json], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_string()));
                }
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(d["panels"].as_array().expect("panels"), &mut out);
    out
}

pub fn all_panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for n in p["panels"].as_array().into_iter().flatten() {
            out.push(n);
        }
    }
    out
}

/// Check a live `/metrics` answer against the metrics module and the dashboard (panics on a
/// mismatch); returns a one-line summary.
pub fn check_live_sample(text: &str) -> String {
    let (families, labels) = parse_sample(text);
    let declared = exported_families();
    let imapfleet: BTreeMap<&String, &String> = families
        .iter()
        .filter(|(n, _)| n.starts_with("imapfleet_"))
        .collect();
    assert!(
        !imapfleet.is_empty(),
        "the sample holds no imapfleet metric"
    );
    for (name, typ) in &imapfleet {
        let d = declared
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is served but not found in metrics.rs"));
        assert_eq!(
            d == "histogram",
            *typ == "histogram",
            "{name}: served as {typ}, declared as {d}"
        );
    }
    // Series filtered by job on the dashboard must carry the imapfleet_job label where the sample
    // shows them, and none may carry `job` (Prometheus's scrape job).
    let d = dashboard();
    let job_filter =
        regex::Regex::new(r#"([a-zA-Z_:][a-zA-Z0-9_:]*)\{[^}]*\bimapfleet_job=~"\$job""#).unwrap();
    for (name, l) in &labels {
        assert!(
            !name.starts_with("imapfleet_") || !l.contains("job"),
            "{name} carries a `job` label: it clashes with Prometheus's scrape job"
        );
    }
    let mut seen = BTreeSet::new();
    for (title, expr) in dashboard_queries(&d) {
        for c in job_filter.captures_iter(&expr) {
            if let Some(l) = labels.get(&c[1]) {
                assert!(
                    l.contains("imapfleet_job"),
                    "{title}: {} is filtered by job but has no imapfleet_job label",
                    &c[1]
                );
            }
        }
        for n in promql_metric_names(&substitute_grafana_variables(&expr)).unwrap() {
            if labels.contains_key(&n) {
                seen.insert(n);
            }
        }
    }
    format!(
        "live sample: {} imapfleet families; dashboard metrics seen live: {seen:?}",
        imapfleet.len()
    )
}
