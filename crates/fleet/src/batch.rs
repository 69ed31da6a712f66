//! Batch files: the account pairs of a job.
//!
//! Three forms, told apart by the file name (`.csv`, `.yaml`/`.yml`) or, failing that, by the first
//! line that is not a comment:
//!
//! - **imapsync's**: `host1;user1;password1;host2;user2;password2;[extra options];`, one account a
//!   line, `#` comments, blank lines, CRLF tolerated. The extra options are imapsync's command-line
//!   options (`--ssl1 --port1 993 --exclude "^Junk" --f1f2 "Old=New"`), quoted like a shell would.
//! - **CSV** with a header row naming the columns: `host1,user1,password1,host2,user2,password2`
//!   required, and optional per-account columns named like the options without dashes (`port1`,
//!   `ssl2`, `authuser1`, `folder`, `exclude`, ...), plus `options` holding extra options in
//!   imapsync's syntax (for repeated options).
//! - **YAML**: a list of maps with the CSV's column names.
//!
//! The whole file is checked before anything is used ([`parse_batch`]): every bad line is reported
//! with its line number and why (missing field, bad port, unknown option, duplicate account pair...).
//! Passwords are held in [`Secret`]s and never appear in an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use imapfleet_imap::{Secret, Security};

/// Which form a batch file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    Imapsync,
    Csv,
    Yaml,
}

impl BatchFormat {
    /// From the file name, else from the content: a first meaningful line with `host1` and commas
    /// but no `;` is a CSV header, one starting with `-` is YAML.
    pub fn detect(path: Option<&Path>, text: &str) -> BatchFormat {
        let ext = path
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => return BatchFormat::Csv,
            Some("yaml" | "yml") => return BatchFormat::Yaml,
            _ => {}
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match first {
            Some(l) if l.starts_with('-') || l == "---" => BatchFormat::Yaml,
            Some(l)
                if l.contains(',')
                    && !l.contains(';')
                    && l.to_ascii_lowercase().contains("host1") =>
            {
                BatchFormat::Csv
            }
            _ => BatchFormat::Imapsync,
        }
    }
}

/// Connection options of one side of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideSpec {
    pub host: String,
    /// `None`: 143, or 993 with implicit TLS.
    pub port: Option<u16>,
    pub user: String,
    pub password: Secret,
    /// `None`: STARTTLS (the default).
    pub security: Option<Security>,
    pub authuser: Option<String>,
    /// `LOGIN` or `PLAIN` (upper case); `None`: PLAIN if offered, else LOGIN.
    pub authmech: Option<String>,
    pub cafile: Option<PathBuf>,
    pub insecure: bool,
    pub sep: Option<char>,
    pub prefix: Option<String>,
}

impl SideSpec {
    fn new(host: String, user: String, password: String) -> SideSpec {
        SideSpec {
            host,
            port: None,
            user,
            password: Secret::new(password),
            security: None,
            authuser: None,
            authmech: None,
            cafile: None,
            insecure: false,
            sep: None,
            prefix: None,
        }
    }

    /// The port in use (the default for the security when none was given).
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Some(Security::Tls) => 993,
            _ => 143,
        })
    }
}

/// Per-account sync options (the subset of `imapfleet sync`'s that make sense per account).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountOptions {
    pub folders: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub f1f2: Vec<(String, String)>,
    pub regextrans2: Vec<String>,
    pub subfolder2: Option<String>,
    pub automap: bool,
    pub useheader: Vec<String>,
    pub maxsize: Option<u32>,
    pub maxage: Option<f64>,
    pub minage: Option<f64>,
    pub copydeleted: bool,
    pub noresyncflags: bool,
    pub dry: bool,
    pub justfolders: bool,
    pub justlogin: bool,
    pub timeout: Option<u64>,
}

/// One valid account pair of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAccount {
    /// Line of the file it came from (1-based).
    pub line: usize,
    pub side1: SideSpec,
    pub side2: SideSpec,
    pub options: AccountOptions,
}

impl BatchAccount {
    /// What makes two lines the same account pair: both hosts (case-insensitive), ports and users.
    pub fn pair_key(&self) -> (String, u16, String, String, u16, String) {
        (
            self.side1.host.to_ascii_lowercase(),
            self.side1.effective_port(),
            self.side1.user.clone(),
            self.side2.host.to_ascii_lowercase(),
            self.side2.effective_port(),
            self.side2.user.clone(),
        )
    }
}

/// One problem of a batch file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

/// A checked batch: the good accounts and every problem found.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub accounts: Vec<BatchAccount>,
    pub errors: Vec<BatchError>,
}

impl Batch {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Parse and check a whole batch file. `defaults` are extra options (imapsync syntax) applied to
/// every account before its own (e.g. `--cafile1 /etc/ca.pem`); a problem in them is reported as
/// line 0.
pub fn parse_batch(text: &str, format: BatchFormat, defaults: &str) -> Batch {
    let mut batch = Batch::default();
    let default_tokens = match tokenize(defaults) {
        Ok(t) => t,
        Err(e) => {
            batch.errors.push(BatchError {
                line: 0,
                reason: format!("default options: {e}"),
            });
            return batch;
        }
    };
    // Default options are checked once on their own, so that their problems are not blamed on
    // every line of the file.
    if !default_tokens.is_empty() {
        let mut probe = BTreeMap::new();
        for k in ["host1", "user1", "password1", "host2", "user2", "password2"] {
            probe.insert(k.to_string(), "x".to_string());
        }
        if let Err(e) = build_account(probe, &default_tokens) {
            batch.errors.push(BatchError {
                line: 0,
                reason: format!("default options (--defaults): {e}"),
            });
            return batch;
        }
    }
    let rows: Vec<(usize, Result<BatchAccount, String>)> = match format {
        BatchFormat::Imapsync => parse_imapsync(text, &default_tokens),
        BatchFormat::Csv => match parse_csv(text, &default_tokens) {
            Ok(r) => r,
            Err(e) => {
                batch.errors.push(e);
                return batch;
            }
        },
        BatchFormat::Yaml => match parse_yaml(text, &default_tokens) {
            Ok(r) => r,
            Err(e) => {
                batch.errors.push(e);
                return batch;
            }
        },
    };
    let mut seen: HashMap<(String, u16, String, String, u16, String), usize> = HashMap::new();
    for (line, row) in rows {
        match row {
            Ok(mut acct) => match seen.get(&acct.pair_key()) {
                Some(first) => batch.errors.push(BatchError {
                    line,
                    reason: format!(
                        "duplicate account pair {}@{} -> {}@{} (first on line {first})",
                        acct.side1.user, acct.side1.host, acct.side2.user, acct.side2.host
                    ),
                }),
                None => {
                    acct.line = line;
                    seen.insert(acct.pair_key(), line);
                    batch.accounts.push(acct);
                }
            },
            Err(reason) => batch.errors.push(BatchError { line, reason }),
        }
    }
    if batch.accounts.is_empty() && batch.errors.is_empty() {
        batch.errors.push(BatchError {
            line: 0,
            reason: "no account in the batch".into(),
        });
    }
    batch
}

/// Read and check a batch file (format from its name or content).
pub fn read_batch(path: &Path, defaults: &str) -> Result<Batch, std::io::Error> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(parse_batch(
        text,
        BatchFormat::detect(Some(path), text),
        defaults,
    ))
}

// ---------------------------------------------------------------------------------------------
// imapsync's form

fn parse_imapsync(text: &str, defaults: &[String]) -> Vec<(usize, Result<BatchAccount, String>)> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = l.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push((line, imapsync_line(trimmed, defaults)));
    }
    out
}

fn imapsync_line(l: &str, defaults: &[String]) -> Result<BatchAccount, String> {
    let mut fields: Vec<&str> = l.split(';').collect();
    // The closing `;` leaves an empty last field.
    if fields.len() > 1 && fields.last().is_some_and(|f| f.trim().is_empty()) {
        fields.pop();
    }
    const NAMES: [&str; 6] = ["host1", "user1", "password1", "host2", "user2", "password2"];
    if fields.len() < 6 {
        let missing: Vec<&str> = NAMES[fields.len()..].to_vec();
        return Err(format!(
            "{} fields, expected host1;user1;password1;host2;user2;password2;[options]; (missing {})",
            fields.len(),
            missing.join(", ")
        ));
    }
    if fields.len() > 7 {
        return Err(format!(
            "{} fields, expected at most 7 (host1;user1;password1;host2;user2;password2;options;): \
             a ';' inside a field is not possible in this form, use CSV",
            fields.len()
        ));
    }
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (name, v) in NAMES.iter().zip(&fields) {
        // Spaces around hosts and users are noise; a password is taken as written.
        let v = if name.starts_with("password") {
            v.to_string()
        } else {
            v.trim().to_string()
        };
        values.insert(name.to_string(), v);
    }
    let extra = fields.get(6).copied().unwrap_or("");
    let mut tokens = defaults.to_vec();
    tokens.extend(tokenize(extra).map_err(|e| format!("options: {e}"))?);
    build_account(values, &tokens)
}

// ---------------------------------------------------------------------------------------------
// CSV and YAML: named columns

type Rows = Vec<(usize, Result<BatchAccount, String>)>;

fn parse_csv(text: &str, defaults: &[String]) -> Result<Rows, BatchError> {
    // Comment lines become blank lines, so that the reader's line numbers are the file's.
    let cleaned: String = text
        .split('\n')
        .map(|l| {
            if l.trim_start().starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(cleaned.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| BatchError {
            line: csv_line(&e),
            reason: format!("CSV header: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let header_line = text
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(1, |i| i + 1);
    check_columns(&headers, header_line)?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_of(&cleaned, p.byte()));
                out.push((line, Err(format!("CSV: {e}"))));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| line_of(&cleaned, p.byte()));
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != headers.len() {
            out.push((
                line,
                Err(format!(
                    "{} fields, the header has {}",
                    rec.len(),
                    headers.len()
                )),
            ));
            continue;
        }
        let values: BTreeMap<String, String> = headers
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_string))
            .collect();
        out.push((line, columns_account(values, defaults)));
    }
    Ok(out)
}

/// 1-based line of the byte at `offset`, skipping the blank lines a record starts after.
fn line_of(text: &str, offset: u64) -> usize {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let mut line = text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1;
    // The reader reports the position before the blank lines it skipped.
    for l in text[offset..].split('\n') {
        if !l.trim().is_empty() {
            break;
        }
        line += 1;
    }
    line
}

fn csv_line(e: &csv::Error) -> usize {
    e.position().map_or(0, |p| p.line() as usize)
}

/// Columns a CSV/YAML batch may have besides the six required ones.
const SIDE_COLUMNS: [&str; 11] = [
    "port", "ssl", "tls", "notls", "authuser", "authmech", "cafile", "insecure", "sep", "prefix",
    "passfile",
];
const ACCOUNT_COLUMNS: [&str; 17] = [
    "folder",
    "include",
    "exclude",
    "f1f2",
    "regextrans2",
    "subfolder2",
    "automap",
    "useheader",
    "maxsize",
    "maxage",
    "minage",
    "copydeleted",
    "noresyncflags",
    "dry",
    "justfolders",
    "justlogin",
    "timeout",
];

fn known_column(c: &str) -> bool {
    if c == "options" || ACCOUNT_COLUMNS.contains(&c) {
        return true;
    }
    match c.strip_suffix('1').or_else(|| c.strip_suffix('2')) {
        Some(base) => ["host", "user", "password"].contains(&base) || SIDE_COLUMNS.contains(&base),
        None => false,
    }
}

fn check_columns(headers: &[String], line: usize) -> Result<(), BatchError> {
    let mut problems = Vec::new();
    for req in ["host1", "user1", "password1", "host2", "user2", "password2"] {
        if !headers.iter().any(|h| h == req) {
            problems.push(format!("missing column {req}"));
        }
    }
    for h in headers {
        if !known_column(h) {
            problems.push(format!("unknown column {h:?}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for h in headers {
        if !seen.insert(h) {
            problems.push(format!("column {h:?} twice"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BatchError {
            line,
            reason: problems.join("; "),
        })
    }
}

/// A row of named columns: the columns become options, then `options` (imapsync syntax) adds more.
fn columns_account(
    mut values: BTreeMap<String, String>,
    defaults: &[String],
) -> Result<BatchAccount, String> {
    let mut tokens = defaults.to_vec();
    let extra = values.remove("options").unwrap_or_default();
    let mut required = BTreeMap::new();
    for (k, v) in values {
        if ["host1", "user1", "password1", "host2", "user2", "password2"].contains(&k.as_str()) {
            let v = if k.starts_with("password") {
                v
            } else {
                v.trim().to_string()
            };
            required.insert(k, v);
            continue;
        }
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match option_kind(&k) {
            Some(OptKind::Flag) => match parse_bool(&v) {
                Some(true) => tokens.push(format!("--{k}")),
                Some(false) => {}
                None => return Err(format!("column {k}: {v:?} is not a yes/no value")),
            },
            Some(OptKind::Value) => {
                tokens.push(format!("--{k}"));
                tokens.push(v);
            }
            None => return Err(format!("unknown column {k:?}")),
        }
    }
    tokens.extend(tokenize(&extra).map_err(|e| format!("options: {e}"))?);
    build_account(required, &tokens)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

fn parse_yaml(text: &str, defaults: &[String]) -> Result<Rows, BatchError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| BatchError {
        line: e.location().map_or(0, |l| l.line()),
        reason: format!("YAML: {e}"),
    })?;
    let list = match doc {
        serde_yaml::Value::Sequence(s) => s,
        serde_yaml::Value::Mapping(mut m) => match m.remove("accounts") {
            Some(serde_yaml::Value::Sequence(s)) => s,
            _ => {
                return Err(BatchError {
                    line: 0,
                    reason: "YAML: expected a list of accounts (or `accounts:` holding one)".into(),
                })
            }
        },
        _ => {
            return Err(BatchError {
                line: 0,
                reason: "YAML: expected a list of accounts".into(),
            })
        }
    };
    // Line of each entry: the lines opening a list item at the list's indentation.
    let starts = yaml_item_lines(text);
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let line = starts.get(i).copied().unwrap_or(0);
        let map = match item {
            serde_yaml::Value::Mapping(m) => m,
            _ => {
                out.push((
                    line,
                    Err("expected a map of host1, user1, password1, ...".into()),
                ));
                continue;
            }
        };
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let mut bad: Option<String> = None;
        for (k, v) in map {
            let Some(k) = k.as_str().map(str::to_ascii_lowercase) else {
                bad = Some("a key is not a string".to_string());
                break;
            };
            if !known_column(&k) {
                bad = Some(format!("unknown key {k:?}"));
                break;
            }
            let v = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Null => String::new(),
                serde_yaml::Value::Sequence(items) if ACCOUNT_COLUMNS.contains(&k.as_str()) => {
                    // Several values of a repeatable option: pass them as options.
                    let mut opts = values.remove("options").unwrap_or_default();
                    for it in items {
                        let Some(s) = it.as_str() else {
                            bad = Some(format!("{k}: list items must be strings"));
                            break;
                        };
                        opts.push_str(&format!(" --{k} {}", quote(s)));
                    }
                    values.insert("options".into(), opts);
                    continue;
                }
                _ => {
                    bad = Some(format!("{k}: expected a plain value"));
                    break;
                }
            };
            if k == "options" {
                let mut opts = values.remove("options").unwrap_or_default();
                opts.push(' ');
                opts.push_str(&v);
                values.insert(k, opts);
            } else {
                values.insert(k, v);
            }
        }
        if let Some(b) = bad {
            out.push((line, Err(b)));
            continue;
        }
        let mut missing = Vec::new();
        for req in ["host1", "user1", "password1", "host2", "user2", "password2"] {
            if !values.contains_key(req) {
                missing.push(req);
            }
        }
        if !missing.is_empty() {
            out.push((line, Err(format!("missing {}", missing.join(", ")))));
            continue;
        }
        out.push((line, columns_account(values, defaults)));
    }
    Ok(out)
}

fn yaml_item_lines(text: &str) -> Vec<usize> {
    let mut indent: Option<usize> = None;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if !(t.starts_with("- ") || t == "-") {
            continue;
        }
        let ind = l.len() - t.len();
        match indent {
            None => {
                indent = Some(ind);
                out.push(i + 1);
            }
            Some(n) if n == ind => out.push(i + 1),
            _ => {}
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptKind {
    Flag,
    Value,
}

/// The kind of option `name` (without dashes), `None` when unknown.
fn option_kind(name: &str) -> Option<OptKind> {
    let side = name.strip_suffix('1').or_else(|| name.strip_suffix('2'));
    if let Some(base) = side {
        match base {
            "ssl" | "tls" | "notls" | "insecure" => return Some(OptKind::Flag),
            "port" | "authuser" | "authmech" | "cafile" | "sep" | "prefix" | "passfile" => {
                return Some(OptKind::Value)
            }
            // regextrans2 / subfolder2 end in 2 but are not side options.
            _ => {}
        }
    }
    match name {
        "automap" | "copydeleted" | "noresyncflags" | "dry" | "justfolders" | "justlogin" => {
            Some(OptKind::Flag)
        }
        "folder" | "include" | "exclude" | "f1f2" | "regextrans2" | "subfolder2" | "useheader"
        | "maxsize" | "maxage" | "minage" | "timeout" => Some(OptKind::Value),
        _ => None,
    }
}

/// Split an option string like a shell would: spaces separate, `"..."` and `'...'` quote, `\`
/// escapes the next character (outside single quotes).
pub fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n) => cur.push(n),
                            None => return Err("unfinished \\ escape".into()),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '\\' => {
                in_token = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("unfinished \\ escape".into()),
                }
            }
            c => {
                in_token = true;
                cur.push(c);
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    Ok(out)
}

/// The six required values and option tokens into a checked account; every problem of the line is
/// reported at once.
fn build_account(
    values: BTreeMap<String, String>,
    tokens: &[String],
) -> Result<BatchAccount, String> {
    let mut problems: Vec<String> = Vec::new();
    let get = |k: &str| values.get(k).cloned().unwrap_or_default();
    for k in ["host1", "user1", "password1", "host2", "user2", "password2"] {
        if get(k).is_empty() {
            problems.push(format!("missing {k}"));
        }
    }
    for k in ["host1", "host2"] {
        let h = get(k);
        if h.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!("{k} {h:?} is not a host name"));
        }
    }
    for k in ["user1", "user2", "password1", "password2"] {
        if get(k).chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            problems.push(format!("{k} holds a control character"));
        }
    }
    let mut s1 = SideSpec::new(get("host1"), get("user1"), get("password1"));
    let mut s2 = SideSpec::new(get("host2"), get("user2"), get("password2"));
    let mut o = AccountOptions::default();
    let mut sec: [Vec<&'static str>; 2] = [Vec::new(), Vec::new()];

    let mut it = tokens.iter().enumerate().peekable();
    while let Some((word, tok)) = it.next() {
        let Some(body) = tok.strip_prefix("--").or_else(|| tok.strip_prefix('-')) else {
            // Never echoed: a ';' inside a password splits it, and its tail lands here.
            problems.push(format!(
                "unexpected text in the options field (word {}, {} characters, not shown: it may be \
                 part of a password; options start with --, and a password cannot hold ';' in this format)",
                word + 1,
                tok.chars().count()
            ));
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v.to_string())),
            None => (body.to_ascii_lowercase(), None),
        };
        if is_secret_option(&name) {
            problems.push(format!(
                "--{name}: secrets do not belong in the options field (a password goes in the line's \
                 password field); its value is not shown"
            ));
            if inline.is_none() && it.peek().is_some_and(|(_, t)| !t.starts_with('-')) {
                it.next();
            }
            continue;
        }
        let Some(kind) = option_kind(&name) else {
            problems.push(format!("unknown option --{name}"));
            continue;
        };
        let value = match (kind, inline) {
            (OptKind::Flag, Some(v)) => match parse_bool(&v) {
                Some(true) => None,
                Some(false) => continue,
                None => {
                    problems.push(format!("--{name}={v}: expected a yes/no value"));
                    continue;
                }
            },
            (OptKind::Flag, None) => None,
            (OptKind::Value, Some(v)) => Some(v),
            (OptKind::Value, None) => match it.next() {
                Some((_, v)) => Some(v.clone()),
                None => {
                    problems.push(format!("--{name} needs a value"));
                    continue;
                }
            },
        };
        let v = value.unwrap_or_default();
        let n = name.chars().last();
        let is_side = matches!(
            name.trim_end_matches(['1', '2']),
            "ssl"
                | "tls"
                | "notls"
                | "insecure"
                | "port"
                | "authuser"
                | "authmech"
                | "cafile"
                | "sep"
                | "prefix"
                | "passfile"
        );
        if is_side {
            let (side, idx) = if n == Some('1') {
                (&mut s1, 0)
            } else {
                (&mut s2, 1)
            };
            let base = &name[..name.len() - 1];
            match base {
                "ssl" => sec[idx].push("ssl"),
                "tls" => sec[idx].push("tls"),
                "notls" => sec[idx].push("notls"),
                "insecure" => side.insecure = true,
                "port" => match v.parse::<u16>() {
                    Ok(p) if p > 0 => side.port = Some(p),
                    _ => problems.push(format!("--{name} {v:?} is not a port (1-65535)")),
                },
                "authuser" => side.authuser = Some(v),
                "authmech" => {
                    let m = v.to_ascii_uppercase();
                    if m == "LOGIN" || m == "PLAIN" {
                        side.authmech = Some(m);
                    } else {
                        problems.push(format!("--{name} {v:?}: expected LOGIN or PLAIN"));
                    }
                }
                "cafile" => side.cafile = Some(PathBuf::from(v)),
                "sep" => {
                    let mut cs = v.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => side.sep = Some(c),
                        _ => problems.push(format!("--{name} {v:?} is not one character")),
                    }
                }
                "prefix" => side.prefix = Some(v),
                "passfile" => problems.push(format!(
                    "--{name}: a batch line carries its password itself (passfiles are per machine)"
                )),
                _ => problems.push(format!("unknown option --{name}")),
            }
            continue;
        }
        match name.as_str() {
            "folder" => o.folders.push(v),
            "include" => push_regex(&mut o.include, &name, v, &mut problems),
            "exclude" => push_regex(&mut o.exclude, &name, v, &mut problems),
            "f1f2" => match v.split_once('=') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => o.f1f2.push((a.into(), b.into())),
                _ => problems.push(format!(
                    "--f1f2 {v:?}: expected \"host1 folder=host2 folder\""
                )),
            },
            "regextrans2" => {
                if regextrans_ok(&v) {
                    o.regextrans2.push(v);
                } else {
                    problems.push(format!(
                        "--regextrans2 {v:?}: expected s/regex/replacement/[flags]"
                    ));
                }
            }
            "subfolder2" => o.subfolder2 = Some(v),
            "automap" => o.automap = true,
            "useheader" => o.useheader.push(v),
            "maxsize" => match v.parse::<u32>() {
                Ok(n) => o.maxsize = Some(n),
                Err(_) => problems.push(format!("--maxsize {v:?} is not a number of bytes")),
            },
            "maxage" | "minage" => match v.parse::<f64>() {
                Ok(d) if d.is_finite() && d >= 0.0 => {
                    if name == "maxage" {
                        o.maxage = Some(d)
                    } else {
                        o.minage = Some(d)
                    }
                }
                _ => problems.push(format!("--{name} {v:?} is not a number of days")),
            },
            "timeout" => match v.parse::<u64>() {
                Ok(t) if t > 0 => o.timeout = Some(t),
                _ => problems.push(format!("--timeout {v:?} is not a number of seconds")),
            },
            "copydeleted" => o.copydeleted = true,
            "noresyncflags" => o.noresyncflags = true,
            "dry" => o.dry = true,
            "justfolders" => o.justfolders = true,
            "justlogin" => o.justlogin = true,
            _ => problems.push(format!("unknown option --{name}")),
        }
    }
    for (idx, side) in [(0usize, &mut s1), (1, &mut s2)] {
        let mut kinds = sec[idx].clone();
        kinds.sort_unstable();
        kinds.dedup();
        let n = idx + 1;
        match kinds.as_slice() {
            [] => {}
            ["ssl"] => side.security = Some(Security::Tls),
            ["tls"] => side.security = Some(Security::StartTls),
            ["notls"] => side.security = Some(Security::Plain),
            _ => problems.push(format!("choose one of --ssl{n}, --tls{n} and --notls{n}")),
        }
        if side.authuser.is_some() && side.authmech.as_deref() == Some("LOGIN") {
            problems.push(format!(
                "--authuser{n} needs PLAIN authentication, not LOGIN"
            ));
        }
    }
    if problems.is_empty() {
        Ok(BatchAccount {
            line: 0,
            side1: s1,
            side2: s2,
            options: o,
        })
    } else {
        let text = problems.join("; ");
        Err(scrub_passwords(
            text,
            &[s1.password.expose(), s2.password.expose()],
        ))
    }
}

/// Names of options that carry a secret (`--password1`, `--passfile2`, `--oauthaccesstoken1`,
/// `--secret-key` ...): never accepted in a batch line's options, and their values never shown.
fn is_secret_option(name: &str) -> bool {
    let n = name.trim_end_matches(['1', '2']);
    n != "passfile"
        && ["pass", "secret", "token", "oauth"]
            .iter()
            .any(|w| n.contains(w))
}

/// Last guard of the rule that a batch error never shows a password: any occurrence of the line's
/// passwords (3 characters or more; shorter ones would mangle every message) is replaced.
fn scrub_passwords(mut text: String, passwords: &[&str]) -> String {
    for p in passwords {
        if p.chars().count() >= 3 && text.contains(p) {
            text = text.replace(p, "(password)");
        }
    }
    text
}

fn push_regex(list: &mut Vec<String>, name: &str, v: String, problems: &mut Vec<String>) {
    match regex::Regex::new(&v) {
        Ok(_) => list.push(v),
        Err(e) => problems.push(format!(
            "--{name} {v:?}: bad regex: {}",
            e.to_string().lines().last().unwrap_or("")
        )),
    }
}

/// `s/x/y/flags` with any delimiter (the mapping checks the regex itself at sync time).
fn regextrans_ok(v: &str) -> bool {
    let mut cs = v.chars();
    if cs.next() != Some('s') {
        return false;
    }
    let Some(d) = cs.next() else { return false };
    if d.is_alphanumeric() || d.is_whitespace() || d == '\\' {
        return false;
    }
    let rest: String = cs.collect();
    // Unescaped delimiters: two more at least (after regex, after replacement).
    let mut n = 0;
    let mut esc = false;
    for c in rest.chars() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == d {
            n += 1;
        }
    }
    n >= 2
}

#[cfg(test)]
mod tests;
