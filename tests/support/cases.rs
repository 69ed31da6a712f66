//! The bug-report cases (`../shared/cases/BR-NN/`) as fixtures for the lab: load a `case.toml`,
//! start the Dovecot instance of each host's profile (`scripts/lab.sh profile`), seed it as the case
//! says, and read mailboxes back for the checks.
//!
//! The case files are descriptive, not a frozen schema (see the cases' README); this loader reads
//! the keys the stock-Dovecot cases use:
//! - `[hostN] profile`, `env = { HOST1_SEP = "/", TZ = "..." }`, `dovecot_overrides = [...]`;
//! - `[hostN] folders` (wire names, created empty or filled from `hostN/<dir>/*.eml`, see
//!   [`Case::folder_files`]) and `folders_wire`;
//! - `[[hostN.message]]` with `folder`, `file`, `flags`, `internaldate` (absolute IMAP date-time or
//!   relative to now, `-7d+2h`) and `generate_body = { line, lines }`.
//!
//! Each host gets its own instance per distinct profile/overrides/env, shared by every test that asks
//! for the same one; tests keep apart by using distinct users (user0100..user0199 for the cases).
//!
//! A test file includes this module with `#[path = "support/cases.rs"] mod cases;` (it needs the
//! `toml` dev-dependency, which the support library cannot use).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use imapfleet_imap::{AppendRequest, AuthMethod, Endpoint, Secret, Security, Session};
use sha2::{Digest, Sha256};

use imapfleet_tests::root;

/// Where the cases live: `$IMAPFLEET_CASES`, else `<project>/../shared/cases`.
pub fn cases_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("IMAPFLEET_CASES") {
        return Some(PathBuf::from(p));
    }
    let p = root().join("../shared/cases");
    p.join("README.md").exists().then_some(p)
}

/// One loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub dir: PathBuf,
    pub toml: toml::Table,
}

impl Case {
    /// Load `BR-NN`, or `None` with a skip note when the cases are not present.
    pub fn load(id: &str) -> Option<Case> {
        let Some(root) = cases_dir() else {
            eprintln!(
                "SKIP {id}: no bug-report cases (set IMAPFLEET_CASES or put them in ../shared/cases)"
            );
            return None;
        };
        let dir = root.join(id);
        let text = std::fs::read_to_string(dir.join("case.toml"))
            .unwrap_or_else(|e| panic!("{id}/case.toml: {e}"));
        let toml: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{id}/case.toml: {e}"));
        Some(Case {
            id: id.to_string(),
            dir,
            toml,
        })
    }

    /// The table at a dotted path (`expected.host2`), empty when absent.
    pub fn table(&self, path: &str) -> toml::Table {
        let mut t = &self.toml;
        for part in path.split('.') {
            match t.get(part).and_then(toml::Value::as_table) {
                Some(next) => t = next,
                None => return toml::Table::new(),
            }
        }
        t.clone()
    }

    /// The value at a dotted path.
    pub fn value(&self, path: &str) -> Option<toml::Value> {
        let (parent, key) = match path.rsplit_once('.') {
            Some((p, k)) => (self.table(p), k),
            None => (self.toml.clone(), path),
        };
        parent.get(key).cloned()
    }

    /// Bytes of a case file (path relative to the case directory).
    pub fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(rel)).unwrap_or_else(|e| panic!("{}/{rel}: {e}", self.id))
    }

    /// The host table (`host1`, `host2`) as a [`HostSpec`].
    pub fn host(&self, name: &str) -> HostSpec {
        let t = self.table(name);
        let env = t.get("env").and_then(toml::Value::as_table);
        let env_str = |k: &str| {
            env.and_then(|e| e.get(k))
                .and_then(toml::Value::as_str)
                .map(String::from)
        };
        let mut folders = strings(t.get("folders"));
        folders.extend(strings(t.get("folders_wire")));
        let now = Utc::now();
        let messages = t
            .get("message")
            .and_then(toml::Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|m| {
                        let m = m.as_table().expect("[[hostN.message]] is a table");
                        self.seed_message(m, now)
                    })
                    .collect()
            })
            .unwrap_or_default();
        HostSpec {
            profile: t
                .get("profile")
                .and_then(toml::Value::as_str)
                .unwrap_or(if name == "host1" {
                    "lab-host1"
                } else {
                    "lab-host2"
                })
                .to_string(),
            sep: env_str("HOST1_SEP").or_else(|| env_str("HOST2_SEP")),
            tz: env_str("TZ"),
            overrides: strings(t.get("dovecot_overrides")),
            folders,
            messages,
        }
    }

    fn seed_message(&self, m: &toml::Table, now: DateTime<Utc>) -> SeedMessage {
        let file = m
            .get("file")
            .and_then(toml::Value::as_str)
            .expect("message.file");
        let mut body = self.file(file);
        if let Some(g) = m.get("generate_body").and_then(toml::Value::as_table) {
            let line = g.get("line").and_then(toml::Value::as_str).unwrap_or("x");
            let lines = g
                .get("lines")
                .and_then(toml::Value::as_integer)
                .unwrap_or(1);
            for _ in 0..lines {
                body.extend_from_slice(line.as_bytes());
                body.extend_from_slice(b"\r\n");
            }
        }
        SeedMessage {
            folder: m
                .get("folder")
                .and_then(toml::Value::as_str)
                .unwrap_or("INBOX")
                .to_string(),
            file: file.to_string(),
            body,
            flags: strings(m.get("flags")),
            internaldate: m
                .get("internaldate")
                .and_then(toml::Value::as_str)
                .map(|s| parse_date(s, now)),
        }
    }

    /// Messages for folders listed without `[[hostN.message]]`: each `hostN/<dir>/*.eml` whose
    /// directory names the folder ([`folder_dir_names`]), in file-name order.
    pub fn folder_files(&self, host: &str, raw_folder: &str, sep: char) -> Vec<(String, Vec<u8>)> {
        let base = self.dir.join(host);
        for dir in folder_dir_names(raw_folder, sep) {
            let d = base.join(&dir);
            if d.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect();
                files.sort();
                return files
                    .into_iter()
                    .map(|p| {
                        let rel = p.strip_prefix(&self.dir).unwrap().display().to_string();
                        (rel, std::fs::read(&p).unwrap())
                    })
                    .collect();
            }
        }
        Vec::new()
    }
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Directory names a folder's messages may be stored under: the wire name itself, the decoded name,
/// and the decoded name made file-system safe (separator and spaces to `_`, accents folded:
/// `Posta inviata/2019` -> `Posta_inviata_2019`, `Attivit&AOA-` -> `Attivita`).
pub fn folder_dir_names(raw: &str, sep: char) -> Vec<String> {
    let decoded = imapfleet_imap::mutf7::decode(raw).unwrap_or_else(|| raw.to_string());
    let safe: String = decoded
        .chars()
        .map(|c| match c {
            c if c == sep || c == ' ' || c == '/' => '_',
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            c => c,
        })
        .collect();
    let mut out = vec![raw.to_string(), decoded, safe];
    out.dedup();
    out
}

/// One message to seed.
#[derive(Debug, Clone)]
pub struct SeedMessage {
    /// Wire name of the folder, with the host's separator.
    pub folder: String,
    /// The case file it came from (`host1/INBOX/1.eml`).
    pub file: String,
    pub body: Vec<u8>,
    pub flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
}

/// What a case says about one host.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub profile: String,
    /// `HOST1_SEP = "/"`: the profile's layout with that separator.
    pub sep: Option<String>,
    /// Time zone the instance runs in.
    pub tz: Option<String>,
    /// Lines appended to the instance's dovecot.conf.
    pub overrides: Vec<String>,
    /// Folders to create (wire names).
    pub folders: Vec<String>,
    pub messages: Vec<SeedMessage>,
}

impl HostSpec {
    /// Start (or reuse) the instance for this host.
    pub fn instance(&self) -> Instance {
        Instance::start(
            &self.profile,
            &self.overrides,
            self.sep.as_deref(),
            self.tz.as_deref(),
        )
    }
}

/// An IMAP date-time as the cases write it: `15-Mar-2023 21:30:00 -0500`, or relative to `now`:
/// `-7d+2h`, `-6d`, `+30m` (units d, h, m, s; terms added in order).
pub fn parse_date(s: &str, now: DateTime<Utc>) -> DateTime<FixedOffset> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z") {
        return d;
    }
    relative_date(s, now).unwrap_or_else(|| panic!("unreadable date {s:?}"))
}

/// `-7d+2h` -> now - 7 days + 2 hours. `None` unless the whole string is such terms.
pub fn relative_date(s: &str, now: DateTime<Utc>) -> Option<DateTime<FixedOffset>> {
    let mut total = chrono::Duration::zero();
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'-' => -1,
            b'+' => 1,
            _ => return None,
        };
        rest = &rest[1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        rest = &rest[digits + 1..];
        let d = match unit {
            'd' => chrono::Duration::days(n),
            'h' => chrono::Duration::hours(n),
            'm' => chrono::Duration::minutes(n),
            's' => chrono::Duration::seconds(n),
            _ => return None,
        };
        total += d * sign;
    }
    // IMAP dates have whole seconds.
    let t = now + total;
    let t = Utc.timestamp_opt(t.timestamp(), 0).single()?;
    Some(t.fixed_offset())
}

/// A Dovecot instance of the lab started for a profile.
#[derive(Debug, Clone)]
pub struct Instance {
    pub port: u16,
    /// `$LAB_DIR/p<PORT>`.
    pub dir: PathBuf,
    pub ca: PathBuf,
}

fn lab_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("IMAPFLEET_LAB_DIR")
            .or_else(|_| std::env::var("LAB_DIR"))
            .unwrap_or_else(|_| "/dev/shm/imapfleet-lab".into()),
    )
}

fn lab_script() -> Command {
    let mut c = Command::new(root().join("scripts/lab.sh"));
    c.env("IMAPFLEET_LAB_DIR", lab_dir());
    c
}

impl Instance {
    /// `scripts/lab.sh profile NAME [OVERRIDES] [SEP=] [TZ=]`: reuses a running instance.
    pub fn start(profile: &str, overrides: &[String], sep: Option<&str>, tz: Option<&str>) -> Self {
        let mut cmd = lab_script();
        cmd.args(["profile", profile]);
        if !overrides.is_empty() {
            // Named by content, so equal overrides share one instance.
            let text = overrides.join("\n") + "\n";
            let digest = hex(&Sha256::digest(text.as_bytes()))[..16].to_string();
            let dir = lab_dir().join("overrides");
            std::fs::create_dir_all(&dir).unwrap();
            let f = dir.join(format!("{digest}.conf"));
            if !f.exists() {
                let tmp = dir.join(format!("{digest}.{}.tmp", std::process::id()));
                std::fs::write(&tmp, &text).unwrap();
                std::fs::rename(&tmp, &f).unwrap();
            }
            cmd.arg(f);
        }
        if let Some(s) = sep {
            cmd.arg(format!("SEP={s}"));
        }
        if let Some(z) = tz {
            cmd.arg(format!("TZ={z}"));
        }
        let out = cmd.output().expect("run scripts/lab.sh profile");
        assert!(
            out.status.success(),
            "lab.sh profile {profile} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("lab.sh profile prints the port");
        let dir = lab_dir().join(format!("p{port}"));
        Instance {
            port,
            ca: lab_dir().join("tls/ca.pem"),
            dir,
        }
    }

    /// The instance's dovecot.conf (for `doveadm -c`).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    /// An endpoint for `user` (password "secret"): STARTTLS, certificate checked.
    pub fn endpoint(&self, user: &str) -> Endpoint {
        self.endpoint_with(user, "secret")
    }

    pub fn endpoint_with(&self, user: &str, password: &str) -> Endpoint {
        Endpoint {
            label: format!("p{}", self.port),
            host: "127.0.0.1".into(),
            port: self.port,
            security: Security::StartTls,
            user: user.into(),
            authuser: None,
            password: Secret::new(password.to_string()),
            auth: AuthMethod::Auto,
            ca_file: Some(self.ca.clone()),
            insecure: false,
            timeout: Duration::from_secs(60),
        }
    }

    /// Delete the user's mail and command log.
    pub fn wipe(&self, user: &str) {
        let st = lab_script()
            .args(["wipe", &self.port.to_string(), user])
            .status()
            .expect("lab.sh wipe");
        assert!(st.success(), "wipe {user} on {} failed", self.port);
    }

    /// `doveadm -c <conf> ARGS`.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .expect("doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn rawlog_dir(&self, user: &str) -> PathBuf {
        self.dir.join("rawlog").join(user)
    }

    /// The commands `user`'s sessions sent since the last [`Instance::clear_commands`] (or wipe),
    /// from Dovecot's raw log: one entry per command line, `UID` prefix kept (`UID STORE 3 ...`).
    /// Only complete sessions are certain to be in it: log out first.
    pub fn commands(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.rawlog_dir(user)) else {
            return out;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "in"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for line in bytes.split(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line);
                // "<unix time> <tag> <command ...>"; literal data lines have no such shape.
                let mut parts = line.splitn(3, ' ');
                let (Some(ts), Some(_tag), Some(cmd)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if ts.contains('.') && ts.replace('.', "").bytes().all(|b| b.is_ascii_digit()) {
                    out.push(cmd.trim_end().to_string());
                }
            }
        }
        out
    }

    /// Everything `user`'s sessions sent since the last clear, literals included, as lossy text.
    pub fn raw_input(&self, user: &str) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.rawlog_dir(user)) {
            let mut files: Vec<PathBuf> = entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "in"))
                .collect();
            files.sort();
            for f in files {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
            }
        }
        out
    }

    /// Bytes the server sent to `user`'s sessions since the last clear (its raw `.out` logs,
    /// which add a timestamp per line: an upper bound).
    pub fn raw_output_len(&self, user: &str) -> u64 {
        std::fs::read_dir(self.rawlog_dir(user))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "out"))
                    .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// How many commands of `user` start with `verb` (case-insensitive; `UID STORE` counts as STORE).
    pub fn count_commands(&self, user: &str, verb: &str) -> usize {
        self.commands(user)
            .iter()
            .filter(|c| command_verb(c).eq_ignore_ascii_case(verb))
            .count()
    }

    /// Forget the commands logged so far (the next [`Instance::commands`] starts from here).
    pub fn clear_commands(&self, user: &str) {
        if let Ok(entries) = std::fs::read_dir(self.rawlog_dir(user)) {
            for e in entries {
                let _ = std::fs::remove_file(e.unwrap().path());
            }
        }
    }
}

/// The verb of a command line: `UID STORE 1 ...` -> `STORE`, `APPEND INBOX ...` -> `APPEND`.
pub fn command_verb(cmd: &str) -> String {
    let mut words = cmd.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    if first == "UID" {
        words.next().unwrap_or("").to_ascii_uppercase()
    } else {
        first
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, hex.
pub fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Create `raw` folders (wire names; parents are created by Dovecot as needed, and "already
/// exists" is fine) and APPEND the messages, with their flags and INTERNALDATE, in order.
pub async fn seed(ep: &Endpoint, folders: &[String], messages: &[SeedMessage]) {
    let mut s = Session::connect(ep).await.expect("connect to seed");
    for f in folders {
        if !f.eq_ignore_ascii_case("INBOX") {
            let _ = s.create(f).await;
        }
    }
    for m in messages {
        if !m.folder.eq_ignore_ascii_case("INBOX") {
            let _ = s.create(&m.folder).await;
        }
        s.append(
            &m.folder,
            &[AppendRequest {
                flags: m.flags.clone(),
                internaldate: m.internaldate,
                body: &m.body,
            }],
        )
        .await
        .unwrap_or_else(|e| panic!("seeding {} into {}: {e}", m.file, m.folder));
    }
    s.logout().await;
}

/// One stored message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub uid: u32,
    /// Flags without `\Recent`, in the server's order.
    pub flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
    pub body: Vec<u8>,
}

impl Stored {
    /// Flags sorted case-insensitively, for comparisons.
    pub fn sorted_flags(&self) -> Vec<String> {
        sorted(&self.flags)
    }
}

/// Flags sorted case-insensitively.
pub fn sorted(flags: &[String]) -> Vec<String> {
    let mut f = flags.to_vec();
    f.sort_by_key(|x| x.to_ascii_lowercase());
    f
}

/// Every selectable folder (raw name) with its messages, bodies included, read-only.
pub async fn read_mailbox(ep: &Endpoint) -> BTreeMap<String, Vec<Stored>> {
    let mut s = Session::connect(ep).await.expect("connect to read");
    let mut out = BTreeMap::new();
    for f in s.list().await.expect("LIST") {
        if f.noselect {
            continue;
        }
        let msgs = read_folder_in(&mut s, &f.raw_name).await;
        out.insert(f.raw_name, msgs);
    }
    s.logout().await;
    out
}

/// Raw names of every folder (selectable or not).
pub async fn list_raw(ep: &Endpoint) -> Vec<String> {
    let mut s = Session::connect(ep).await.expect("connect to list");
    let names = s
        .list()
        .await
        .expect("LIST")
        .into_iter()
        .map(|f| f.raw_name)
        .collect();
    s.logout().await;
    names
}

async fn read_folder_in(s: &mut Session, raw: &str) -> Vec<Stored> {
    let info = s.select(raw, true).await.expect("EXAMINE");
    if info.exists == 0 {
        return Vec::new();
    }
    let metas = s.fetch_meta("1:*", &[]).await.expect("FETCH meta");
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    let mut bodies: BTreeMap<u32, Vec<u8>> = s
        .fetch_bodies(&uids)
        .await
        .expect("FETCH bodies")
        .into_iter()
        .collect();
    metas
        .into_iter()
        .map(|m| Stored {
            uid: m.uid,
            flags: m
                .flags
                .into_iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .collect(),
            internaldate: m.internaldate,
            body: bodies.remove(&m.uid).unwrap_or_default(),
        })
        .collect()
}

/// Sorted SHA-256s of bodies: multisets of messages compare equal when these do.
pub fn digests<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut v: Vec<String> = bodies.into_iter().map(sha).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dates() {
        let now = Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0).unwrap();
        let d = relative_date("-7d+2h", now).unwrap();
        assert_eq!(
            d,
            Utc.with_ymd_and_hms(2024, 3, 3, 14, 0, 0)
                .unwrap()
                .fixed_offset()
        );
        assert_eq!(
            relative_date("-8d", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 3, 2, 12, 0, 0)
                .unwrap()
                .fixed_offset()
        );
        assert!(relative_date("7d", now).is_none());
        assert!(relative_date("-7x", now).is_none());
        let abs = parse_date("15-Mar-2023 21:30:00 -0500", now);
        assert_eq!(
            abs.with_timezone(&Utc).to_rfc3339(),
            "2023-03-16T02:30:00+00:00"
        );
    }

    #[test]
    fn folder_dirs() {
        assert!(folder_dir_names("Posta inviata/2019", '/').contains(&"Posta_inviata_2019".into()));
        assert!(folder_dir_names("Attivit&AOA-", '/').contains(&"Attivita".into()));
        assert!(folder_dir_names("INBOX/COMPTA", '/').contains(&"INBOX_COMPTA".into()));
        assert_eq!(folder_dir_names("[Archive].2019", '.')[0], "[Archive].2019");
    }

    #[test]
    fn verbs() {
        assert_eq!(command_verb("UID STORE 1:3 FLAGS (\\Seen)"), "STORE");
        assert_eq!(command_verb("append INBOX (\\Seen) {12}"), "APPEND");
    }
}
