//! The Grafana dashboard and the Prometheus alert rules against the metrics the fleet exports.
//!
//! What the workers export is read from the fleet's metrics module (`crates/fleet/src/metrics.rs`: every
//! `"imapfleet_..."` name registered there, histograms recognised by `HistogramOpts::new`). When
//! `IMAPFLEET_METRICS_SAMPLE` names a file holding a live `/metrics` answer of a worker
//! (deploy/test-image.sh sets it), that sample is checked too: every family in it is one the module
//! declares, and the job filters of the dashboard only apply to series that carry a `job` label.
//! Every query is parsed with Prometheus's grammar (the `promql-parser` crate). With `promtool` on the
//! PATH (Debian's `prometheus` package), the rules file is also checked and its unit tests run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use deploy_tests::metrics::{
    all_series, families_from_text, promql_metric_names, substitute_grafana_variables,
};
use deploy_tests::workspace_root;
use serde_json::Value as Json;

fn dashboard() -> Json {
    let p = workspace_root().join("deploy/grafana/imapfleet.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read the dashboard"))
        .expect("the dashboard is JSON")
}

fn rules_path() -> PathBuf {
    workspace_root().join("deploy/prometheus/imapfleet-alerts.yaml")
}

fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(rules_path()).unwrap()).expect("rules YAML")
}

/// Metric families the fleet's metrics module registers: name -> type ("histogram" or "other").
fn exported_families() -> BTreeMap<String, String> {
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

fn exported_series() -> BTreeSet<String> {
    all_series(&exported_families())
}

/// Family -> type, and series name -> label names seen.
type Sample = (BTreeMap<String, String>, BTreeMap<String, BTreeSet<String>>);

/// The live sample, when given.
fn live_sample() -> Option<Sample> {
    let path = std::env::var_os("IMAPFLEET_METRICS_SAMPLE")?;
    let text = std::fs::read_to_string(&path).expect("read IMAPFLEET_METRICS_SAMPLE");
    let families = families_from_text(&text);
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
    Some((families, labels))
}

/// Every (panel title, expression) of the dashboard, rows' nested panels included.
fn dashboard_queries(d: &Json) -> Vec<(String, String)> {
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

fn all_panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for n in p["panels"].as_array().into_iter().flatten() {
            out.push(n);
        }
    }
    out
}

#[test]
fn dashboard_is_a_well_formed_grafana_dashboard() {
    let d = dashboard();
    assert_eq!(d["uid"], "imapfleet");
    assert!(d["title"].is_string());
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: BTreeMap<&str, &Json> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    assert_eq!(vars["job"]["type"], "query");

    let mut ids = BTreeSet::new();
    let mut cells: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for p in all_panels(&d) {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{title} is wider than the grid");
        cells.push((title.clone(), x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the data source is the dashboard's variable"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
    }
    for (i, a) in cells.iter().enumerate() {
        for b in &cells[i + 1..] {
            let overlap = a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4;
            assert!(!overlap, "panels {:?} and {:?} overlap", a.0, b.0);
        }
    }
}

#[test]
fn dashboard_queries_only_metrics_the_workers_export() {
    let d = dashboard();
    let exported = exported_series();
    let mut used = BTreeSet::new();
    for (title, expr) in dashboard_queries(&d) {
        let names = promql_metric_names(&substitute_grafana_variables(&expr))
            .unwrap_or_else(|e| panic!("{title}: `{expr}` does not parse: {e}"));
        for n in names {
            assert!(
                exported.contains(&n),
                "{title}: `{n}` is not exported by the fleet (exported: {exported:?})"
            );
            used.insert(n);
        }
    }
    // Variables that query Prometheus: label_values(METRIC, LABEL).
    let lv = regex::Regex::new(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)").unwrap();
    for v in d["templating"]["list"].as_array().unwrap() {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        for c in lv.captures_iter(q) {
            assert!(
                exported.contains(&c[1]),
                "variable {}: {}",
                v["name"],
                &c[1]
            );
            used.insert(c[1].to_string());
        }
    }
    // What the issue asks the dashboard to show.
    for (what, metric) in [
        ("messages/s copied", "imapfleet_messages_copied_total"),
        ("MB/s copied", "imapfleet_bytes_copied_total"),
        ("errors by class", "imapfleet_errors_total"),
        (
            "folder-task duration",
            "imapfleet_folder_task_duration_seconds_bucket",
        ),
        ("queue depth", "imapfleet_queue_depth"),
        ("tasks in flight", "imapfleet_tasks_in_flight"),
        ("lease losses", "imapfleet_lease_losses_total"),
        ("connections per host", "imapfleet_imap_connections_open"),
    ] {
        assert!(used.contains(metric), "no panel shows {what} ({metric})");
    }
    let by_class = dashboard_queries(&d)
        .into_iter()
        .any(|(_, e)| e.contains("imapfleet_errors_total") && e.contains("by (class)"));
    assert!(by_class, "errors are shown by class");
    let per_host = dashboard_queries(&d)
        .into_iter()
        .any(|(_, e)| e.contains("imapfleet_imap_connections_open") && e.contains("by (host)"));
    assert!(per_host, "connections are shown per host");
}

#[test]
fn alert_rules_parse_and_query_only_exported_metrics() {
    let exported = exported_series();
    let rules = rules();
    let ops = std::fs::read_to_string(workspace_root().join("docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md");
    let mut names = BTreeSet::new();
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let alert = r["alert"].as_str().expect("alerting rules only");
            assert!(names.insert(alert.to_string()), "{alert} twice");
            let expr = r["expr"].as_str().unwrap();
            let metrics = promql_metric_names(expr)
                .unwrap_or_else(|e| panic!("{alert}: `{expr}` does not parse: {e}"));
            assert!(!metrics.is_empty());
            for m in metrics {
                assert!(exported.contains(&m), "{alert}: `{m}` is not exported");
            }
            let sev = r["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&sev),
                "{alert}: severity {sev:?}"
            );
            for a in ["summary", "description"] {
                assert!(r["annotations"][a].is_string(), "{alert}: no {a}");
            }
            assert!(
                ops.contains(alert),
                "{alert} is not explained in docs/OPERATIONS.md"
            );
        }
    }
    for must in [
        "ImapfleetJobStalled",
        "ImapfleetErrorRate",
        "ImapfleetDeadLetterGrowth",
    ] {
        assert!(names.contains(must), "no {must} alert");
    }
}

#[test]
fn live_metrics_sample_agrees_with_the_metrics_module() {
    let Some((families, labels)) = live_sample() else {
        eprintln!(
            "SKIP live sample: IMAPFLEET_METRICS_SAMPLE is not set (deploy/test-image.sh sets it)"
        );
        return;
    };
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
    // Series filtered by job on the dashboard must carry a job label where the sample shows them.
    let d = dashboard();
    let job_filter =
        regex::Regex::new(r#"([a-zA-Z_:][a-zA-Z0-9_:]*)\{[^}]*\bjob=~"\$job""#).unwrap();
    let mut seen = BTreeSet::new();
    for (title, expr) in dashboard_queries(&d) {
        for c in job_filter.captures_iter(&expr) {
            if let Some(l) = labels.get(&c[1]) {
                assert!(
                    l.contains("job"),
                    "{title}: {} is filtered by job but has no job label",
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
    eprintln!(
        "live sample: {} imapfleet families; dashboard metrics seen live: {seen:?}",
        imapfleet.len()
    );
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        eprintln!("SKIP promtool: not installed (apt-get install prometheus)");
        return;
    };
    assert!(out.status.success());
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(rules_path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let tests = workspace_root().join("deploy/prometheus/imapfleet-alerts.test.yaml");
    let run = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&tests)
        .current_dir(workspace_root().join("deploy/prometheus"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
