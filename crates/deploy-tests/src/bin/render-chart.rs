//! `helm template` stand-in for the image test and for looking at the chart's output:
//!
//!     cargo run -p deploy-tests --bin render-chart -- [--name NAME] [--namespace NS] [-f values.yaml]...
//!         [--set key=value]... [--set-file key=path]... [--kinds Deployment,ConfigMap,Secret] [--chart DIR]
//!         [--for-podman] [--json]
//!
//! `--json`: one object per line as JSON instead of a YAML stream.
//!
//! Renders with the same engine and Helm functions as the tests and prints the objects as one YAML stream.
//!
//! `--for-podman`: podman 4.3's `kube play` refuses container ports in a pod on the host network
//! ("PortMappings can only be used with Bridge or slirp4netns networking"), so for such pods the
//! container `ports` are dropped and probes that name a port get its number. Nothing else changes.

use anyhow::{anyhow, bail, Context, Result};
use deploy_tests::{nest, set_value, Chart, Release};

fn main() -> Result<()> {
    let mut release = Release::default();
    let mut overrides = Vec::new();
    let mut kinds: Option<Vec<String>> = None;
    let mut chart_dir = deploy_tests::chart_dir();
    let mut for_podman = false;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--name" => release.name = val()?,
            "--namespace" | "-n" => release.namespace = val()?,
            "-f" | "--values" => {
                let p = val()?;
                let text = std::fs::read_to_string(&p).with_context(|| p.clone())?;
                overrides.push(serde_yaml::from_str(&text).with_context(|| p.clone())?);
            }
            "--set" => overrides.push(set_value(&val()?)?),
            "--set-file" => {
                let v = val()?;
                let (k, p) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--set-file key=path"))?;
                let text = std::fs::read_to_string(p).with_context(|| p.to_string())?;
                overrides.push(nest(k, serde_yaml::Value::from(text)));
            }
            "--kinds" => kinds = Some(val()?.split(',').map(str::to_string).collect()),
            "--chart" => chart_dir = val()?.into(),
            "--upgrade" => release.is_install = false,
            "--for-podman" => for_podman = true,
            "--json" => json = true,
            other => bail!("unknown argument {other}"),
        }
    }
    let chart = Chart::load(&chart_dir)?;
    let mut rendered = chart.render(&overrides, &release)?;
    if let Some(kinds) = kinds {
        rendered
            .objects
            .retain(|o| kinds.iter().any(|k| k == o.kind()));
    }
    if for_podman {
        for o in &mut rendered.objects {
            podman_host_network(&mut o.yaml);
        }
    }
    if json {
        for o in &rendered.objects {
            println!(
                "{}",
                serde_json::to_string(&deploy_tests::yaml_to_json(&o.yaml))?
            );
        }
    } else {
        print!("{}", rendered.to_yaml_stream());
    }
    Ok(())
}

/// See `--for-podman` above.
fn podman_host_network(obj: &mut serde_yaml::Value) {
    let Some(pod) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
    else {
        return;
    };
    if pod.get("hostNetwork").and_then(|h| h.as_bool()) != Some(true) {
        return;
    }
    let Some(containers) = pod.get_mut("containers").and_then(|c| c.as_sequence_mut()) else {
        return;
    };
    for c in containers {
        let Some(m) = c.as_mapping_mut() else {
            continue;
        };
        let ports: Vec<(String, serde_yaml::Value)> = m
            .remove("ports")
            .and_then(|p| p.as_sequence().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["containerPort"].clone())))
            .collect();
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(http) = m.get_mut(probe).and_then(|p| p.get_mut("httpGet")) else {
                continue;
            };
            let named = http["port"].as_str().map(str::to_string);
            if let Some(name) = named {
                if let Some((_, number)) = ports.iter().find(|(n, _)| *n == name) {
                    http["port"] = number.clone();
                }
            }
        }
    }
}
