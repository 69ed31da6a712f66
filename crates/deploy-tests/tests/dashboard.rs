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
use std::process::Command;

use deploy_tests::dashboard::{
    all_panels, check_live_sample, dashboard, dashboard_queries, exported_series, rules, rules_path,
};
use deploy_tests::metrics::{promql_metric_names, substitute_grafana_variables};
use deploy_tests::workspace_root;
use serde_json::Value as Json;

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
    let Some(path) = std::env::var_os("IMAPFLEET_METRICS_SAMPLE") else {
        eprintln!(
            "SKIP live sample: IMAPFLEET_METRICS_SAMPLE is not set (the image test checks its own sample)"
        );
        return;
    };
    let text = std::fs::read_to_string(path).expect("read IMAPFLEET_METRICS_SAMPLE");
    eprintln!("{}", check_live_sample(&text));
}

/// promtool on the PATH; under CI (as root, on Debian) Debian's `prometheus` package is installed when
/// it is missing (a fresh CI machine does not have it; a developer's machine is not touched).
fn promtool_available() -> bool {
    let have = || {
        Command::new("promtool")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if have() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if std::env::var_os("CI").is_none() || !root {
        return false;
    }
    eprintln!("deploy-tests: installing Debian's prometheus package for promtool");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "prometheus",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).output();
        install();
    }
    have()
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    if !promtool_available() {
        eprintln!("SKIP promtool: not installed (apt-get install prometheus; under CI the test installs it)");
        return;
    }
    let out = Command::new("promtool").arg("--version").output().unwrap();
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

/// The imapfleet job is `imapfleet_job`: a query grouping or filtering on a bare `job` would use
/// Prometheus's scrape job (or an `exported_job` that no longer exists) and silently show one line.
#[test]
fn queries_use_imapfleet_job_never_the_scrape_job_label() {
    let bare_job =
        regex::Regex::new(r"(^|[^A-Za-z0-9_$])(exported_)?job\s*(=~|!~|!=|=|,|\))").unwrap();
    let mut exprs: Vec<(String, String)> = dashboard_queries(&dashboard());
    for v in dashboard()["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str().or(v["query"].as_str()) {
            exprs.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    for g in rules()["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            exprs.push((
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let mut by_job = 0;
    for (what, e) in &exprs {
        assert!(!bare_job.is_match(e), "{what}: `{e}` uses the `job` label");
        if e.contains("imapfleet_job") {
            by_job += 1;
        }
    }
    assert!(by_job >= 10, "only {by_job} queries use imapfleet_job");
    // The rule unit tests feed series labelled the same way.
    let t = std::fs::read_to_string(
        workspace_root().join("deploy/prometheus/imapfleet-alerts.test.yaml"),
    )
    .unwrap();
    assert!(
        !t.contains("{job=") && !t.contains(" job: "),
        "a rule test still uses `job`"
    );
    assert!(
        t.contains("{imapfleet_job=\"j1\""),
        "the rule tests use imapfleet_job"
    );
    // The check itself catches what it is for.
    assert!(bare_job.is_match(r#"sum by (job) (x)"#));
    assert!(bare_job.is_match(r#"x{job=~"$job"}"#));
    assert!(!bare_job.is_match(r#"x{imapfleet_job=~"$job"}"#));
}
