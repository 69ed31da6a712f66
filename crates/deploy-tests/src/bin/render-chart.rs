//! `helm template` stand-in for the image test and for looking at the chart's output:
//!
//!     cargo run -p deploy-tests --bin render-chart -- [--name NAME] [--namespace NS] [-f values.yaml]...
//!         [--set key=value]... [--set-file key=path]... [--kinds Deployment,ConfigMap,Secret] [--chart DIR]
//!
//! Renders with the same engine and Helm functions as the tests and prints the objects as one YAML stream.

use anyhow::{anyhow, bail, Context, Result};
use deploy_tests::{nest, set_value, Chart, Release};

fn main() -> Result<()> {
    let mut release = Release::default();
    let mut overrides = Vec::new();
    let mut kinds: Option<Vec<String>> = None;
    let mut chart_dir = deploy_tests::chart_dir();
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
    print!("{}", rendered.to_yaml_stream());
    Ok(())
}
