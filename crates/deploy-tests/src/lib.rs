//! Test support for the Kubernetes packaging (no `helm` binary exists on these machines).
//!
//! [`Chart`] renders `helm/imapfleet` the way `helm template` does, with the Go-template engine of the
//! `gtmpl` crate: values are the chart's `values.yaml` coalesced with overrides (maps merge, scalars and
//! lists replace, `null` deletes), every file under `templates/` is parsed into one template set, each
//! non-partial file is executed with `.Values`, `.Release`, `.Chart`, `.Template`, `<no value>` is
//! replaced by an empty string, and the output is split into YAML documents. gtmpl has Go's builtins
//! only, so the few sprig/Helm functions the chart uses are implemented here, with sprig's semantics:
//! `default`, `quote`, `toYaml`, `nindent`, `indent`, `include`, `trunc`, `trimSuffix`, `replace`,
//! `contains`, `b64enc`, `sha256sum`, `fail`. A template that calls anything else fails to parse.
//!
//! [`validate_objects`] hands rendered objects to the Python `kubernetes-validate` package (the
//! Kubernetes OpenAPI schemas, strict mode) and custom resources to schemas kept in `schemas/`.
//! [`metrics`] reads metric names from PromQL expressions, from Prometheus text and from the fleet's
//! metrics source.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use gtmpl::{Context, Func, FuncError, Template, Value};
use serde_yaml::Value as Yaml;
use sha2::Digest as _;

pub mod dashboard;
pub mod metrics;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// `helm/imapfleet` in the workspace.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("helm").join("imapfleet")
}

/// What `helm install NAME --namespace NS` puts in `.Release`.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub revision: u64,
    pub is_install: bool,
}

impl Default for Release {
    fn default() -> Self {
        Release {
            name: "tenant-a".into(),
            namespace: "mail-migration".into(),
            revision: 1,
            is_install: true,
        }
    }
}

/// A chart directory, loaded.
pub struct Chart {
    pub dir: PathBuf,
    /// Chart.yaml.
    pub metadata: Yaml,
    /// values.yaml.
    pub values: Yaml,
    /// values.schema.json, if present.
    pub schema: Option<serde_json::Value>,
    /// Template name (as Helm names it: `<chart>/templates/<file>`) and text, sorted by name.
    pub templates: Vec<(String, String)>,
}

/// One rendered document.
#[derive(Debug, Clone)]
pub struct Object {
    /// The template it came from (`imapfleet/templates/worker-deployment.yaml`).
    pub source: String,
    pub yaml: Yaml,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.yaml["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.yaml["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.yaml["apiVersion"].as_str().unwrap_or("")
    }
}

/// The result of a render.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The coalesced values the templates saw.
    pub values: Yaml,
    /// Template name -> rendered text (NOTES.txt included).
    pub files: BTreeMap<String, String>,
    /// Every non-empty YAML document of the manifests, in file order.
    pub objects: Vec<Object>,
}

impl Rendered {
    /// Objects of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&Object> {
        self.objects.iter().filter(|o| o.kind() == kind).collect()
    }
    /// The one object of `kind`; panics unless there is exactly one.
    pub fn one(&self, kind: &str) -> &Object {
        let v = self.of_kind(kind);
        assert_eq!(v.len(), 1, "expected one {kind}, found {}", v.len());
        v[0]
    }
    /// All objects as one multi-document YAML stream (what `helm template` prints).
    pub fn to_yaml_stream(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n# Source: ");
            out.push_str(&o.source);
            out.push('\n');
            out.push_str(&serde_yaml::to_string(&o.yaml).expect("serialise"));
        }
        out
    }
}

impl Chart {
    pub fn load(dir: impl AsRef<Path>) -> Result<Chart> {
        let dir = dir.as_ref().to_path_buf();
        let metadata: Yaml = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join("Chart.yaml")).context("Chart.yaml")?,
        )?;
        let values: Yaml = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join("values.yaml")).context("values.yaml")?,
        )?;
        let schema = match std::fs::read_to_string(dir.join("values.schema.json")) {
            Ok(s) => Some(serde_json::from_str(&s).context("values.schema.json")?),
            Err(_) => None,
        };
        let chart_name = metadata["name"]
            .as_str()
            .ok_or_else(|| anyhow!("Chart.yaml has no name"))?
            .to_string();
        let mut templates = Vec::new();
        for entry in std::fs::read_dir(dir.join("templates"))? {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            templates.push((
                format!("{chart_name}/templates/{file}"),
                std::fs::read_to_string(&path)?,
            ));
        }
        templates.sort();
        Ok(Chart {
            dir,
            metadata,
            values,
            schema,
            templates,
        })
    }

    /// The chart in this workspace.
    pub fn imapfleet() -> Chart {
        Chart::load(chart_dir()).expect("load helm/imapfleet")
    }

    pub fn name(&self) -> &str {
        self.metadata["name"].as_str().unwrap_or("")
    }

    /// The values the templates see: values.yaml coalesced with each override in turn.
    pub fn coalesced_values(&self, overrides: &[Yaml]) -> Yaml {
        let mut v = self.values.clone();
        for o in overrides {
            merge_values(&mut v, o);
        }
        v
    }

    /// Render like `helm template` (with `--is-upgrade` when `release.is_install` is false).
    pub fn render(&self, overrides: &[Yaml], release: &Release) -> Result<Rendered> {
        let values = self.coalesced_values(overrides);
        let chart_name = self.name().to_string();
        let base_path = format!("{chart_name}/templates");
        let chart = serde_yaml::to_value(BTreeMap::from([
            ("Name", self.metadata["name"].clone()),
            ("Version", self.metadata["version"].clone()),
            ("AppVersion", self.metadata["appVersion"].clone()),
            ("Description", self.metadata["description"].clone()),
            ("KubeVersion", self.metadata["kubeVersion"].clone()),
        ]))?;
        let release_v = serde_yaml::to_value(BTreeMap::from([
            ("Name", Yaml::from(release.name.clone())),
            ("Namespace", Yaml::from(release.namespace.clone())),
            ("Revision", Yaml::from(release.revision)),
            ("IsInstall", Yaml::from(release.is_install)),
            ("IsUpgrade", Yaml::from(!release.is_install)),
            ("Service", Yaml::from("Helm")),
        ]))?;

        let set = Rc::new(TemplateSet {
            sources: self.templates.clone(),
            cache: RefCell::new(HashMap::new()),
        });
        let _guard = CurrentSet::install(set.clone());

        let mut files = BTreeMap::new();
        let mut objects = Vec::new();
        for (name, _) in &self.templates {
            let file = name.rsplit('/').next().unwrap_or(name);
            if file.starts_with('_') {
                continue;
            }
            let mut top = serde_yaml::Mapping::new();
            top.insert("Values".into(), values.clone());
            top.insert("Release".into(), release_v.clone());
            top.insert("Chart".into(), chart.clone());
            top.insert(
                "Template".into(),
                serde_yaml::to_value(BTreeMap::from([
                    ("Name", name.clone()),
                    ("BasePath", base_path.clone()),
                ]))?,
            );
            let ctx = yaml_to_value(&Yaml::Mapping(top));
            let out = set
                .render(name, ctx)
                .map_err(|e| anyhow!("{name}: {e}"))?
                .replace("<no value>", "");
            if file.ends_with(".yaml") || file.ends_with(".yml") {
                for doc in split_documents(&out) {
                    let yaml: Yaml = serde_yaml::from_str(&doc)
                        .map_err(|e| anyhow!("{name}: rendered YAML does not parse: {e}\n{doc}"))?;
                    if yaml.is_null() {
                        continue;
                    }
                    if !yaml.is_mapping() {
                        bail!("{name}: a rendered document is not a mapping:\n{doc}");
                    }
                    objects.push(Object {
                        source: name.clone(),
                        yaml,
                    });
                }
            }
            files.insert(name.clone(), out);
        }
        Ok(Rendered {
            values,
            files,
            objects,
        })
    }
}

/// Split a rendered file on `---` document separators, as Helm does.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
            continue;
        }
        let d = docs.last_mut().unwrap();
        d.push_str(line);
        d.push('\n');
    }
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

/// Helm's coalescing of user values over chart defaults.
pub fn merge_values(base: &mut Yaml, over: &Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                    continue;
                }
                match b.get_mut(k) {
                    Some(existing) if existing.is_mapping() && v.is_mapping() => {
                        merge_values(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Parse a `--set` expression (`a.b.c=value`, comma-free) into an override document. Values are typed
/// as Helm types them: `true`/`false`, integers, `null`, else strings.
pub fn set_value(expr: &str) -> Result<Yaml> {
    let (path, raw) = expr
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {expr}: expected key=value"))?;
    let leaf = match raw {
        "true" => Yaml::Bool(true),
        "false" => Yaml::Bool(false),
        "null" => Yaml::Null,
        s => match s.parse::<i64>() {
            Ok(n) => Yaml::from(n),
            Err(_) => Yaml::from(s),
        },
    };
    Ok(nest(path, leaf))
}

/// `a.b.c` and a leaf value -> `{a: {b: {c: leaf}}}`.
pub fn nest(path: &str, leaf: Yaml) -> Yaml {
    let mut v = leaf;
    for key in path.rsplit('.') {
        let mut m = serde_yaml::Mapping::new();
        m.insert(Yaml::from(key), v);
        v = Yaml::Mapping(m);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The template set and `include`.

struct TemplateSet {
    sources: Vec<(String, String)>,
    /// One parsed Template per entry point (gtmpl executes the tree named like the Template).
    cache: RefCell<HashMap<String, Rc<Template>>>,
}

impl TemplateSet {
    fn template(&self, name: &str) -> Result<Rc<Template>, String> {
        if let Some(t) = self.cache.borrow().get(name) {
            return Ok(t.clone());
        }
        let mut t = Template::with_name(name);
        t.add_funcs(&helm_funcs());
        for (n, text) in &self.sources {
            t.add_template(n.clone(), text.clone())
                .map_err(|e| format!("parse {n}: {e}"))?;
        }
        if !t.tree_set.contains_key(name) {
            return Err(format!("no template named {name:?}"));
        }
        let t = Rc::new(t);
        self.cache.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, String> {
        let t = self.template(name)?;
        t.render(&Context::from(ctx)).map_err(|e| e.to_string())
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<TemplateSet>>> = const { RefCell::new(None) };
}

/// Makes a template set the one `include` sees on this thread, for the guard's lifetime.
struct CurrentSet;

impl CurrentSet {
    fn install(set: Rc<TemplateSet>) -> CurrentSet {
        CURRENT.with(|c| *c.borrow_mut() = Some(set));
        CurrentSet
    }
}

impl Drop for CurrentSet {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

fn helm_funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("default", f_default as Func),
        ("quote", f_quote as Func),
        ("toYaml", f_to_yaml as Func),
        ("nindent", f_nindent as Func),
        ("indent", f_indent as Func),
        ("include", f_include as Func),
        ("trunc", f_trunc as Func),
        ("trimSuffix", f_trim_suffix as Func),
        ("replace", f_replace as Func),
        ("contains", f_contains as Func),
        ("b64enc", f_b64enc as Func),
        ("sha256sum", f_sha256sum as Func),
        ("fail", f_fail as Func),
    ]
}

fn generic(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn exactly(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(())
}

/// Go's `fmt.Sprint` of one value, as sprig's `strval` gives it.
fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn int_arg(name: &str, v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| generic(format!("{name}: not an integer"))),
        Value::String(s) => s
            .parse()
            .map_err(|_| generic(format!("{name}: not an integer: {s}"))),
        _ => Err(generic(format!("{name}: not an integer"))),
    }
}

/// sprig's `empty`: nil, false, 0, "", and empty collections.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Function(_) => false,
    }
}

/// `default DEFAULT GIVEN`: GIVEN unless it is empty.
fn f_default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, given] => Ok(if is_empty(given) {
            d.clone()
        } else {
            given.clone()
        }),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// sprig's `quote`: each non-nil argument as a Go-quoted string, joined by spaces.
fn f_quote(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| go_quote(&strval(v)))
        .collect();
    Ok(Value::from(parts.join(" ")))
}

/// Helm's `toYaml`: the YAML of the value (keys sorted, as sigs.k8s.io/yaml sorts them), without the
/// trailing newline.
fn f_to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toYaml", args, 1)?;
    let y = value_to_yaml(&args[0]);
    let s = serde_yaml::to_string(&y).map_err(|e| generic(format!("toYaml: {e}")))?;
    Ok(Value::from(s.trim_end_matches('\n').to_string()))
}

fn indent_str(n: i64, s: &str) -> String {
    let pad = " ".repeat(n.max(0) as usize);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn f_indent(args: &[Value]) -> Result<Value, FuncError> {
    exactly("indent", args, 2)?;
    Ok(Value::from(indent_str(
        int_arg("indent", &args[0])?,
        &strval(&args[1]),
    )))
}

fn f_nindent(args: &[Value]) -> Result<Value, FuncError> {
    exactly("nindent", args, 2)?;
    Ok(Value::from(format!(
        "\n{}",
        indent_str(int_arg("nindent", &args[0])?, &strval(&args[1]))
    )))
}

fn f_trunc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trunc", args, 2)?;
    let n = int_arg("trunc", &args[0])?;
    let s = strval(&args[1]);
    let out = if n >= 0 {
        if s.len() > n as usize {
            s[..n as usize].to_string()
        } else {
            s
        }
    } else {
        let k = (-n) as usize;
        if s.len() > k {
            s[s.len() - k..].to_string()
        } else {
            s
        }
    };
    Ok(Value::from(out))
}

fn f_trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trimSuffix", args, 2)?;
    let suffix = strval(&args[0]);
    let s = strval(&args[1]);
    Ok(Value::from(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
    ))
}

fn f_replace(args: &[Value]) -> Result<Value, FuncError> {
    exactly("replace", args, 3)?;
    Ok(Value::from(
        strval(&args[2]).replace(&strval(&args[0]), &strval(&args[1])),
    ))
}

/// sprig: `contains SUBSTR STR`.
fn f_contains(args: &[Value]) -> Result<Value, FuncError> {
    exactly("contains", args, 2)?;
    Ok(Value::Bool(strval(&args[1]).contains(&strval(&args[0]))))
}

fn f_b64enc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("b64enc", args, 1)?;
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(strval(&args[0])),
    ))
}

fn f_sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    exactly("sha256sum", args, 1)?;
    Ok(Value::from(hex::encode(sha2::Sha256::digest(
        strval(&args[0]).as_bytes(),
    ))))
}

fn f_fail(args: &[Value]) -> Result<Value, FuncError> {
    exactly("fail", args, 1)?;
    Err(generic(format!("fail: {}", strval(&args[0]))))
}

/// Helm's `include NAME CONTEXT`: the named template's output as a string.
fn f_include(args: &[Value]) -> Result<Value, FuncError> {
    exactly("include", args, 2)?;
    let name = strval(&args[0]);
    let set = CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| generic("include outside a chart render"))?;
    let out = set
        .render(&name, args[1].clone())
        .map_err(|e| generic(format!("include {name:?}: {e}")))?;
    Ok(Value::from(out))
}

// ---------------------------------------------------------------------------------------------
// Values between YAML and gtmpl.

/// YAML (as Helm reads values) to a template value. Non-negative integers become unsigned: gtmpl
/// orders a signed integer below every unsigned one.
pub fn yaml_to_value(y: &Yaml) -> Value {
    match y {
        Yaml::Null => Value::Nil,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Sequence(s) => Value::Array(s.iter().map(yaml_to_value).collect()),
        Yaml::Mapping(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_value(v)))
                .collect(),
        ),
        Yaml::Tagged(t) => yaml_to_value(&t.value),
    }
}

fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A template value back to YAML, map keys sorted.
pub fn value_to_yaml(v: &Value) -> Yaml {
    match v {
        Value::NoValue | Value::Nil => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Yaml::from(u)
            } else if let Some(i) = n.as_i64() {
                Yaml::from(i)
            } else {
                Yaml::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => Yaml::Sequence(a.iter().map(value_to_yaml).collect()),
        Value::Map(m) | Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let mut out = serde_yaml::Mapping::new();
            for (k, v) in sorted {
                out.insert(Yaml::String(k.clone()), value_to_yaml(v));
            }
            Yaml::Mapping(out)
        }
        Value::Function(_) => Yaml::Null,
    }
}

/// YAML to JSON (for schemas).
pub fn yaml_to_json(y: &Yaml) -> serde_json::Value {
    serde_json::to_value(y).expect("YAML with string keys converts to JSON")
}

// ---------------------------------------------------------------------------------------------
// Validation through Python (kubernetes-validate, jsonschema).

/// The Python validator script beside this crate.
pub fn validator_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("validate.py")
}

/// Make sure `python3 -c 'import kubernetes_validate'` works, installing the package with pip when it
/// is missing (CI machines are fresh). Errors when it cannot be had: the schema tests never skip.
pub fn ensure_kubernetes_validate() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
        let import = || {
            ok(Command::new("python3")
                .args(["-c", "import kubernetes_validate, jsonschema"])
                .stderr(Stdio::null()))
        };
        if import() {
            return Ok(());
        }
        eprintln!("deploy-tests: installing kubernetes-validate with pip");
        let installed = ok(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "kubernetes-validate",
        ]));
        if installed && import() {
            Ok(())
        } else {
            Err("python3 -m pip install kubernetes-validate failed".into())
        }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One request to validate.py.
#[derive(serde::Serialize)]
struct Request<'a> {
    kubernetes_versions: &'a [&'a str],
    objects: Vec<serde_json::Value>,
    custom_schemas: serde_json::Value,
    instances: Vec<(serde_json::Value, serde_json::Value)>,
}

/// What validate.py found: one list of error strings per object / instance (empty: valid).
#[derive(serde::Deserialize, Debug)]
pub struct Report {
    pub objects: Vec<Vec<String>>,
    pub instances: Vec<Vec<String>>,
}

fn run_validator(req: &Request) -> Result<Report> {
    ensure_kubernetes_validate()?;
    let mut child = Command::new("python3")
        .arg(validator_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("python3 validate.py")?;
    {
        let stdin = child.stdin.as_mut().unwrap();
        serde_json::to_writer(&mut *stdin, req)?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "validate.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The schemas of the custom resources the chart can render (KEDA, Prometheus Operator), by
/// `apiVersion/kind`.
pub fn custom_schemas() -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut m = serde_json::Map::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let key = schema["x-kubernetes-group-version-kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no x-kubernetes-group-version-kind", path.display()))
            .to_string();
        m.insert(key, schema);
    }
    serde_json::Value::Object(m)
}

/// Validate objects against the Kubernetes schemas of each version (strict: unknown fields are
/// errors); custom resources against [`custom_schemas`]. Returns the errors per object, labelled.
pub fn validate_objects(objects: &[Object], versions: &[&str]) -> Result<Vec<String>> {
    let req = Request {
        kubernetes_versions: versions,
        objects: objects.iter().map(|o| yaml_to_json(&o.yaml)).collect(),
        custom_schemas: custom_schemas(),
        instances: vec![],
    };
    let report = run_validator(&req)?;
    let mut errors = Vec::new();
    for (o, errs) in objects.iter().zip(report.objects) {
        for e in errs {
            errors.push(format!("{} {} ({}): {e}", o.kind(), o.name(), o.source));
        }
    }
    Ok(errors)
}

/// Validate JSON instances against JSON schemas (draft 7, as Helm checks values.schema.json).
pub fn validate_instances(
    pairs: &[(serde_json::Value, serde_json::Value)],
) -> Result<Vec<Vec<String>>> {
    let req = Request {
        kubernetes_versions: &[],
        objects: vec![],
        custom_schemas: serde_json::Value::Object(Default::default()),
        instances: pairs.to_vec(),
    };
    Ok(run_validator(&req)?.instances)
}
