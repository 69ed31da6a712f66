//! Where option values come from, in order of precedence: the command line, then `IMAPFLEET_*`
//! environment variables, then the config file (TOML, flat keys named like the options:
//! `host1 = "imap.example.com"`, `passfile2 = "/run/secrets/pw2"`, `timeout = 60`), then defaults.
//!
//! Passwords: `--passfileN`, `IMAPFLEET_PASSWORDN` or `passwordN` in the config file. `--passwordN` on the
//! command line works but warns, since any local user can read a process's arguments.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use config::{Config, Environment, File, FileFormat};
use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};
use serde::Deserialize;

/// The connection options of one side, all optional, before merging.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SideValues {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub passfile: Option<PathBuf>,
    pub authuser: Option<String>,
    pub authmech: Option<String>,
    pub oauthaccesstoken: Option<PathBuf>,
    pub ssl: Option<bool>,
    pub tls: Option<bool>,
    pub notls: Option<bool>,
    pub cafile: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub sep: Option<char>,
    pub prefix: Option<String>,
}

impl SideValues {
    /// Field by field: `self` where set, else `fallback`; except that the credential
    /// (`password`, `passfile`, `oauthaccesstoken`) and the TLS mode (`ssl`, `tls`, `notls`) are
    /// each one choice: when `self` makes it, none of `fallback`'s parts of it count (a
    /// `--passfile1` on the command line beats `IMAPFLEET_PASSWORD1`; `--notls1` beats
    /// `ssl1 = true` in the file).
    fn or(self, fallback: SideValues) -> SideValues {
        let own_secret =
            self.password.is_some() || self.passfile.is_some() || self.oauthaccesstoken.is_some();
        let own_tls = self.ssl.is_some() || self.tls.is_some() || self.notls.is_some();
        SideValues {
            host: self.host.or(fallback.host),
            port: self.port.or(fallback.port),
            user: self.user.or(fallback.user),
            password: self.password.or(fallback.password.filter(|_| !own_secret)),
            passfile: self.passfile.or(fallback.passfile.filter(|_| !own_secret)),
            authuser: self.authuser.or(fallback.authuser),
            authmech: self.authmech.or(fallback.authmech),
            oauthaccesstoken: self
                .oauthaccesstoken
                .or(fallback.oauthaccesstoken.filter(|_| !own_secret)),
            ssl: self.ssl.or(fallback.ssl.filter(|_| !own_tls)),
            tls: self.tls.or(fallback.tls.filter(|_| !own_tls)),
            notls: self.notls.or(fallback.notls.filter(|_| !own_tls)),
            cafile: self.cafile.or(fallback.cafile),
            insecure: self.insecure.or(fallback.insecure),
            sep: self.sep.or(fallback.sep),
            prefix: self.prefix.or(fallback.prefix),
        }
    }

    /// Two credentials given at one level (both `--password1` and `--passfile1`, say) are a
    /// usage error: which one was meant cannot be guessed.
    fn check_one_secret(&self, n: u8, level: &str) -> Result<()> {
        let given: Vec<&str> = [
            (self.password.is_some(), "password"),
            (self.passfile.is_some(), "passfile"),
            (self.oauthaccesstoken.is_some(), "oauthaccesstoken"),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name)
        .collect();
        if given.len() > 1 {
            return usage(format!(
                "{level}: give one of {} for host{n}, not several",
                given
                    .iter()
                    .map(|g| format!("{g}{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }
}

/// A usage mistake: reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()).into())
}

/// Config file and environment, loaded once.
pub struct Settings {
    /// File and environment merged (the environment wins key by key).
    cfg: Config,
    /// The two layers apart, for the per-side values whose groups (credential, TLS mode) must
    /// not be mixed across layers.
    layers: Option<Box<(Settings, Settings)>>,
}

/// Per-side keys (`host1`, `passfile2`, ...), read from the config file and `IMAPFLEET_*`.
const SIDE_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "passfile",
    "authuser",
    "authmech",
    "oauthaccesstoken",
    "ssl",
    "tls",
    "notls",
    "cafile",
    "insecure",
    "sep",
    "prefix",
];

/// Every other key the program reads from the config file and `IMAPFLEET_*`. Anything else in
/// the config file is refused: a `dry = true` that is silently ignored would write to host2.
const KEYS: &[&str] = &[
    "timeout",
    "connections",
    "connect_retries",
    "max_backoff",
    "statedir",
    "metrics_addr",
    "batch_defaults",
    "slice_bytes",
    "slice_messages",
    "max_attempts",
    "lease_ttl",
    "max_connections_per_host",
    "max_connections_per_account",
    "state_ttl",
    "concurrency",
    "workers",
    "amqp_url",
    "redis_url",
    "queue",
];

/// `IMAPFLEET_*` variables that are read directly (not settings) or belong to the test scripts.
const ENV_ONLY: &[&str] = &[
    "config",
    "secret_key",
    "secret_key_file",
    "state_dir",
    "lock_dir",
    "lab",
    "services",
    "corpus",
    "image_test",
    "metrics_sample",
];

/// The top-level keys of a config layer.
fn top_keys(cfg: &Config) -> Vec<String> {
    cfg.clone()
        .try_deserialize::<std::collections::HashMap<String, config::Value>>()
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

/// Is `key` a setting the program reads?
fn is_known(key: &str) -> bool {
    KEYS.contains(&key)
        || key
            .strip_suffix(['1', '2'])
            .is_some_and(|base| SIDE_KEYS.contains(&base))
}

/// The config file's or environment's keys that are not settings. `options` are the command
/// line's long option names (`dry`, `delete2`...), to say where such a value must go instead.
fn check_keys<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    from_env: bool,
    options: &[String],
) -> Result<()> {
    let mut problems = Vec::new();
    for key in keys {
        if is_known(key) || (from_env && ENV_ONLY.contains(&key)) {
            continue;
        }
        let as_option = key.replace('_', "-");
        let is_option = options.contains(&as_option);
        let name = if from_env {
            format!("IMAPFLEET_{}", key.to_ascii_uppercase())
        } else {
            format!("key `{key}`")
        };
        match (is_option, from_env) {
            (true, _) => problems.push(format!(
                "{name}: --{as_option} is only read from the command line; give it there"
            )),
            // Other IMAPFLEET_* variables may belong to other tools or scripts.
            (false, true) => {}
            (false, false) => problems.push(format!("{name}: not a setting")),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut known: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    known.extend(SIDE_KEYS.iter().map(|k| format!("{k}1/2")));
    usage(format!(
        "{} (settings read: {})",
        problems.join("; "),
        known.join(", ")
    ))
}

/// A config crate error without the quoted source lines a TOML parse error carries: the line
/// that failed to parse may hold a password.
fn sanitize_config_error(e: &config::ConfigError) -> String {
    let text = e.to_string();
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            let t = l.trim_start();
            // Snippet lines look like `2 | password1 = "...`, ` |` and `  ^^^`.
            !(t.starts_with('|')
                || t.starts_with('^')
                || t.split_once(" |")
                    .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
                || t.is_empty())
        })
        .collect();
    kept.join(": ")
}

impl Settings {
    /// Load `path` (or `$IMAPFLEET_CONFIG`, or `./imapfleet.toml` when present) and the
    /// environment. `options` are the command line's long option names: a config key or
    /// `IMAPFLEET_*` variable named like one that is not a setting is a usage error, never ignored.
    pub fn load(path: Option<&Path>, options: &[String]) -> Result<Settings> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("IMAPFLEET_CONFIG").map(PathBuf::from));
        let file = match &explicit {
            Some(p) => File::from(p.as_path())
                .format(FileFormat::Toml)
                .required(true),
            None => File::new("imapfleet.toml", FileFormat::Toml).required(false),
        };
        let shown = explicit
            .as_deref()
            .unwrap_or(Path::new("imapfleet.toml"))
            .display()
            .to_string();
        // The file alone first: its keys are checked, and a parse error is told without the
        // offending line (it may hold a password).
        let from_file = Config::builder()
            .add_source(file.clone())
            .build()
            .map_err(|e| {
                UsageError(format!(
                    "config file {shown}: {}",
                    sanitize_config_error(&e)
                ))
            })?;
        let file_keys = top_keys(&from_file);
        check_keys(file_keys.iter().map(String::as_str), false, options)
            .with_context(|| format!("config file {shown}"))?;
        let env = Environment::with_prefix("IMAPFLEET").try_parsing(true);
        let env_keys = Config::builder()
            .add_source(env.clone())
            .build()
            .map(|c| top_keys(&c))
            .unwrap_or_default();
        check_keys(env_keys.iter().map(String::as_str), true, options)?;
        let env_only = Config::builder()
            .add_source(env.clone())
            .build()
            .map_err(|e| UsageError(format!("environment: {}", sanitize_config_error(&e))))?;
        let cfg = Config::builder()
            .add_source(file)
            .add_source(env)
            .build()
            .map_err(|e| UsageError(format!("configuration: {}", sanitize_config_error(&e))))?;
        let layer = |cfg| Settings { cfg, layers: None };
        Ok(Settings {
            cfg,
            layers: Some(Box::new((layer(env_only), layer(from_file)))),
        })
    }

    pub fn string(&self, key: &str) -> Option<String> {
        debug_assert!(
            is_known(key),
            "setting {key} is missing from settings::KEYS"
        );
        self.cfg.get_string(key).ok()
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        debug_assert!(
            is_known(key),
            "setting {key} is missing from settings::KEYS"
        );
        match self.cfg.get_bool(key) {
            Ok(b) => Ok(Some(b)),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => usage(format!("setting {key}: {e}")),
        }
    }

    /// An unsigned number setting (`timeout`, `connections`, ...).
    pub fn number(&self, key: &str) -> Result<Option<u64>> {
        debug_assert!(
            is_known(key),
            "setting {key} is missing from settings::KEYS"
        );
        match self.cfg.get_int(key) {
            Ok(n) if n >= 0 => Ok(Some(n as u64)),
            Ok(n) => usage(format!("setting {key}: {n} is negative")),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => usage(format!("setting {key}: {e}")),
        }
    }

    /// The side `n` (1 or 2) values from the environment, then the config file.
    fn side(&self, n: u8) -> Result<SideValues> {
        match &self.layers {
            Some(layers) => {
                let (env, file) = &**layers;
                let env = env.side_values(n)?;
                env.check_one_secret(n, "environment")?;
                let file = file.side_values(n)?;
                file.check_one_secret(n, "config file")?;
                Ok(env.or(file))
            }
            None => self.side_values(n),
        }
    }

    /// The side `n` values of this layer.
    fn side_values(&self, n: u8) -> Result<SideValues> {
        let k = |name: &str| format!("{name}{n}");
        let port = match self.number(&k("port"))? {
            Some(p) if p <= u16::MAX as u64 => Some(p as u16),
            Some(p) => return usage(format!("setting port{n}: {p} is not a port")),
            None => None,
        };
        let sep = match self.string(&k("sep")) {
            Some(s) if s.chars().count() == 1 => s.chars().next(),
            Some(s) => return usage(format!("setting sep{n}: {s:?} is not one character")),
            None => None,
        };
        Ok(SideValues {
            host: self.string(&k("host")),
            port,
            user: self.string(&k("user")),
            password: self.string(&k("password")),
            passfile: self.string(&k("passfile")).map(PathBuf::from),
            authuser: self.string(&k("authuser")),
            authmech: self.string(&k("authmech")),
            oauthaccesstoken: self.string(&k("oauthaccesstoken")).map(PathBuf::from),
            ssl: self.boolean(&k("ssl"))?,
            tls: self.boolean(&k("tls"))?,
            notls: self.boolean(&k("notls"))?,
            cafile: self.string(&k("cafile")).map(PathBuf::from),
            insecure: self.boolean(&k("insecure"))?,
            sep,
            prefix: self.string(&k("prefix")),
        })
    }

    /// Merge the command line's values for side `n` over the settings', and build the endpoint.
    pub fn endpoint(
        &self,
        n: u8,
        cli: SideValues,
        timeout: Option<u64>,
    ) -> Result<(Endpoint, SideValues)> {
        if cli.password.is_some() {
            tracing::warn!(
                "--password{n} on the command line is visible to other local users; \
                 prefer --passfile{n} or IMAPFLEET_PASSWORD{n}"
            );
        }
        cli.check_one_secret(n, "command line")?;
        let v = cli.or(self.side(n)?);
        let timeout = match timeout {
            Some(t) => t,
            None => self.number("timeout")?.unwrap_or(120),
        };
        let ep = build_endpoint(n, &v, Duration::from_secs(timeout.max(1)))?;
        Ok((ep, v))
    }
}

/// Turn merged side values into an [`Endpoint`], checking for contradictions.
pub fn build_endpoint(n: u8, v: &SideValues, timeout: Duration) -> Result<Endpoint> {
    let label = format!("host{n}");
    let Some(host) = v.host.clone() else {
        return usage(format!("--host{n} is required"));
    };
    let Some(user) = v.user.clone() else {
        return usage(format!("--user{n} is required"));
    };
    let (ssl, tls, notls) = (
        v.ssl.unwrap_or(false),
        v.tls.unwrap_or(false),
        v.notls.unwrap_or(false),
    );
    if [ssl, tls, notls].iter().filter(|b| **b).count() > 1 {
        return usage(format!("choose one of --ssl{n}, --tls{n} and --notls{n}"));
    }
    let security = if ssl {
        Security::Tls
    } else if notls {
        Security::Plain
    } else {
        Security::StartTls
    };
    let port = v.port.unwrap_or(if ssl { 993 } else { 143 });

    let mech = v.authmech.as_deref().map(str::to_ascii_uppercase);
    let auth = match (mech.as_deref(), &v.oauthaccesstoken) {
        (None | Some("XOAUTH2"), Some(file)) => AuthMethod::XOAuth2 {
            token_file: file.clone(),
        },
        (Some("XOAUTH2"), None) => {
            return usage(format!(
                "--authmech{n} XOAUTH2 needs --oauthaccesstoken{n} FILE"
            ));
        }
        (Some(m), Some(_)) => {
            return usage(format!("--oauthaccesstoken{n} goes with XOAUTH2, not {m}"))
        }
        (Some("LOGIN"), None) => AuthMethod::Login,
        (Some("PLAIN"), None) => AuthMethod::Plain,
        (Some(m), None) => {
            return usage(format!(
                "--authmech{n} {m}: expected LOGIN, PLAIN or XOAUTH2"
            ))
        }
        (None, None) if v.authuser.is_some() => AuthMethod::Plain,
        (None, None) => AuthMethod::Auto,
    };

    let password = match (&v.password, &v.passfile, &auth) {
        (_, _, AuthMethod::XOAuth2 { .. }) => Secret::default(),
        (Some(p), _, _) => Secret::new(p.clone()),
        (None, Some(file), _) => {
            // A missing, unreadable or empty password file is the user's to fix: exit 2.
            read_passfile(file)
                .map_err(|e| UsageError(format!("--passfile{n} {}: {e:#}", file.display())))?
        }
        (None, None, _) => {
            return usage(format!(
                "no password for host{n}: give --passfile{n} FILE or set IMAPFLEET_PASSWORD{n}"
            ))
        }
    };

    if v.insecure.unwrap_or(false) {
        tracing::warn!("--insecure{n}: the certificate of {host} will NOT be verified");
    }
    if security == Security::Plain {
        tracing::warn!("--notls{n}: the login to {host} travels in clear text");
    }
    if v.authuser.is_some() && !matches!(auth, AuthMethod::Plain) {
        bail!(UsageError(format!(
            "--authuser{n} needs PLAIN authentication"
        )));
    }

    Ok(Endpoint {
        label,
        host,
        port,
        security,
        user,
        authuser: v.authuser.clone(),
        password,
        auth,
        ca_file: v.cafile.clone(),
        insecure: v.insecure.unwrap_or(false),
        timeout,
    })
}

/// The first line of the file, without its line ending (spaces are part of the password).
fn read_passfile(path: &Path) -> Result<Secret> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes).context("the password file is not UTF-8")?;
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        if text.trim().is_empty() {
            bail!("the password file is empty");
        }
        bail!("the first line of the password file is empty (the password is its first line)");
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(host: &str) -> SideValues {
        SideValues {
            host: Some(host.into()),
            user: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        }
    }

    fn opts() -> Vec<String> {
        ["dry", "delete2", "justlogin", "host1", "folder"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn config_keys_that_are_options_but_not_settings_are_refused() {
        check_keys(
            ["host1", "passfile2", "timeout", "amqp_url"],
            false,
            &opts(),
        )
        .unwrap();
        for key in ["dry", "justlogin", "delete2"] {
            let err = check_keys([key], false, &opts()).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some());
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "key `{key}`: --{key} is only read from the command line"
                )),
                "{text}"
            );
        }
        let err = check_keys(["dryy"], false, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `dryy`: not a setting") && err.contains("timeout"),
            "{err}"
        );
        // The environment: options named are refused, unrelated IMAPFLEET_* variables pass.
        let err = check_keys(["dry"], true, &opts()).unwrap_err().to_string();
        assert!(err.contains("IMAPFLEET_DRY: --dry is only read"), "{err}");
        check_keys(
            ["lab", "test_child_key", "secret_key", "password1"],
            true,
            &opts(),
        )
        .unwrap();
    }

    #[test]
    fn a_config_parse_error_does_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "host1 = \"h\"\npassword1 = \"Zq9TomlPw\n").unwrap();
        let err = Settings::load(Some(&f), &opts())
            .err()
            .expect("a parse error");
        let text = format!("{err:#}");
        assert!(!text.contains("Zq9TomlPw"), "{text}");
        assert!(text.contains("line 2"), "the position is told: {text}");
        assert!(err.downcast_ref::<UsageError>().is_some(), "{text}");
    }

    #[test]
    fn a_dry_key_in_the_config_file_is_refused_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "host1 = \"h\"\ndry = true\n").unwrap();
        let err = Settings::load(Some(&f), &opts()).err().expect("refused");
        assert!(format!("{err:#}").contains("key `dry`"), "{err:#}");
    }

    #[test]
    fn the_credential_and_the_tls_mode_are_each_one_choice() {
        let file = SideValues {
            password: Some("from-env".into()),
            ssl: Some(true),
            port: Some(993),
            ..Default::default()
        };
        let cli = SideValues {
            passfile: Some("/run/pw".into()),
            notls: Some(true),
            ..Default::default()
        };
        let v = cli.or(file);
        assert_eq!(
            v.password, None,
            "--passfile on the command line beats the env password"
        );
        assert_eq!(v.passfile.as_deref(), Some(Path::new("/run/pw")));
        assert_eq!(
            (v.ssl, v.notls),
            (None, Some(true)),
            "--notls beats ssl = true"
        );
        assert_eq!(v.port, Some(993), "other fields still fall back");
        // Without a credential of its own, the fallback's is kept whole.
        let v = SideValues::default().or(SideValues {
            passfile: Some("/f".into()),
            ..Default::default()
        });
        assert_eq!(v.passfile.as_deref(), Some(Path::new("/f")));
        // Two credentials at one level: refused, naming both.
        let both = SideValues {
            password: Some("p".into()),
            passfile: Some("/f".into()),
            ..Default::default()
        };
        let err = both
            .check_one_secret(1, "command line")
            .unwrap_err()
            .to_string();
        assert!(err.contains("password1, passfile1"), "{err}");
    }

    #[test]
    fn defaults_to_starttls_on_143() {
        let ep = build_endpoint(1, &side("h"), Duration::from_secs(5)).unwrap();
        assert_eq!(ep.security, Security::StartTls);
        assert_eq!(ep.port, 143);
        assert_eq!(ep.auth, AuthMethod::Auto);
    }

    #[test]
    fn ssl_defaults_to_993_and_conflicts_are_usage_errors() {
        let mut v = side("h");
        v.ssl = Some(true);
        let ep = build_endpoint(2, &v, Duration::from_secs(5)).unwrap();
        assert_eq!((ep.security, ep.port), (Security::Tls, 993));
        v.notls = Some(true);
        let err = build_endpoint(2, &v, Duration::from_secs(5)).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
    }

    #[test]
    fn passfile_keeps_spaces_and_drops_only_the_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, " quo\"te\\ {5} §\r\nsecond line\n").unwrap();
        let mut v = side("h");
        v.password = None;
        v.passfile = Some(f);
        let ep = build_endpoint(1, &v, Duration::from_secs(5)).unwrap();
        assert_eq!(ep.password.expose(), " quo\"te\\ {5} §");
        assert!(
            !format!("{ep:?}").contains("quo"),
            "password must not appear in Debug"
        );
    }

    #[test]
    fn missing_password_is_a_usage_error() {
        let mut v = side("h");
        v.password = None;
        let err = build_endpoint(1, &v, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("IMAPFLEET_PASSWORD1"), "{err}");
    }

    #[test]
    fn authuser_implies_plain_and_xoauth2_needs_a_token_file() {
        let mut v = side("h");
        v.authuser = Some("admin".into());
        assert_eq!(
            build_endpoint(1, &v, Duration::from_secs(5)).unwrap().auth,
            AuthMethod::Plain
        );
        let mut v = side("h");
        v.authmech = Some("xoauth2".into());
        assert!(build_endpoint(1, &v, Duration::from_secs(5)).is_err());
        v.oauthaccesstoken = Some("/tmp/tok".into());
        assert!(matches!(
            build_endpoint(1, &v, Duration::from_secs(5)).unwrap().auth,
            AuthMethod::XOAuth2 { .. }
        ));
    }
}
