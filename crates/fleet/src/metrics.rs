//! Prometheus metrics of a worker or a dispatcher (served by [`crate::http`]).
//!
//! Labels: `imapfleet_job` (the job id; not `job`, which Prometheus sets on every scraped series to
//! the scrape job, see [`JOB_LABEL`]), `class` (error classes: a fixed set), `host` (IMAP `host:port`, for
//! connections), `status` (account states) and `schedule` (the name of a scheduled dispatcher's
//! passes: one per dispatcher, where a job label would grow by one series a pass). Never a user, a
//! folder or an account: cardinality stays bounded by the number of jobs and servers.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Name of the label carrying the imapfleet job id. Not `job`: Prometheus attaches its own `job`
/// (the scrape job) to every series it scrapes, and a `job` of ours would be renamed `exported_job`
/// or, under `honor_labels`, overwrite the scrape job.
pub const JOB_LABEL: &str = "imapfleet_job";

/// All metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub messages_copied: IntCounterVec,
    pub bytes_copied: IntCounterVec,
    pub messages_skipped: IntCounterVec,
    pub flags_updated: IntCounterVec,
    pub errors: IntCounterVec,
    pub folder_task_seconds: HistogramVec,
    pub tasks_in_flight: IntGaugeVec,
    pub tasks_done: IntCounterVec,
    pub retries: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub lock_waits: IntCounterVec,
    pub lease_losses: IntCounterVec,
    pub limit_backoffs: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub dead_letters: IntGauge,
    pub accounts: IntGaugeVec,
    /// Scheduled passes started (`dispatch --every/--cron`).
    pub passes: IntCounterVec,
    /// Accounts a scheduled pass left out because their previous pass still ran.
    pub accounts_skipped: IntCounterVec,
    /// When the next scheduled pass starts (Unix seconds).
    pub next_pass: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let j = &[JOB_LABEL];
        let folder_task_seconds = HistogramVec::new(
            HistogramOpts::new(
                "imapfleet_folder_task_duration_seconds",
                "Wall time of one folder slice (lock wait excluded)",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0,
            ]),
            j,
        )
        .expect("valid metric");
        r.register(Box::new(folder_task_seconds.clone()))
            .expect("metric registered once");
        let queue_depth = IntGauge::new(
            "imapfleet_queue_depth",
            "Tasks ready in the queue, as last seen",
        )
        .expect("valid metric");
        r.register(Box::new(queue_depth.clone()))
            .expect("metric registered once");
        let dead_letters = IntGauge::new(
            "imapfleet_dead_letters",
            "Tasks in the dead-letter queue, as last seen",
        )
        .expect("valid metric");
        r.register(Box::new(dead_letters.clone()))
            .expect("metric registered once");
        Metrics {
            messages_copied: counter(
                &r,
                "imapfleet_messages_copied_total",
                "Messages appended to host2",
                j,
            ),
            bytes_copied: counter(
                &r,
                "imapfleet_bytes_copied_total",
                "Bytes appended to host2",
                j,
            ),
            messages_skipped: counter(
                &r,
                "imapfleet_messages_skipped_total",
                "host1 messages found already on host2 (counted at each folder's last slice)",
                j,
            ),
            flags_updated: counter(
                &r,
                "imapfleet_flags_updated_total",
                "host2 messages whose flags were set to host1's",
                j,
            ),
            errors: counter(
                &r,
                "imapfleet_errors_total",
                "Errors counted, by class",
                &[JOB_LABEL, "class"],
            ),
            folder_task_seconds,
            tasks_in_flight: int_gauge(
                &r,
                "imapfleet_tasks_in_flight",
                "Tasks being worked on by this process",
                j,
            ),
            tasks_done: counter(
                &r,
                "imapfleet_tasks_total",
                "Tasks settled, by kind",
                &[JOB_LABEL, "kind"],
            ),
            retries: counter(
                &r,
                "imapfleet_task_retries_total",
                "Tasks put back with a backoff after a failure",
                j,
            ),
            dead_lettered: counter(
                &r,
                "imapfleet_dead_lettered_total",
                "Tasks that used up their attempts",
                j,
            ),
            lock_waits: counter(
                &r,
                "imapfleet_lock_waits_total",
                "Folder locks found taken (the task waited or went back)",
                j,
            ),
            lease_losses: counter(
                &r,
                "imapfleet_lease_losses_total",
                "Leases lost while working (work stopped)",
                j,
            ),
            limit_backoffs: counter(
                &r,
                "imapfleet_limit_backoffs_total",
                "Server refusals for too many connections (backed off, not failures)",
                j,
            ),
            connections_open: int_gauge(
                &r,
                "imapfleet_imap_connections_open",
                "IMAP sessions open by this process",
                &["host"],
            ),
            queue_depth,
            dead_letters,
            accounts: int_gauge(
                &r,
                "imapfleet_accounts",
                "Accounts of a job by status, as last seen",
                &[JOB_LABEL, "status"],
            ),
            passes: counter(
                &r,
                "imapfleet_scheduled_passes_total",
                "Scheduled passes dispatched",
                &["schedule"],
            ),
            accounts_skipped: counter(
                &r,
                "imapfleet_accounts_skipped_total",
                "Accounts left out of a scheduled pass: their previous pass still ran",
                &["schedule"],
            ),
            next_pass: int_gauge(
                &r,
                "imapfleet_next_pass_timestamp_seconds",
                "Start of the next scheduled pass (Unix time)",
                &["schedule"],
            ),
            registry: r,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn observe_folder_task(&self, job: &str, d: Duration) {
        self.folder_task_seconds
            .with_label_values(&[job])
            .observe(d.as_secs_f64());
    }
}

/// Counts one open IMAP session per host while alive.
pub struct ConnectionGuard {
    metrics: Metrics,
    hosts: Vec<String>,
}

impl ConnectionGuard {
    pub fn open(metrics: &Metrics, hosts: &[String]) -> ConnectionGuard {
        for h in hosts {
            metrics
                .connections_open
                .with_label_values(&[h.as_str()])
                .inc();
        }
        ConnectionGuard {
            metrics: metrics.clone(),
            hosts: hosts.to_vec(),
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        for h in &self.hosts {
            self.metrics
                .connections_open
                .with_label_values(&[h.as_str()])
                .dec();
        }
    }
}

/// One sample of a rendered exposition: the value of `name` with exactly these labels (for tests
/// and `status`), summed over the series that match.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if ok {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_reads_back() {
        let m = Metrics::new();
        m.messages_copied.with_label_values(&["j1"]).inc_by(7);
        m.errors.with_label_values(&["j1", "auth_host1"]).inc();
        m.observe_folder_task("j1", Duration::from_millis(300));
        {
            let _g = ConnectionGuard::open(&m, &["127.0.0.1:1143".to_string()]);
            assert_eq!(
                sample(
                    &m.render(),
                    "imapfleet_imap_connections_open",
                    &[("host", "127.0.0.1:1143")]
                ),
                Some(1.0)
            );
        }
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "imapfleet_messages_copied_total",
                &[(JOB_LABEL, "j1")]
            ),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, "imapfleet_errors_total", &[("class", "auth_host1")]),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "imapfleet_folder_task_duration_seconds_count",
                &[(JOB_LABEL, "j1")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "imapfleet_imap_connections_open", &[]),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "imapfleet_messages_copied_total",
                &[(JOB_LABEL, "j2")]
            ),
            None
        );
    }

    #[test]
    fn the_job_label_is_not_prometheus_job() {
        let m = Metrics::new();
        m.messages_copied.with_label_values(&["j1"]).inc();
        m.errors.with_label_values(&["j1", "append"]).inc();
        m.tasks_done.with_label_values(&["j1", "folder"]).inc();
        m.tasks_in_flight.with_label_values(&["j1"]).set(0);
        m.accounts.with_label_values(&["j1", "done"]).set(3);
        m.observe_folder_task("j1", Duration::from_millis(5));
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(series.len() > 5, "{text}");
        for line in &series {
            assert!(
                !line.contains("{job=") && !line.contains(",job="),
                "a `job` label clashes with Prometheus's scrape job: {line}"
            );
        }
        assert_eq!(
            sample(
                &text,
                "imapfleet_tasks_total",
                &[(JOB_LABEL, "j1"), ("kind", "folder")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "imapfleet_accounts", &[("imapfleet_job", "j1")]),
            Some(3.0)
        );
    }
}
