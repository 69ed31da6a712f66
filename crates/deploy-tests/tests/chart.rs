//! The Helm chart, rendered without helm (see the crate docs for how), for the default values and a
//! few non-default sets: values against values.schema.json, every object against the Kubernetes
//! schemas (kubernetes-validate, strict, oldest and newest supported versions) or the custom-resource
//! schemas, references between objects, name limits, and what each object must say.

use std::collections::{BTreeMap, BTreeSet};

use deploy_tests::{
    set_value, validate_instances, validate_objects, yaml_to_json, Chart, Object, Release, Rendered,
};
use serde_yaml::Value as Yaml;

/// Oldest (Chart.yaml's kubeVersion) and newest Kubernetes the schemas are checked against.
const KUBE_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

const HEX_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn y(text: &str) -> Yaml {
    serde_yaml::from_str(text).expect("test YAML")
}

struct Scenario {
    name: &'static str,
    overrides: Vec<Yaml>,
    release: Release,
}

fn scenarios() -> Vec<Scenario> {
    let release = Release::default();
    vec![
        Scenario {
            name: "default",
            overrides: vec![],
            release: release.clone(),
        },
        Scenario {
            name: "full",
            overrides: vec![y(&format!(
                r#"
image: {{repository: registry.example/mail/imapfleet, tag: "0.1.0-test", pullPolicy: Always}}
imagePullSecrets: [{{name: regcred}}]
secret:
  amqpUrl: amqp://fleet:s3cret@rabbitmq:5672/%2f
  redisUrl: redis://:s3cret@redis-master:6379/0
  secretKey: {HEX_KEY}
config:
  RUST_LOG: debug
  IMAPFLEET_SLICE_BYTES: "33554432"
limits: {{maxConnectionsPerHost: 200, maxConnectionsPerAccount: 15}}
extraEnv:
  - name: TZ
    value: Europe/Paris
extraVolumes:
  - name: private-ca
    configMap: {{name: corp-ca}}
extraVolumeMounts:
  - name: private-ca
    mountPath: /etc/imapfleet/ca
    readOnly: true
metrics:
  serviceMonitor: {{enabled: true, labels: {{release: kube-prometheus-stack}}}}
  prometheusRule: {{enabled: true, labels: {{release: kube-prometheus-stack}}}}
worker:
  extraArgs: [--verbose]
  podAnnotations: {{team: mail}}
  podLabels: {{tier: batch}}
  nodeSelector: {{kubernetes.io/os: linux}}
  tolerations: [{{key: dedicated, operator: Equal, value: migration, effect: NoSchedule}}]
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {{matchLabels: {{app.kubernetes.io/component: worker}}}}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector: {{matchLabels: {{app.kubernetes.io/component: worker}}}}
autoscaling:
  minReplicas: 0
  maxReplicas: 40
  keda: {{enabled: true, messagesPerWorker: 25}}
batch:
  content: |
    # host1;user1;password1;host2;user2;password2;
    imap.old.example;alice;pw1;imap.new.example;alice;pw2;
dispatcher:
  jobName: tenant-a
  extraArgs: [--skip-bad-lines]
  delta: {{schedule: "15 2 * * *", timeZone: Europe/Paris}}
"#
            ))],
            release: release.clone(),
        },
        Scenario {
            name: "hpa-existing-secrets",
            overrides: vec![y(r#"
secret: {existingSecret: mail-fleet-credentials}
metrics: {service: {enabled: false}}
autoscaling: {hpa: {enabled: true, metricSelector: {matchLabels: {queue: imapfleet.tasks}}}}
podDisruptionBudget: {maxUnavailable: "25%"}
serviceAccount: {create: false, name: migration}
batch: {existingConfigMap: tenant-b-accounts, key: accounts.csv}
"#)],
            release: Release {
                name: "tenant-b".into(),
                namespace: "tenants".into(),
                revision: 4,
                is_install: false,
            },
        },
        Scenario {
            name: "batch-secret-no-initial",
            overrides: vec![
                y(r#"
fullnameOverride: mailmove
batch: {existingSecret: mailmove-accounts}
dispatcher: {initial: {enabled: false}, delta: {suspend: true}}
podDisruptionBudget: {enabled: false}
"#),
                set_value("worker.replicas=7").unwrap(),
                set_value("worker.hostNetwork=true").unwrap(),
            ],
            release: release.clone(),
        },
        Scenario {
            // Helm allows release names of up to 53 characters.
            name: "long-names",
            overrides: vec![y(r#"
nameOverride: imapfleet-migration-workers
batch: {content: "a;b;c;d;e;f;\n"}
metrics: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}}
autoscaling: {keda: {enabled: true}}
"#)],
            release: Release {
                name: "a-very-long-release-name-for-a-tenant-migration-0001".into(),
                ..release
            },
        },
    ]
}

fn render(s: &Scenario) -> Rendered {
    Chart::imapfleet()
        .render(&s.overrides, &s.release)
        .unwrap_or_else(|e| panic!("scenario {}: {e:#}", s.name))
}

fn render_with(overrides: &[&str]) -> Result<Rendered, String> {
    let o: Vec<Yaml> = overrides.iter().map(|t| y(t)).collect();
    Chart::imapfleet()
        .render(&o, &Release::default())
        .map_err(|e| format!("{e:#}"))
}

fn kinds(r: &Rendered) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in &r.objects {
        *m.entry(o.kind().to_string()).or_default() += 1;
    }
    m
}

fn str_map(v: &Yaml) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pod_spec(o: &Object) -> &Yaml {
    match o.kind() {
        "Deployment" | "Job" => &o.yaml["spec"]["template"]["spec"],
        "CronJob" => &o.yaml["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        k => panic!("{k} has no pod template"),
    }
}

fn pod_labels(o: &Object) -> BTreeMap<String, String> {
    match o.kind() {
        "Deployment" | "Job" => str_map(&o.yaml["spec"]["template"]["metadata"]["labels"]),
        "CronJob" => {
            str_map(&o.yaml["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
        }
        _ => BTreeMap::new(),
    }
}

fn env_of(container: &Yaml) -> BTreeMap<String, Yaml> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

#[test]
fn values_schema_accepts_the_defaults_and_every_scenario() {
    let chart = Chart::imapfleet();
    let schema = chart.schema.clone().expect("values.schema.json");
    let pairs: Vec<_> = scenarios()
        .iter()
        .map(|s| {
            (
                yaml_to_json(&chart.coalesced_values(&s.overrides)),
                schema.clone(),
            )
        })
        .collect();
    let report = validate_instances(&pairs).unwrap();
    for (s, errs) in scenarios().iter().zip(report) {
        assert!(errs.is_empty(), "scenario {}: {errs:#?}", s.name);
    }
}

/// Helm reads every number in values as a float64 and Go prints 1000000.0 as `1e+06`: a number that
/// the templates print as it is must stay below a million, so every integer in the schema has a maximum
/// under that.
#[test]
fn values_schema_bounds_every_integer_below_a_million() {
    fn walk(n: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
        match n {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()) == Some("integer") {
                    match m.get("maximum").and_then(|x| x.as_f64()) {
                        Some(max) if max < 1e6 => {}
                        _ => bad.push(path.to_string()),
                    }
                }
                for (k, v) in m {
                    walk(v, &format!("{path}/{k}"), bad);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), bad);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(&Chart::imapfleet().schema.unwrap(), "", &mut bad);
    assert!(
        bad.is_empty(),
        "integers without a maximum below 1e6: {bad:?}"
    );
}

#[test]
fn values_schema_rejects_mistakes() {
    let chart = Chart::imapfleet();
    let schema = chart.schema.clone().unwrap();
    let bad = [
        ("typo in a key", "worker: {replica: 3}"),
        ("unknown top-level key", "workers: {replicas: 3}"),
        ("negative replicas", "worker: {replicas: -1}"),
        ("replicas as a string", "worker: {replicas: \"3\"}"),
        ("pull policy", "image: {pullPolicy: Sometimes}"),
        (
            "grace shorter than a slice",
            "worker: {terminationGracePeriodSeconds: 5}",
        ),
        (
            "broker URL scheme",
            "secret: {amqpUrl: \"http://rabbitmq:15672\"}",
        ),
        ("redis URL scheme", "secret: {redisUrl: \"rabbitmq:6379\"}"),
        ("key not 32 bytes", "secret: {secretKey: \"abc123\"}"),
        (
            "config value not a string",
            "config: {IMAPFLEET_CONCURRENCY: 4}",
        ),
        (
            "cron schedule",
            "dispatcher: {delta: {schedule: \"every night\"}}",
        ),
        (
            "PDB percentage",
            "podDisruptionBudget: {maxUnavailable: \"a lot\"}",
        ),
        ("metrics port", "metrics: {port: 70000}"),
        ("fullnameOverride not DNS", "fullnameOverride: Mail_Fleet"),
    ];
    let pairs: Vec<_> = bad
        .iter()
        .map(|(_, o)| {
            (
                yaml_to_json(&chart.coalesced_values(&[y(o)])),
                schema.clone(),
            )
        })
        .collect();
    let report = validate_instances(&pairs).unwrap();
    for ((what, o), errs) in bad.iter().zip(report) {
        assert!(!errs.is_empty(), "{what}: `{o}` passed the schema");
    }
    // And the good forms of the same keys pass.
    let good = [
        format!("secret: {{secretKey: {HEX_KEY}}}"),
        "secret: {secretKey: \"ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=\"}".to_string(),
        "podDisruptionBudget: {maxUnavailable: \"50%\"}".to_string(),
        "dispatcher: {delta: {schedule: \"@daily\"}}".to_string(),
        "secret: {amqpUrl: \"amqps://u:p@mq.example:5671/prod\", redisUrl: \"rediss://r.example:6380\"}"
            .to_string(),
    ];
    let pairs: Vec<_> = good
        .iter()
        .map(|o| {
            (
                yaml_to_json(&chart.coalesced_values(&[y(o)])),
                schema.clone(),
            )
        })
        .collect();
    for (o, errs) in good.iter().zip(validate_instances(&pairs).unwrap()) {
        assert!(errs.is_empty(), "`{o}` was refused: {errs:?}");
    }
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let mut all = Vec::new();
    for s in scenarios() {
        let r = render(&s);
        assert!(!r.objects.is_empty());
        all.extend(r.objects.into_iter().map(|mut o| {
            o.source = format!("{} [{}]", o.source, s.name);
            o
        }));
    }
    let errors = validate_objects(&all, KUBE_VERSIONS).unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    // The validator is not a rubber stamp: a wrong field type and an unknown field are caught.
    let mut broken = all
        .iter()
        .find(|o| o.kind() == "Deployment")
        .unwrap()
        .clone();
    broken.yaml["spec"]["replicas"] = Yaml::from("two");
    broken.yaml["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy2"] =
        Yaml::from("Always");
    let mut crd = all
        .iter()
        .find(|o| o.kind() == "ScaledObject")
        .unwrap()
        .clone();
    crd.yaml["spec"]["triggers"][0]["metadata"]["mode"] = Yaml::from("QueueSize");
    let errors = validate_objects(&[broken, crd], KUBE_VERSIONS).unwrap();
    let text = errors.join("\n");
    assert!(text.contains("replicas"), "{text}");
    assert!(text.contains("imagePullPolicy2"), "{text}");
    assert!(text.contains("QueueSize"), "{text}");
}

#[test]
fn default_values_render_the_worker_side_only() {
    let r = render(&scenarios()[0]);
    let k = kinds(&r);
    let expected: BTreeMap<String, usize> = [
        ("ConfigMap", 1),
        ("Deployment", 1),
        ("PodDisruptionBudget", 1),
        ("Secret", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), *n))
    .collect();
    assert_eq!(k, expected, "no batch source: no dispatcher objects");

    let d = r.one("Deployment");
    assert_eq!(d.name(), "tenant-a-imapfleet-worker");
    assert_eq!(d.yaml["spec"]["replicas"], Yaml::from(2));
    let pod = pod_spec(d);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace >= 120,
        "grace {grace}s: longer than a slice plus the worker's own shutdown grace"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], Yaml::from("imapfleet:0.1.0"));
    assert_eq!(c["args"], y("[worker]"));
    assert_eq!(c["ports"][0]["name"], Yaml::from("metrics"));
    assert_eq!(c["ports"][0]["containerPort"], Yaml::from(9898));
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"],
        Yaml::from("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"],
        Yaml::from("/readyz")
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], Yaml::from("metrics"));
    let env = env_of(c);
    for name in [
        "IMAPFLEET_AMQP_URL",
        "IMAPFLEET_REDIS_URL",
        "IMAPFLEET_SECRET_KEY",
    ] {
        assert!(
            env[name]["valueFrom"]["secretKeyRef"].is_mapping(),
            "{name} comes from a Secret"
        );
    }
    assert_eq!(
        env["IMAPFLEET_METRICS_ADDR"]["value"],
        Yaml::from("0.0.0.0:9898")
    );
    assert_eq!(env["IMAPFLEET_CONCURRENCY"]["value"], Yaml::from("4"));
    assert_eq!(
        env["IMAPFLEET_MAX_CONNECTIONS_PER_ACCOUNT"]["value"],
        Yaml::from("10")
    );
    // Hardened: non-root, read-only root, no privilege escalation, no capabilities, no API token.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Yaml::Bool(true));
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"],
        Yaml::Bool(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        Yaml::Bool(false)
    );
    assert_eq!(c["securityContext"]["capabilities"]["drop"], y("[ALL]"));
    assert_eq!(pod["automountServiceAccountToken"], Yaml::Bool(false));
    assert!(pod.get("hostNetwork").is_none());
    assert!(c["resources"]["requests"]["cpu"].is_string());

    let svc = r.one("Service");
    assert_eq!(
        svc.yaml["spec"]["ports"][0]["targetPort"],
        Yaml::from("metrics")
    );
    let cm = r.one("ConfigMap");
    assert_eq!(cm.yaml["data"]["RUST_LOG"], Yaml::from("info"));
    // Nothing from a disabled option leaks through.
    assert!(r.of_kind("ServiceMonitor").is_empty());
    assert!(r.of_kind("ScaledObject").is_empty());
    assert!(r.of_kind("HorizontalPodAutoscaler").is_empty());
    let notes = &r.files["imapfleet/templates/NOTES.txt"];
    assert!(notes.contains("WARNING: secret.amqpUrl"), "{notes}");
    assert!(notes.contains("No batch source"), "{notes}");
    assert!(
        notes.contains("kubectl -n mail-migration exec deploy/tenant-a-imapfleet-worker -- imapfleet status tenant-a"),
        "{notes}"
    );
}

#[test]
fn full_values_render_dispatcher_autoscaling_and_monitoring() {
    let r = render(&scenarios()[1]);
    let k = kinds(&r);
    for (kind, n) in [
        ("CronJob", 1),
        ("Job", 1),
        ("ScaledObject", 1),
        ("TriggerAuthentication", 1),
        ("ServiceMonitor", 1),
        ("PrometheusRule", 1),
        ("Secret", 2),
    ] {
        assert_eq!(k.get(kind), Some(&n), "{kind} in {k:?}");
    }
    assert!(!k.contains_key("HorizontalPodAutoscaler"));

    let d = r.one("Deployment");
    assert!(
        d.yaml["spec"].get("replicas").is_none(),
        "KEDA owns the replica count: the Deployment must not set it"
    );
    let c = &pod_spec(d)["containers"][0];
    assert_eq!(
        c["image"],
        Yaml::from("registry.example/mail/imapfleet:0.1.0-test")
    );
    assert_eq!(c["args"], y("[worker, --verbose]"));
    let env = env_of(c);
    assert_eq!(env["TZ"]["value"], Yaml::from("Europe/Paris"));
    assert_eq!(
        env["IMAPFLEET_MAX_CONNECTIONS_PER_HOST"]["value"],
        Yaml::from("200")
    );
    assert_eq!(
        env["IMAPFLEET_MAX_CONNECTIONS_PER_ACCOUNT"]["value"],
        Yaml::from("15")
    );
    assert_eq!(
        env["IMAPFLEET_QUEUE"]["value"],
        Yaml::from("imapfleet.tasks")
    );
    assert_eq!(
        c["volumeMounts"][1]["mountPath"],
        Yaml::from("/etc/imapfleet/ca")
    );
    assert_eq!(
        pod_spec(d)["volumes"][1]["configMap"]["name"],
        Yaml::from("corp-ca")
    );

    let so = r.one("ScaledObject");
    assert_eq!(
        so.yaml["spec"]["scaleTargetRef"]["name"],
        Yaml::from(d.name())
    );
    assert_eq!(so.yaml["spec"]["minReplicaCount"], Yaml::from(0));
    assert_eq!(so.yaml["spec"]["maxReplicaCount"], Yaml::from(40));
    let trig = &so.yaml["spec"]["triggers"][0];
    assert_eq!(trig["type"], Yaml::from("rabbitmq"));
    assert_eq!(trig["metadata"]["queueName"], Yaml::from("imapfleet.tasks"));
    assert_eq!(trig["metadata"]["value"], Yaml::from("25"));
    let ta = r.one("TriggerAuthentication");
    assert_eq!(trig["authenticationRef"]["name"], Yaml::from(ta.name()));
    assert_eq!(
        ta.yaml["spec"]["secretTargetRef"][0]["parameter"],
        Yaml::from("host")
    );

    let cron = r.one("CronJob");
    assert_eq!(cron.yaml["spec"]["schedule"], Yaml::from("15 2 * * *"));
    assert_eq!(cron.yaml["spec"]["timeZone"], Yaml::from("Europe/Paris"));
    assert_eq!(cron.yaml["spec"]["concurrencyPolicy"], Yaml::from("Forbid"));
    let job = r.one("Job");
    assert_eq!(
        job.yaml["metadata"]["annotations"]["helm.sh/hook"],
        Yaml::from("post-install")
    );
    for o in [cron, job] {
        let pod = pod_spec(o);
        assert_eq!(pod["restartPolicy"], Yaml::from("Never"));
        let c = &pod["containers"][0];
        assert_eq!(
            c["args"],
            y("[dispatch, --accounts, /etc/imapfleet/batch/accounts.txt, --job, tenant-a, --skip-bad-lines]")
        );
        assert_eq!(
            c["volumeMounts"][0]["mountPath"],
            Yaml::from("/etc/imapfleet/batch")
        );
        let secret_name = pod["volumes"][0]["secret"]["secretName"].as_str().unwrap();
        let batch = r
            .of_kind("Secret")
            .into_iter()
            .find(|s| s.name() == secret_name)
            .expect("the batch Secret is rendered");
        let content = batch.yaml["data"]["accounts.txt"].as_str().unwrap();
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(content)
            .unwrap();
        assert!(String::from_utf8(decoded)
            .unwrap()
            .contains("imap.old.example;alice;pw1;imap.new.example;alice;pw2;"));
        // The dispatcher has the same broker, Redis and key as the workers.
        assert!(env_of(c).contains_key("IMAPFLEET_SECRET_KEY"));
    }

    let notes = &r.files["imapfleet/templates/NOTES.txt"];
    assert!(!notes.contains("WARNING"), "{notes}");
    assert!(
        notes.contains("create job --from=cronjob/tenant-a-imapfleet-delta"),
        "{notes}"
    );

    let sm = r.one("ServiceMonitor");
    assert_eq!(
        sm.yaml["metadata"]["labels"]["release"],
        Yaml::from("kube-prometheus-stack")
    );
    // The workers' series carry `imapfleet_job`, not `job`: nothing to honour, the scrape job stays.
    assert_eq!(
        sm.yaml["spec"]["endpoints"][0]["honorLabels"],
        Yaml::Bool(false)
    );

    let secret = r
        .of_kind("Secret")
        .into_iter()
        .find(|s| s.name() == "tenant-a-imapfleet-secrets")
        .unwrap();
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.yaml["data"]["secret-key"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(key).unwrap(), HEX_KEY);
}

#[test]
fn existing_secrets_hpa_and_configmap_batch() {
    let r = render(&scenarios()[2]);
    let k = kinds(&r);
    assert_eq!(k.get("Secret"), None, "every Secret is the operator's");
    assert_eq!(k.get("ServiceAccount"), None);
    assert_eq!(k.get("Service"), None);
    assert_eq!(k.get("HorizontalPodAutoscaler"), Some(&1));
    let d = r.one("Deployment");
    assert!(d.yaml["spec"].get("replicas").is_none());
    let pod = pod_spec(d);
    assert_eq!(pod["serviceAccountName"], Yaml::from("migration"));
    for (_, e) in env_of(&pod["containers"][0]) {
        if let Some(name) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
            assert_eq!(name, "mail-fleet-credentials");
        }
    }
    let hpa = r.one("HorizontalPodAutoscaler");
    assert_eq!(
        hpa.yaml["spec"]["scaleTargetRef"]["name"],
        Yaml::from(d.name())
    );
    let m = &hpa.yaml["spec"]["metrics"][0]["external"];
    assert_eq!(m["metric"]["name"], Yaml::from("imapfleet_queue_depth"));
    assert_eq!(m["target"]["averageValue"], Yaml::from("50"));
    assert_eq!(
        r.one("PodDisruptionBudget").yaml["spec"]["maxUnavailable"],
        Yaml::from("25%")
    );
    let cron = r.one("CronJob");
    let pod = pod_spec(cron);
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        Yaml::from("tenant-b-accounts")
    );
    assert_eq!(
        pod["containers"][0]["args"][2],
        Yaml::from("/etc/imapfleet/batch/accounts.csv")
    );
    assert_eq!(r.one("Job").name(), "tenant-b-imapfleet-initial");
}

#[test]
fn overrides_and_set_flags_apply() {
    let r = render(&scenarios()[3]);
    let d = r.one("Deployment");
    assert_eq!(d.name(), "mailmove-worker");
    assert_eq!(d.yaml["spec"]["replicas"], Yaml::from(7));
    assert_eq!(pod_spec(d)["hostNetwork"], Yaml::Bool(true));
    assert_eq!(
        pod_spec(d)["dnsPolicy"],
        Yaml::from("ClusterFirstWithHostNet")
    );
    assert!(r.of_kind("Job").is_empty(), "initial pass disabled");
    assert!(r.of_kind("PodDisruptionBudget").is_empty());
    let cron = r.one("CronJob");
    assert_eq!(cron.name(), "mailmove-delta");
    assert_eq!(cron.yaml["spec"]["suspend"], Yaml::Bool(true));
    assert_eq!(
        pod_spec(cron)["volumes"][0]["secret"]["secretName"],
        Yaml::from("mailmove-accounts")
    );
}

/// Kubernetes limits that the OpenAPI schemas do not carry.
#[test]
fn names_and_labels_fit_kubernetes_limits() {
    let dns_label = regex::Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").unwrap();
    let dns_subdomain = regex::Regex::new(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$").unwrap();
    let label_value = regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap();
    for s in scenarios() {
        let r = render(&s);
        for o in &r.objects {
            let name = o.name();
            let limit = match o.kind() {
                "CronJob" => 52,
                "Service" | "Deployment" | "Job" => 63,
                _ => 253,
            };
            assert!(
                name.len() <= limit,
                "[{}] {} {name}: {} > {limit} characters",
                s.name,
                o.kind(),
                name.len()
            );
            if o.kind() == "Service" {
                assert!(dns_label.is_match(name), "[{}] Service name {name}", s.name);
            } else {
                assert!(
                    dns_subdomain.is_match(name),
                    "[{}] {} name {name}",
                    s.name,
                    o.kind()
                );
            }
            let mut labels = str_map(&o.yaml["metadata"]["labels"]);
            labels.extend(pod_labels(o));
            for (k, v) in labels {
                assert!(
                    v.len() <= 63 && label_value.is_match(&v),
                    "[{}] {} {name}: label {k}={v:?}",
                    s.name,
                    o.kind()
                );
            }
        }
    }
}

/// What a cluster would only find at run time: selectors that select nothing, a Secret key or
/// ConfigMap that is not there, a port name that no container has.
#[test]
fn references_between_objects_resolve() {
    for s in scenarios() {
        let r = render(&s);
        let values = &r.values;
        let existing_secret = values["secret"]["existingSecret"].as_str().unwrap_or("");
        let existing_batch: BTreeSet<&str> = [
            values["batch"]["existingSecret"].as_str().unwrap_or(""),
            values["batch"]["existingConfigMap"].as_str().unwrap_or(""),
        ]
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
        let secrets: BTreeMap<&str, &Object> = r
            .of_kind("Secret")
            .into_iter()
            .map(|o| (o.name(), o))
            .collect();
        let configmaps: BTreeMap<&str, &Object> = r
            .of_kind("ConfigMap")
            .into_iter()
            .map(|o| (o.name(), o))
            .collect();
        let workloads: Vec<&Object> = r
            .objects
            .iter()
            .filter(|o| matches!(o.kind(), "Deployment" | "Job" | "CronJob"))
            .collect();

        for w in &workloads {
            let pod = pod_spec(w);
            let labels = pod_labels(w);
            if w.kind() == "Deployment" {
                let sel = str_map(&w.yaml["spec"]["selector"]["matchLabels"]);
                assert!(subset(&sel, &labels), "[{}] Deployment selector", s.name);
            }
            let sa = pod["serviceAccountName"].as_str().unwrap();
            if values["serviceAccount"]["create"].as_bool() == Some(true) {
                assert!(
                    r.of_kind("ServiceAccount").iter().any(|o| o.name() == sa),
                    "[{}] ServiceAccount {sa}",
                    s.name
                );
            }
            for c in pod["containers"].as_sequence().unwrap() {
                for (name, e) in env_of(c) {
                    let Some(sk) = e["valueFrom"]["secretKeyRef"].as_mapping() else {
                        continue;
                    };
                    let sname = sk["name"].as_str().unwrap();
                    let key = sk["key"].as_str().unwrap();
                    if sname == existing_secret {
                        continue;
                    }
                    let sec = secrets.get(sname).unwrap_or_else(|| {
                        panic!("[{}] {name}: Secret {sname} not rendered", s.name)
                    });
                    assert!(
                        sec.yaml["data"].get(key).is_some(),
                        "[{}] {name}: Secret {sname} has no key {key}",
                        s.name
                    );
                }
                for ef in c["envFrom"].as_sequence().into_iter().flatten() {
                    let cm = ef["configMapRef"]["name"].as_str().unwrap();
                    assert!(
                        configmaps.contains_key(cm),
                        "[{}] envFrom ConfigMap {cm}",
                        s.name
                    );
                }
                let ports: BTreeSet<&str> = c["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                for probe in ["livenessProbe", "readinessProbe"] {
                    if let Some(p) = c[probe]["httpGet"]["port"].as_str() {
                        assert!(ports.contains(p), "[{}] {probe} port {p}", s.name);
                    }
                }
                let mounts: BTreeSet<&str> = c["volumeMounts"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .map(|m| m["name"].as_str().unwrap())
                    .collect();
                let vols: BTreeSet<&str> = pod["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .map(|v| v["name"].as_str().unwrap())
                    .collect();
                assert!(
                    mounts.is_subset(&vols),
                    "[{}] volume mounts {mounts:?}",
                    s.name
                );
            }
            // The batch volume (the others are the operator's extraVolumes or scratch space).
            for v in pod["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|v| v["name"] == "batch")
            {
                let (name, key_holder) = if let Some(n) = v["secret"]["secretName"].as_str() {
                    (n, secrets.get(n))
                } else if let Some(n) = v["configMap"]["name"].as_str() {
                    (n, configmaps.get(n))
                } else {
                    continue;
                };
                if existing_batch.contains(name) {
                    continue;
                }
                let holder = key_holder
                    .unwrap_or_else(|| panic!("[{}] volume source {name} not rendered", s.name));
                let key = values["batch"]["key"].as_str().unwrap();
                assert!(
                    holder.yaml["data"].get(key).is_some(),
                    "[{}] {name} lacks {key}",
                    s.name
                );
            }
        }

        let deployment = r.one("Deployment");
        let worker_labels = pod_labels(deployment);
        let worker_ports: BTreeSet<String> = pod_spec(deployment)["containers"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        for svc in r.of_kind("Service") {
            let sel = str_map(&svc.yaml["spec"]["selector"]);
            assert!(
                !sel.is_empty() && subset(&sel, &worker_labels),
                "[{}] Service selector",
                s.name
            );
            for p in svc.yaml["spec"]["ports"].as_sequence().unwrap() {
                assert!(worker_ports.contains(p["targetPort"].as_str().unwrap()));
            }
        }
        for pdb in r.of_kind("PodDisruptionBudget") {
            let sel = str_map(&pdb.yaml["spec"]["selector"]["matchLabels"]);
            assert!(subset(&sel, &worker_labels), "[{}] PDB selector", s.name);
            // A Job's pods must not count against the workers' budget.
            for w in &workloads {
                if w.kind() != "Deployment" {
                    assert!(
                        !subset(&sel, &pod_labels(w)),
                        "[{}] PDB selects {}",
                        s.name,
                        w.name()
                    );
                }
            }
        }
        for sm in r.of_kind("ServiceMonitor") {
            let sel = str_map(&sm.yaml["spec"]["selector"]["matchLabels"]);
            let svc = r
                .of_kind("Service")
                .into_iter()
                .find(|svc| subset(&sel, &str_map(&svc.yaml["metadata"]["labels"])))
                .unwrap_or_else(|| panic!("[{}] the ServiceMonitor selects no Service", s.name));
            let port = sm.yaml["spec"]["endpoints"][0]["port"].as_str().unwrap();
            assert!(svc.yaml["spec"]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["name"].as_str() == Some(port)));
        }
        for so in r.of_kind("ScaledObject") {
            assert_eq!(
                so.yaml["spec"]["scaleTargetRef"]["name"].as_str(),
                Some(deployment.name())
            );
            let auth = so.yaml["spec"]["triggers"][0]["authenticationRef"]["name"]
                .as_str()
                .unwrap();
            let ta = r
                .of_kind("TriggerAuthentication")
                .into_iter()
                .find(|t| t.name() == auth)
                .unwrap();
            let st = &ta.yaml["spec"]["secretTargetRef"][0];
            let sname = st["name"].as_str().unwrap();
            if sname != existing_secret {
                assert!(secrets[sname].yaml["data"]
                    .get(st["key"].as_str().unwrap())
                    .is_some());
            }
        }
    }
}

#[test]
fn contradictory_values_fail_like_helm_fail() {
    let cases = [
        (
            "autoscaling: {keda: {enabled: true}, hpa: {enabled: true}}",
            "at most one of keda and hpa",
        ),
        (
            "batch: {existingSecret: a, existingConfigMap: b}",
            "not both",
        ),
        (
            "batch: {content: x, existingSecret: a}",
            "exclude each other",
        ),
        (
            "autoscaling: {minReplicas: 5, maxReplicas: 2}",
            "minReplicas is above maxReplicas",
        ),
    ];
    for (o, msg) in cases {
        let err = render_with(&[o]).expect_err(o);
        assert!(err.contains(msg), "{o}: {err}");
    }
}

#[test]
fn config_changes_roll_the_workers() {
    let checksum = |r: &Rendered| {
        r.one("Deployment").yaml["spec"]["template"]["metadata"]["annotations"].clone()
    };
    let a = checksum(&render_with(&[]).unwrap());
    let b = checksum(&render_with(&["config: {RUST_LOG: debug}"]).unwrap());
    let c = checksum(&render_with(&["secret: {redisUrl: \"redis://r:6379\"}"]).unwrap());
    assert_ne!(a["checksum/config"], b["checksum/config"]);
    assert_eq!(a["checksum/secret"], b["checksum/secret"]);
    assert_ne!(a["checksum/secret"], c["checksum/secret"]);
    assert_eq!(
        a,
        checksum(&render_with(&[]).unwrap()),
        "rendering is deterministic"
    );
}

#[test]
fn rendered_text_has_no_go_printing_artifacts() {
    let bad = regex::Regex::new(r"map\[|<nil>|%!|:\s+nil\s*$|\[\]interface|\bNoValue\b").unwrap();
    for s in scenarios() {
        let r = render(&s);
        for (file, text) in &r.files {
            for (i, line) in text.lines().enumerate() {
                assert!(!bad.is_match(line), "[{}] {file}:{}: {line}", s.name, i + 1);
            }
        }
    }
}

#[test]
fn the_prometheus_rule_is_the_rules_file() {
    let r = render(&scenarios()[1]);
    let rule = r.one("PrometheusRule");
    let file: Yaml = serde_yaml::from_str(
        &std::fs::read_to_string(
            deploy_tests::workspace_root().join("deploy/prometheus/imapfleet-alerts.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rule.yaml["spec"]["groups"], file["groups"]);
}

/// What `helm lint` checks of Chart.yaml, and the chart's appVersion following the binary's version.
#[test]
fn chart_metadata_is_what_helm_expects() {
    let chart = Chart::imapfleet();
    let m = &chart.metadata;
    assert_eq!(m["apiVersion"], Yaml::from("v2"));
    assert_eq!(m["name"], Yaml::from("imapfleet"));
    assert_eq!(
        chart.dir.file_name().unwrap().to_str().unwrap(),
        "imapfleet",
        "the directory is named like the chart"
    );
    let semver =
        regex::Regex::new(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
            .unwrap();
    assert!(semver.is_match(m["version"].as_str().unwrap()));
    assert_eq!(m["type"], Yaml::from("application"));
    // appVersion is the image tag by default: the workspace's version.
    let cargo = std::fs::read_to_string(deploy_tests::workspace_root().join("Cargo.toml")).unwrap();
    let version = regex::Regex::new(r#"(?m)^version = "([^"]+)""#)
        .unwrap()
        .captures(&cargo)
        .expect("workspace version")[1]
        .to_string();
    assert_eq!(m["appVersion"].as_str(), Some(version.as_str()));
    for (name, _) in &chart.templates {
        let ok = [".yaml", ".tpl", ".txt"].iter().any(|e| name.ends_with(e));
        assert!(ok, "unexpected file in templates/: {name}");
    }
}
