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
    /// Field by field: `self` where set, else `fallback`.
    fn or(self, fallback: SideValues) -> SideValues {
        SideValues {
            host: self.host.or(fallback.host),
            port: self.port.or(fallback.port),
            user: self.user.or(fallback.user),
            password: self.password.or(fallback.password),
            passfile: self.passfile.or(fallback.passfile),
            authuser: self.authuser.or(fallback.authuser),
            authmech: self.authmech.or(fallback.authmech),
            oauthaccesstoken: self.oauthaccesstoken.or(fallback.oauthaccesstoken),
            ssl: self.ssl.or(fallback.ssl),
            tls: self.tls.or(fallback.tls),
            notls: self.notls.or(fallback.notls),
            cafile: self.cafile.or(fallback.cafile),
            insecure: self.insecure.or(fallback.insecure),
            sep: self.sep.or(fallback.sep),
            prefix: self.prefix.or(fallback.prefix),
        }
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
    cfg: Config,
}

impl Settings {
    /// Load `path` (or `$IMAPFLEET_CONFIG`, or `./imapfleet.toml` when present) and the environment.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("IMAPFLEET_CONFIG").map(PathBuf::from));
        let mut builder = Config::builder();
        match &explicit {
            Some(p) => {
                builder = builder.add_source(
                    File::from(p.as_path())
                        .format(FileFormat::Toml)
                        .required(true),
                );
            }
            None => {
                builder = builder
                    .add_source(File::new("imapfleet.toml", FileFormat::Toml).required(false));
            }
        }
        builder = builder.add_source(Environment::with_prefix("IMAPFLEET").try_parsing(true));
        let cfg = builder.build().context("reading the configuration")?;
        Ok(Settings { cfg })
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.cfg.get_string(key).ok()
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.cfg.get_bool(key) {
            Ok(b) => Ok(Some(b)),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => usage(format!("setting {key}: {e}")),
        }
    }

    /// An unsigned number setting (`timeout`, `connections`, ...).
    pub fn number(&self, key: &str) -> Result<Option<u64>> {
        match self.cfg.get_int(key) {
            Ok(n) if n >= 0 => Ok(Some(n as u64)),
            Ok(n) => usage(format!("setting {key}: {n} is negative")),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => usage(format!("setting {key}: {e}")),
        }
    }

    /// The side `n` (1 or 2) values from the environment and the config file.
    fn side(&self, n: u8) -> Result<SideValues> {
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
            read_passfile(file).with_context(|| format!("--passfile{n} {}", file.display()))?
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
        bail!("the password file is empty");
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
