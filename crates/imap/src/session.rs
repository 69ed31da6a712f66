//! A logged-in IMAP session: the commands the engine needs, each with the endpoint's timeout.
//!
//! Every command goes through one runner ([`run`]): it sends the command (literals per LITERAL+),
//! reads until the tagged completion, hands each untagged response to the command's handler, and
//! turns the completion into `Ok` or an [`ImapError`] with the command name, the response code and
//! the server's words. A timeout, a lost connection or an unreadable response marks the session
//! unusable: later commands fail fast with `ConnectionLost` and the caller reconnects.
//!
//! Timeouts: `endpoint.timeout` bounds the TCP connect and every wait for the server (each read and
//! each write must make progress within it, see `conn::Timed`), so a silent server is noticed after
//! `timeout` while a large transfer that keeps moving is never cut in the middle.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use async_imap::extensions::append::{AppendMessage, CommandPart};
use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, Response, ResponseCode, Status, StatusAttribute,
};
use async_imap::types::ResponseData;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset};

use crate::conn::{tcp_connect, tls_handshake, ImapConn};
use crate::wire::{self, text};
use crate::{
    AppendRequest, AuthMethod, Capabilities, Endpoint, ImapError, MailboxEntry, MessageMeta,
    Namespaces, Result, Security, SelectInfo, StatusInfo, StoreMode,
};

type Conn = async_imap::Connection<ImapConn>;

mod delta;

/// One authenticated connection to one server. One command at a time.
pub struct Session {
    inner: async_imap::Session<ImapConn>,
    endpoint: Endpoint,
    caps: Capabilities,
    /// Why the session can no longer be used (timeout, lost connection, unreadable response).
    broken: Option<String>,
    /// `ENABLE UTF8=ACCEPT` succeeded: names and headers travel as UTF-8.
    utf8: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint.label)
            .field("addr", &self.endpoint.addr())
            .field("user", &self.endpoint.user)
            .field("broken", &self.broken)
            .finish()
    }
}

/// An untagged response as the runner hands it to a command's handler.
pub(crate) enum Untagged<'a> {
    Parsed(&'a ResponseData),
    /// A complete line imap-proto could not parse (e.g. `* NAMESPACE ...`).
    Unparsed(&'a [u8]),
}

/// The tagged OK of a command.
pub(crate) struct Done {
    /// Response code text without brackets (e.g. `READ-WRITE`, `APPENDUID 1 2`).
    pub(crate) code: Option<String>,
    #[allow(dead_code)]
    pub(crate) text: String,
}

fn capabilities_from(list: &[Capability<'_>]) -> Capabilities {
    Capabilities {
        atoms: list
            .iter()
            .map(|c| match c {
                Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
                Capability::Atom(a) => a.to_ascii_uppercase(),
            })
            .collect(),
    }
}

/// Code and text of a completion: imap-proto's parsed code, or a `[CODE]` it did not know, which
/// stays at the start of its text.
fn outcome_parts(
    code: Option<&ResponseCode<'_>>,
    information: Option<&str>,
) -> (Option<String>, String) {
    match code {
        Some(c) => (
            Some(async_imap::extensions::append::response_code_text(c)),
            information.unwrap_or("").to_string(),
        ),
        None => wire::split_code(information.unwrap_or("")),
    }
}

fn lost(command: &str, bye: &Option<String>, fallback: &str) -> ImapError {
    ImapError::ConnectionLost {
        command: command.to_string(),
        detail: match bye {
            Some(b) => format!("server said BYE: {b}"),
            None => fallback.to_string(),
        },
    }
}

fn from_io(command: &str, ep: &Endpoint, e: std::io::Error, bye: &Option<String>) -> ImapError {
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut => ImapError::Timeout {
            command: command.to_string(),
            secs: ep.timeout.as_secs(),
        },
        InvalidData => ImapError::Protocol {
            command: command.to_string(),
            detail: e.to_string(),
        },
        _ => lost(command, bye, &e.to_string()),
    }
}

fn from_async(command: &str, ep: &Endpoint, e: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error as E;
    match e {
        E::Io(io) => from_io(command, ep, io, &None),
        E::ConnectionLost => lost(command, &None, "connection closed by server"),
        E::No(s) => {
            let (code, text) = wire::split_code(&s);
            ImapError::No {
                command: command.to_string(),
                code,
                text,
            }
        }
        E::Bad(s) => ImapError::Bad {
            command: command.to_string(),
            text: s,
        },
        E::Validate(v) => ImapError::Invalid(v.to_string()),
        other => ImapError::Protocol {
            command: command.to_string(),
            detail: other.to_string(),
        },
    }
}

/// Errors after which the stream is out of step or gone.
fn is_fatal(e: &ImapError) -> bool {
    e.is_connection() || matches!(e, ImapError::Protocol { .. })
}

/// Send one command and read up to its tagged completion. `on` sees every untagged response
/// (parsed, or the raw line when imap-proto could not parse it). An error from `on` is reported
/// after the completion has been read, so the stream stays in step. Fatal errors are recorded in
/// `broken`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<F>(
    conn: &mut Conn,
    ep: &Endpoint,
    command: &str,
    parts: &[CommandPart<'_>],
    literal_plus: bool,
    mut caps: Option<&mut Capabilities>,
    broken: &mut Option<String>,
    mut on: F,
) -> Result<Done>
where
    F: FnMut(Untagged<'_>) -> Result<()>,
{
    if let Some(why) = broken.as_ref() {
        return Err(ImapError::ConnectionLost {
            command: command.to_string(),
            detail: format!("session unusable after an earlier error: {why}"),
        });
    }
    let res = run_inner(conn, ep, command, parts, literal_plus, &mut caps, &mut on).await;
    match res {
        Err((e, fatal)) => {
            if fatal {
                *broken = Some(e.to_string());
            }
            Err(e)
        }
        Ok(d) => Ok(d),
    }
}

async fn run_inner<F>(
    conn: &mut Conn,
    ep: &Endpoint,
    command: &str,
    parts: &[CommandPart<'_>],
    literal_plus: bool,
    caps: &mut Option<&mut Capabilities>,
    on: &mut F,
) -> std::result::Result<Done, (ImapError, bool)>
where
    F: FnMut(Untagged<'_>) -> Result<()>,
{
    let fatal = |e: ImapError| {
        let f = is_fatal(&e);
        (e, f)
    };
    tracing::trace!(endpoint = %ep.label, "> {command} ({} parts)", parts.len());
    crate::stats::count(ep, command);
    let id = conn
        .run_command_parts(parts, literal_plus)
        .await
        .map_err(|e| fatal(from_async(command, ep, e)))?;
    let mut bye: Option<String> = None;
    let mut handler_err: Option<ImapError> = None;
    loop {
        let res = match conn.read_response().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err((lost(command, &bye, "connection closed by server"), true)),
            Err(e) => return Err((from_io(command, ep, e, &bye), true)),
        };
        for line in conn.take_unparsed() {
            let known = line.starts_with(b"* NAMESPACE ")
                || line.starts_with(b"* LIST ")
                || line.starts_with(b"* LSUB ")
                || line.starts_with(b"* STATUS ")
                || wire::is_fetch_line(&line);
            if !known {
                tracing::warn!(
                    endpoint = %ep.label, command,
                    "ignoring a response imap-proto cannot parse: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                );
            }
            if handler_err.is_none() {
                if let Err(e) = on(Untagged::Unparsed(&line)) {
                    handler_err = Some(e);
                }
            }
        }
        match res.parsed() {
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                let (code, text) =
                    outcome_parts(outcome.code.as_ref(), outcome.information.as_deref());
                if let Some(e) = handler_err {
                    return Err((e, false));
                }
                return match status {
                    Status::Ok => {
                        if let Some(ResponseCode::Capabilities(c)) = &outcome.code {
                            if let Some(caps) = caps.as_deref_mut() {
                                *caps = capabilities_from(c);
                            }
                        }
                        Ok(Done { code, text })
                    }
                    Status::No => Err((
                        ImapError::No {
                            command: command.to_string(),
                            code,
                            text,
                        },
                        false,
                    )),
                    Status::Bad => Err((
                        ImapError::Bad {
                            command: command.to_string(),
                            text: match code {
                                Some(c) => format!("[{c}] {text}"),
                                None => text,
                            },
                        },
                        false,
                    )),
                    other => Err((
                        ImapError::Protocol {
                            command: command.to_string(),
                            detail: format!("tagged {other:?} completion"),
                        },
                        true,
                    )),
                };
            }
            Response::Done { tag, .. } => {
                tracing::warn!(endpoint = %ep.label, command, "completion for another tag {tag:?} ignored");
                continue;
            }
            Response::Continue(_) => {
                return Err((
                    ImapError::Protocol {
                        command: command.to_string(),
                        detail: "unexpected continuation request".into(),
                    },
                    true,
                ))
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                let t = async_imap::extensions::append::format_outcome(
                    outcome.code.as_ref(),
                    outcome.information.as_deref(),
                );
                tracing::debug!(endpoint = %ep.label, command, "server said BYE: {t}");
                bye = Some(t);
                continue;
            }
            Response::Data { status, outcome } => {
                if matches!(outcome.code, Some(ResponseCode::Alert)) {
                    tracing::warn!(endpoint = %ep.label, command, "server ALERT: {}", outcome.information.as_deref().unwrap_or(""));
                } else if matches!(status, Status::No | Status::Bad) {
                    tracing::warn!(
                        endpoint = %ep.label, command,
                        "server warning: {status:?} {}",
                        async_imap::extensions::append::format_outcome(outcome.code.as_ref(), outcome.information.as_deref())
                    );
                }
            }
            Response::Capabilities(c) if is_capability_line(&res) => {
                if let Some(caps) = caps.as_deref_mut() {
                    *caps = capabilities_from(c);
                }
            }
            _ => {}
        }
        if handler_err.is_none() {
            if let Err(e) = on(Untagged::Parsed(&res)) {
                handler_err = Some(e);
            }
        }
    }
}

/// `* CAPABILITY ...` (imap-proto also turns `* ENABLED ...` into `Response::Capabilities`).
fn is_capability_line(r: &ResponseData) -> bool {
    r.raw()
        .get(..12)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"* CAPABILITY"))
}

/// Ignore every untagged response.
fn ignore(_: Untagged<'_>) -> Result<()> {
    Ok(())
}

/// `CAPABILITY`
async fn capability_cmd(
    conn: &mut Conn,
    ep: &Endpoint,
    broken: &mut Option<String>,
) -> Result<Capabilities> {
    let mut caps = Capabilities::default();
    let mut got = false;
    run(
        conn,
        ep,
        "CAPABILITY",
        &[text("CAPABILITY")],
        false,
        Some(&mut caps),
        broken,
        |u| {
            if let Untagged::Parsed(r) = u {
                if matches!(r.parsed(), Response::Capabilities(_)) && is_capability_line(r) {
                    got = true;
                }
            }
            Ok(())
        },
    )
    .await?;
    if !got && caps.atoms.is_empty() {
        return Err(ImapError::Protocol {
            command: "CAPABILITY".into(),
            detail: "no CAPABILITY response".into(),
        });
    }
    Ok(caps)
}

enum Greeting {
    Ok(Option<Capabilities>),
    PreAuth(Option<Capabilities>),
}

async fn read_greeting(conn: &mut Conn, ep: &Endpoint) -> Result<Greeting> {
    let res = match conn.read_response().await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(ImapError::ConnectionLost {
                command: "greeting".into(),
                detail: "connection closed before the greeting".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            // Not IMAP (e.g. "421 Server is busy"): a busy or wrong server; retryable.
            return Err(ImapError::Connect {
                addr: ep.addr(),
                source: std::io::Error::other(format!("not an IMAP greeting: {e}")),
            });
        }
        Err(e) => return Err(from_io("greeting", ep, e, &None)),
    };
    let caps_of = |code: &Option<ResponseCode<'_>>| match code {
        Some(ResponseCode::Capabilities(c)) => Some(capabilities_from(c)),
        _ => None,
    };
    match res.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome,
        } => Ok(Greeting::Ok(caps_of(&outcome.code))),
        Response::Data {
            status: Status::PreAuth,
            outcome,
        } => Ok(Greeting::PreAuth(caps_of(&outcome.code))),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(ImapError::ConnectionLost {
            command: "greeting".into(),
            detail: format!(
                "server refused the connection: BYE {}",
                async_imap::extensions::append::format_outcome(
                    outcome.code.as_ref(),
                    outcome.information.as_deref()
                )
            ),
        }),
        other => Err(ImapError::Protocol {
            command: "greeting".into(),
            detail: format!("unexpected greeting {other:?}"),
        }),
    }
}

/// NO codes after which logging in again later may work: not a credentials problem.
fn transient_auth_refusal(code: Option<&str>, text: &str) -> bool {
    let c = code.map(|c| c.split(' ').next().unwrap_or("").to_ascii_uppercase());
    if matches!(
        c.as_deref(),
        Some("LIMIT" | "UNAVAILABLE" | "INUSE" | "SERVERBUG" | "CONTACTADMIN")
    ) {
        return true;
    }
    let t = text.to_ascii_lowercase();
    t.contains("throttl") || t.contains("backoff") || t.contains("try again later")
}

fn auth_error(ep: &Endpoint, command: &str, e: ImapError) -> ImapError {
    let user = match &ep.authuser {
        Some(a) => format!("{} (as {a})", ep.user),
        None => ep.user.clone(),
    };
    match e {
        ImapError::No { code, text, .. } if transient_auth_refusal(code.as_deref(), &text) => {
            ImapError::No {
                command: command.to_string(),
                code,
                text,
            }
        }
        ImapError::No { code, text, .. } => ImapError::Auth {
            user,
            reason: match code {
                Some(c) => format!("NO [{c}] {text}"),
                None => format!("NO {text}"),
            },
        },
        ImapError::Bad { text, .. } => ImapError::Auth {
            user,
            reason: format!("BAD {text}"),
        },
        other => other,
    }
}

/// SASL exchange with one initial response (`AUTHENTICATE <mech> [<b64>]`). Any further challenge
/// (XOAUTH2 sends its error as one) gets an empty response, after which the server ends the command.
/// Returns the capabilities the server announced while authenticating: the tagged OK's
/// `[CAPABILITY ...]` code, else an untagged `* CAPABILITY` line sent before it (Gmail, some
/// proxies), else `None`.
async fn sasl(
    conn: &mut Conn,
    ep: &Endpoint,
    mech: &str,
    response: &[u8],
    sasl_ir: bool,
) -> Result<Option<Capabilities>> {
    use tokio::io::AsyncWriteExt;
    let command = format!("AUTHENTICATE {mech}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(response);
    let parts = if sasl_ir && !b64.is_empty() {
        vec![
            text(format!("AUTHENTICATE {mech} ")),
            CommandPart::Text(b64.as_bytes().into()),
        ]
    } else {
        vec![text(format!("AUTHENTICATE {mech}"))]
    };
    let mut sent = sasl_ir && !b64.is_empty();
    // An untagged CAPABILITY during the exchange describes the authenticated state.
    let mut announced: Option<Capabilities> = None;
    let id = conn
        .run_command_parts(&parts, false)
        .await
        .map_err(|e| from_async(&command, ep, e))?;
    let mut bye = None;
    loop {
        let res = match conn.read_response().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(lost(&command, &bye, "connection closed by server")),
            Err(e) => return Err(from_io(&command, ep, e, &bye)),
        };
        conn.take_unparsed();
        match res.parsed() {
            Response::Continue(outcome) => {
                let line: &[u8] = if sent {
                    if let Some(t) = &outcome.information {
                        if let Ok(bytes) =
                            base64::engine::general_purpose::STANDARD.decode(t.as_bytes())
                        {
                            tracing::debug!(endpoint = %ep.label, "{mech} challenge after the response: {}", String::from_utf8_lossy(&bytes));
                        }
                    }
                    b""
                } else {
                    b64.as_bytes()
                };
                sent = true;
                let mut buf = Vec::with_capacity(line.len() + 2);
                buf.extend_from_slice(line);
                buf.extend_from_slice(b"\r\n");
                let w = conn.get_mut();
                w.write_all(&buf)
                    .await
                    .map_err(|e| from_io(&command, ep, e, &bye))?;
                w.flush()
                    .await
                    .map_err(|e| from_io(&command, ep, e, &bye))?;
            }
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                let (code, text) =
                    outcome_parts(outcome.code.as_ref(), outcome.information.as_deref());
                return match status {
                    Status::Ok => {
                        if let Some(c) = &code {
                            if !c.starts_with("CAPABILITY") && outcome.code.is_none() {
                                tracing::warn!(endpoint = %ep.label, "authentication OK with an unknown response code: [{c}]");
                            }
                        }
                        Ok(match &outcome.code {
                            Some(ResponseCode::Capabilities(c)) => Some(capabilities_from(c)),
                            _ => announced,
                        })
                    }
                    Status::No => Err(ImapError::No {
                        command,
                        code,
                        text,
                    }),
                    _ => Err(ImapError::Bad {
                        command,
                        text: match code {
                            Some(c) => format!("[{c}] {text}"),
                            None => text,
                        },
                    }),
                };
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                bye = Some(outcome.information.as_deref().unwrap_or("").to_string());
            }
            Response::Capabilities(c) if is_capability_line(&res) => {
                announced = Some(capabilities_from(c))
            }
            _ => {}
        }
    }
}

/// Log in with the endpoint's method (`caps`: the capabilities before login). Returns the
/// capabilities the server announced during the login (the tagged OK's `[CAPABILITY ...]` code or
/// an untagged CAPABILITY before it), `None` when it announced none.
async fn authenticate(
    conn: &mut Conn,
    ep: &Endpoint,
    caps: &Capabilities,
    broken: &mut Option<String>,
) -> Result<Option<Capabilities>> {
    let method = match &ep.auth {
        AuthMethod::Auto if caps.has("AUTH=PLAIN") => AuthMethod::Plain,
        AuthMethod::Auto if ep.authuser.is_some() => {
            return Err(ImapError::Auth {
                user: ep.user.clone(),
                reason: "an admin identity (authuser) needs AUTHENTICATE PLAIN, which the server does not offer".into(),
            })
        }
        AuthMethod::Auto => AuthMethod::Login,
        m => m.clone(),
    };
    let sasl_ir = caps.has("SASL-IR");
    match method {
        AuthMethod::Plain => {
            let msg = wire::sasl_plain(&ep.user, ep.authuser.as_deref(), ep.password.expose());
            sasl(conn, ep, "PLAIN", &msg, sasl_ir)
                .await
                .map_err(|e| auth_error(ep, "AUTHENTICATE PLAIN", e))
        }
        AuthMethod::XOAuth2 { token_file } => {
            let token =
                tokio::fs::read_to_string(&token_file)
                    .await
                    .map_err(|e| ImapError::Auth {
                        user: ep.user.clone(),
                        reason: format!("cannot read the token file {}: {e}", token_file.display()),
                    })?;
            let token = crate::Secret::new(token.trim());
            if token.is_empty() {
                return Err(ImapError::Auth {
                    user: ep.user.clone(),
                    reason: format!("the token file {} is empty", token_file.display()),
                });
            }
            let msg = wire::xoauth2(&ep.user, token.expose());
            sasl(conn, ep, "XOAUTH2", &msg, sasl_ir)
                .await
                .map_err(|e| auth_error(ep, "AUTHENTICATE XOAUTH2", e))
        }
        AuthMethod::Login | AuthMethod::Auto => {
            if ep.authuser.is_some() {
                return Err(ImapError::Auth {
                    user: ep.user.clone(),
                    reason: "an admin identity (authuser) needs AUTHENTICATE PLAIN, not LOGIN"
                        .into(),
                });
            }
            if caps.has("LOGINDISABLED") {
                return Err(ImapError::Auth {
                    user: ep.user.clone(),
                    reason: "the server refuses LOGIN here (LOGINDISABLED); use TLS or STARTTLS"
                        .into(),
                });
            }
            let parts = [
                text("LOGIN "),
                CommandPart::string(ep.user.as_bytes()),
                text(" "),
                CommandPart::string(ep.password.expose().as_bytes()),
            ];
            let lp = caps.has("LITERAL+");
            // `run` fills this from an untagged CAPABILITY and from the OK's code: both describe
            // the logged-in state. Empty means the server announced nothing.
            let mut fresh = Capabilities::default();
            let done = run(
                conn,
                ep,
                "LOGIN",
                &parts,
                lp,
                Some(&mut fresh),
                broken,
                ignore,
            )
            .await
            .map_err(|e| auth_error(ep, "LOGIN", e))?;
            if let Some(c) = &done.code {
                if !c.starts_with("CAPABILITY") {
                    tracing::debug!(endpoint = %ep.label, "LOGIN OK with response code [{c}]");
                }
            }
            Ok((!fresh.atoms.is_empty()).then_some(fresh))
        }
    }
}

fn section_bytes(raw: &[u8], data: &[u8]) -> Vec<u8> {
    // imap-proto hands back a quoted string with its escapes in place; a literal is exact.
    if !data.contains(&b'\\') {
        return data.to_vec();
    }
    let marker = format!("{{{}}}\r\n", data.len());
    let mut from = 0;
    while let Some(p) = raw[from..]
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
    {
        let start = from + p + marker.len();
        if raw[start..].starts_with(data) {
            return data.to_vec();
        }
        from = from + p + 1;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut it = data.iter();
    while let Some(b) = it.next() {
        if *b == b'\\' {
            if let Some(n) = it.next() {
                out.push(*n);
            }
        } else {
            out.push(*b);
        }
    }
    out
}

/// One message's FETCH data gathered over possibly several FETCH responses.
#[derive(Default, Debug)]
struct Partial {
    uid: Option<u32>,
    flags: Option<Vec<String>>,
    internaldate: Option<Option<DateTime<FixedOffset>>>,
    size: Option<u32>,
    body: Option<Option<Vec<u8>>>,
}

impl Partial {
    /// Take the items `later` has (a later response about the same message wins).
    fn merge(&mut self, later: Partial) {
        self.uid = later.uid.or(self.uid);
        if later.flags.is_some() {
            self.flags = later.flags;
        }
        if later.internaldate.is_some() {
            self.internaldate = later.internaldate;
        }
        if later.size.is_some() {
            self.size = later.size;
        }
        if later.body.is_some() {
            self.body = later.body;
        }
    }

    /// Every item of a metadata FETCH is there (UID, FLAGS, INTERNALDATE, RFC822.SIZE, header).
    fn is_complete(&self) -> bool {
        self.uid.is_some()
            && self.flags.is_some()
            && self.internaldate.is_some()
            && self.size.is_some()
            && self.body.is_some()
    }

    fn into_meta(self) -> Option<MessageMeta> {
        match (
            self.uid,
            self.flags,
            self.internaldate,
            self.size,
            self.body,
        ) {
            (Some(uid), Some(flags), Some(internaldate), Some(size), Some(headers)) => {
                Some(MessageMeta {
                    uid,
                    flags,
                    internaldate,
                    size,
                    headers: headers.unwrap_or_default(),
                })
            }
            _ => None,
        }
    }
}

/// Collects FETCH responses by sequence number (a server may split one message's items over
/// several responses, and send unsolicited ones), following EXPUNGEs (allowed during UID commands).
#[derive(Default)]
struct FetchCollector {
    by_seq: BTreeMap<u32, Partial>,
    done: Vec<Partial>,
    /// UIDs seen in FETCH lines imap-proto could not parse.
    unparsed_uids: Vec<u32>,
}

impl FetchCollector {
    fn on(&mut self, u: Untagged<'_>, label: &str) -> Result<()> {
        match u {
            Untagged::Parsed(r) => match r.parsed() {
                Response::Fetch(seq, attrs) => {
                    let p = self.by_seq.entry(*seq).or_default();
                    for a in attrs {
                        match a {
                            AttributeValue::Uid(u) => p.uid = Some(*u),
                            AttributeValue::Flags(f) => {
                                p.flags = Some(f.iter().map(|f| f.to_string()).collect())
                            }
                            AttributeValue::InternalDate(d) => {
                                let parsed = wire::parse_internaldate(d);
                                if parsed.is_none() {
                                    tracing::warn!(
                                        endpoint = label,
                                        "cannot parse INTERNALDATE {d:?}"
                                    );
                                }
                                p.internaldate = Some(parsed);
                            }
                            AttributeValue::Rfc822Size(s) => p.size = Some(*s),
                            AttributeValue::BodySection { data, .. } => {
                                p.body = Some(data.as_ref().map(|d| section_bytes(r.raw(), d)));
                            }
                            AttributeValue::Rfc822(data) => {
                                p.body = Some(data.as_ref().map(|d| section_bytes(r.raw(), d)));
                            }
                            _ => {}
                        }
                    }
                }
                Response::Expunge(n) => {
                    let n = *n;
                    let old = std::mem::take(&mut self.by_seq);
                    for (seq, p) in old {
                        match seq.cmp(&n) {
                            std::cmp::Ordering::Less => {
                                self.by_seq.insert(seq, p);
                            }
                            std::cmp::Ordering::Equal => self.done.push(p),
                            std::cmp::Ordering::Greater => {
                                self.by_seq.insert(seq - 1, p);
                            }
                        }
                    }
                }
                _ => {}
            },
            Untagged::Unparsed(line) if wire::is_fetch_line(line) => {
                match wire::uid_in_fetch_line(line) {
                    Some(uid) => {
                        tracing::warn!(
                            endpoint = label,
                            "FETCH line for UID {uid} cannot be parsed: {:?}",
                            String::from_utf8_lossy(&line[..line.len().min(200)])
                        );
                        self.unparsed_uids.push(uid);
                    }
                    None => {
                        return Err(ImapError::Protocol {
                            command: "UID FETCH".into(),
                            detail: format!(
                                "FETCH response without UID that cannot be parsed: {:?}",
                                String::from_utf8_lossy(&line[..line.len().min(200)])
                            ),
                        })
                    }
                }
            }
            Untagged::Unparsed(_) => {}
        }
        Ok(())
    }

    fn finish(mut self) -> (Vec<Partial>, Vec<u32>) {
        self.done.extend(self.by_seq.into_values());
        (self.done, self.unparsed_uids)
    }
}

impl Session {
    /// Connect (TCP, TLS or STARTTLS), read the greeting, authenticate, re-read CAPABILITY.
    ///
    /// - STARTTLS: the server must offer it (else `Tls`), and capabilities seen before TLS are
    ///   discarded. Never falls back to plaintext; a `PREAUTH` greeting with STARTTLS is refused.
    /// - Authentication: `Auto` = AUTHENTICATE PLAIN (SASL-IR when offered) if `AUTH=PLAIN` is
    ///   advertised, else LOGIN (quoted strings for 7-bit values, literals otherwise). `NO` with
    ///   `[LIMIT]`, `[UNAVAILABLE]`, `[INUSE]`, `[SERVERBUG]`, `[CONTACTADMIN]` or a throttling text
    ///   comes back as `ImapError::No` (retry later), any other refusal as `ImapError::Auth`.
    /// - Capabilities after login come from what the server announced during the login (the
    ///   tagged OK's `[CAPABILITY ...]` code, or an untagged CAPABILITY before it), else from a
    ///   CAPABILITY command; never from the greeting's (pre-login) list.
    /// - A `* BYE` greeting is `ConnectionLost`; a greeting that is not IMAP at all (`421 busy`)
    ///   is `Connect` (both retryable).
    pub async fn connect(endpoint: &Endpoint) -> Result<Session> {
        let ep = endpoint.clone();
        let mut broken = None;
        let tcp = tcp_connect(&ep).await?;
        let stream = match ep.security {
            Security::Tls => tls_handshake(&ep, tcp).await?,
            Security::StartTls | Security::Plain => ImapConn::Plain(tcp),
        };
        let mut client = async_imap::Client::new(stream);
        let greeting = read_greeting(&mut client, &ep).await?;
        let (preauth, mut caps) = match greeting {
            Greeting::Ok(c) => (false, c),
            Greeting::PreAuth(c) => (true, c),
        };
        if ep.security == Security::StartTls {
            if preauth {
                return Err(ImapError::Tls {
                    addr: ep.addr(),
                    reason: "the server greeted with PREAUTH, so STARTTLS is impossible; refusing to continue in plaintext".into(),
                });
            }
            let c = match caps.take() {
                Some(c) => c,
                None => capability_cmd(&mut client, &ep, &mut broken).await?,
            };
            if !c.has("STARTTLS") {
                return Err(ImapError::Tls {
                    addr: ep.addr(),
                    reason: "the server does not offer STARTTLS (refusing to continue in plaintext; choose implicit TLS or, knowingly, no TLS)".into(),
                });
            }
            run(
                &mut client,
                &ep,
                "STARTTLS",
                &[text("STARTTLS")],
                false,
                None,
                &mut broken,
                ignore,
            )
            .await
            .map_err(|e| match e {
                ImapError::No { text, .. } | ImapError::Bad { text, .. } => ImapError::Tls {
                    addr: ep.addr(),
                    reason: format!("STARTTLS refused: {text}"),
                },
                other => other,
            })?;
            if client.buffered_len() > 0 {
                return Err(ImapError::Tls {
                    addr: ep.addr(),
                    reason: "data arrived after the STARTTLS reply and before the handshake (possible injection)".into(),
                });
            }
            let tcp = match client.into_inner() {
                ImapConn::Plain(t) => t,
                ImapConn::Tls(_) => {
                    return Err(ImapError::Tls {
                        addr: ep.addr(),
                        reason: "already TLS".into(),
                    })
                }
            };
            client = async_imap::Client::new(tls_handshake(&ep, tcp).await?);
            // Capabilities from before TLS must not be trusted.
            caps = None;
        }
        let mut caps = match caps {
            Some(c) => c,
            None => capability_cmd(&mut client, &ep, &mut broken).await?,
        };
        if !preauth {
            match authenticate(&mut client, &ep, &caps, &mut broken).await? {
                Some(c) => caps = c,
                None => caps = capability_cmd(&mut client, &ep, &mut broken).await?,
            }
        }
        tracing::debug!(endpoint = %ep.label, addr = %ep.addr(), user = %ep.user, "logged in; capabilities: {}", caps.atoms.join(" "));
        Ok(Session {
            inner: client.into_session(),
            endpoint: ep,
            caps,
            broken,
            utf8: false,
        })
    }

    /// Capabilities after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The endpoint this session was opened with (for reconnects).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `Some(reason)` once the session is unusable (timeout, lost connection, unreadable response):
    /// every command then fails with `ConnectionLost`; reconnect.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// How many messages one [`Session::append`] call may carry: 1 without MULTIAPPEND.
    pub fn max_append_batch(&self) -> usize {
        if self.caps.has("MULTIAPPEND") {
            usize::MAX
        } else {
            1
        }
    }

    async fn exec<F>(&mut self, command: &str, parts: &[CommandPart<'_>], on: F) -> Result<Done>
    where
        F: FnMut(Untagged<'_>) -> Result<()>,
    {
        let lp = self.caps.has("LITERAL+");
        run(
            &mut self.inner,
            &self.endpoint,
            command,
            parts,
            lp,
            Some(&mut self.caps),
            &mut self.broken,
            on,
        )
        .await
    }

    /// `ID` exchange when the server offers it (we send our name and version); `None` otherwise.
    pub async fn id(&mut self) -> Result<Option<Vec<(String, String)>>> {
        if !self.caps.has("ID") {
            return Ok(None);
        }
        let cmd = format!(
            "ID (\"name\" \"imapfleet\" \"version\" {})",
            wire::quoted(env!("CARGO_PKG_VERSION")).unwrap_or_else(|| "NIL".into())
        );
        let mut out: Option<Vec<(String, String)>> = None;
        self.exec("ID", &[text(cmd)], |u| {
            if let Untagged::Parsed(r) = u {
                if let Response::Id(map) = r.parsed() {
                    let mut v: Vec<(String, String)> = map
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    v.sort();
                    out = Some(v);
                }
            }
            Ok(())
        })
        .await?;
        Ok(Some(out.unwrap_or_default()))
    }

    /// `ENABLE <extensions>` (RFC 5161) for those the server offers; returns what the server says
    /// it enabled. `UTF8=ACCEPT` makes names and headers travel as UTF-8 from then on.
    pub async fn enable(&mut self, extensions: &[&str]) -> Result<Vec<String>> {
        if !self.caps.has("ENABLE") {
            return Ok(Vec::new());
        }
        let wanted: Vec<&str> = extensions
            .iter()
            .copied()
            .filter(|e| self.caps.has(e))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        for e in &wanted {
            wire::check_flag(e).map_err(|_| ImapError::Invalid(format!("extension {e:?}")))?;
        }
        let mut enabled = Vec::new();
        self.exec(
            "ENABLE",
            &[text(format!("ENABLE {}", wanted.join(" ")))],
            |u| {
                match u {
                    Untagged::Parsed(r) => {
                        let raw = String::from_utf8_lossy(r.raw()).to_string();
                        if let Some(rest) = raw.strip_prefix("* ENABLED") {
                            enabled.extend(rest.split_whitespace().map(|s| s.to_ascii_uppercase()));
                        }
                    }
                    Untagged::Unparsed(line) => {
                        let raw = String::from_utf8_lossy(line).to_string();
                        if let Some(rest) = raw.strip_prefix("* ENABLED") {
                            enabled.extend(rest.split_whitespace().map(|s| s.to_ascii_uppercase()));
                        }
                    }
                }
                Ok(())
            },
        )
        .await?;
        if enabled.iter().any(|e| e == "UTF8=ACCEPT") {
            self.utf8 = true;
        }
        Ok(enabled)
    }

    /// NAMESPACE, or an empty `Namespaces` when the server lacks it.
    pub async fn namespaces(&mut self) -> Result<Namespaces> {
        if !self.caps.has("NAMESPACE") {
            return Ok(Namespaces::default());
        }
        let mut out: Option<Namespaces> = None;
        self.exec("NAMESPACE", &[text("NAMESPACE")], |u| {
            if let Untagged::Unparsed(line) = u {
                if line.starts_with(b"* NAMESPACE ") {
                    out = Some(wire::parse_namespace_line(line).map_err(|detail| {
                        ImapError::Protocol {
                            command: "NAMESPACE".into(),
                            detail,
                        }
                    })?);
                }
            }
            Ok(())
        })
        .await?;
        out.ok_or_else(|| ImapError::Protocol {
            command: "NAMESPACE".into(),
            detail: "no NAMESPACE response".into(),
        })
    }

    /// `LIST "" "*"` (with `RETURN (SPECIAL-USE)` when offered). Entries in server order.
    pub async fn list(&mut self) -> Result<Vec<MailboxEntry>> {
        let cmd = if self.caps.has("SPECIAL-USE") {
            "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        } else {
            "LIST \"\" \"*\""
        };
        let mut entries = Vec::new();
        // After `ENABLE UTF8=ACCEPT` names are UTF-8 as they stand: "A&-B" is not mUTF-7 then.
        let utf8 = self.utf8;
        self.exec("LIST", &[text(cmd)], |u| {
            let line = match u {
                Untagged::Parsed(r) => match r.parsed() {
                    Response::MailboxData(MailboxDatum::List(_)) => r.raw(),
                    _ => return Ok(()),
                },
                Untagged::Unparsed(l) if l.starts_with(b"* LIST ") => l,
                Untagged::Unparsed(_) => return Ok(()),
            };
            let mut e = wire::parse_list_line(line).map_err(|detail| ImapError::Protocol {
                command: "LIST".into(),
                detail,
            })?;
            if utf8 {
                e.name = e.raw_name.clone();
            }
            entries.push(e);
            Ok(())
        })
        .await?;
        Ok(entries)
    }

    /// CREATE with the raw (already encoded) name. Refuses a name that is not canonical modified
    /// UTF-7 (unless `UTF8=ACCEPT` was enabled): Dovecot would refuse it too, other servers might
    /// store a name nobody can read.
    pub async fn create(&mut self, raw_name: &str) -> Result<()> {
        if !self.utf8 && !crate::mutf7::is_canonical(raw_name) {
            return Err(ImapError::Invalid(format!(
                "{raw_name:?} is not canonical modified UTF-7 (encode it with mutf7::encode)"
            )));
        }
        let parts = [text("CREATE "), wire::mailbox_arg(raw_name)?];
        self.exec("CREATE", &parts, ignore).await?;
        Ok(())
    }

    /// DELETE with the raw name (as listed).
    pub async fn delete(&mut self, raw_name: &str) -> Result<()> {
        let parts = [text("DELETE "), wire::mailbox_arg(raw_name)?];
        self.exec("DELETE", &parts, ignore).await?;
        Ok(())
    }

    /// SELECT (or EXAMINE when `read_only`). Uses `(CONDSTORE)` when offered so HIGHESTMODSEQ comes back.
    pub async fn select(&mut self, raw_name: &str, read_only: bool) -> Result<SelectInfo> {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let mut parts = vec![text(format!("{verb} ")), wire::mailbox_arg(raw_name)?];
        if self.caps.has("CONDSTORE") {
            parts.push(text(" (CONDSTORE)"));
        }
        let mut info = SelectInfo {
            read_only,
            ..SelectInfo::default()
        };
        let done = self
            .exec(verb, &parts, |u| {
                if let Untagged::Parsed(r) = u {
                    match r.parsed() {
                        Response::MailboxData(MailboxDatum::Exists(n)) => info.exists = *n,
                        Response::MailboxData(MailboxDatum::Flags(f)) => {
                            info.flags = f.iter().map(|f| f.to_string()).collect()
                        }
                        Response::Data {
                            status: Status::Ok,
                            outcome,
                        } => match &outcome.code {
                            Some(ResponseCode::UidValidity(v)) => info.uidvalidity = Some(*v),
                            Some(ResponseCode::UidNext(v)) => info.uidnext = Some(*v),
                            Some(ResponseCode::HighestModSeq(v)) => info.highestmodseq = Some(*v),
                            Some(ResponseCode::PermanentFlags(f)) => {
                                info.permanent_flags =
                                    Some(f.iter().map(|f| f.to_string()).collect())
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
                Ok(())
            })
            .await?;
        match done.code.as_deref() {
            Some("READ-ONLY") => info.read_only = true,
            Some("READ-WRITE") => info.read_only = false,
            _ => {}
        }
        Ok(info)
    }

    /// STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN [HIGHESTMODSEQ]) of `raw_name`. STATUS responses
    /// about other mailboxes are ignored; INBOX matches case-insensitively.
    pub async fn status(&mut self, raw_name: &str) -> Result<StatusInfo> {
        let items = if self.caps.has("CONDSTORE") {
            " (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
        } else {
            " (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"
        };
        let parts = [text("STATUS "), wire::mailbox_arg(raw_name)?, text(items)];
        let mut info: Option<StatusInfo> = None;
        let label = self.endpoint.label.clone();
        self.exec("STATUS", &parts, |u| {
            if let Untagged::Parsed(r) = u {
                if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r.parsed()
                {
                    // Only the mailbox asked about: a server may send STATUS of others unasked
                    // (NOTIFY), and names the one asked about in its own way ("Inbox").
                    if !wire::same_mailbox(raw_name, mailbox) {
                        tracing::debug!(endpoint = %label, "ignoring STATUS of {mailbox:?} (asked for {raw_name:?})");
                        return Ok(());
                    }
                    let i = info.get_or_insert_with(StatusInfo::default);
                    for s in status {
                        match s {
                            StatusAttribute::Messages(n) => i.messages = Some(*n),
                            StatusAttribute::UidNext(n) => i.uidnext = Some(*n),
                            StatusAttribute::UidValidity(n) => i.uidvalidity = Some(*n),
                            StatusAttribute::Unseen(n) => i.unseen = Some(*n),
                            StatusAttribute::HighestModSeq(n) => i.highestmodseq = Some(*n),
                            _ => {}
                        }
                    }
                }
            }
            Ok(())
        })
        .await?;
        info.ok_or_else(|| ImapError::Protocol {
            command: "STATUS".into(),
            detail: format!("no STATUS response for {raw_name:?}"),
        })
    }

    async fn fetch_meta_once(
        &mut self,
        uid_set: &str,
        items: &str,
    ) -> Result<(Vec<Partial>, Vec<u32>)> {
        let label = self.endpoint.label.clone();
        let mut col = FetchCollector::default();
        self.exec(
            "UID FETCH",
            &[text(format!("UID FETCH {uid_set} ({items})"))],
            |u| col.on(u, &label),
        )
        .await?;
        Ok(col.finish())
    }

    /// `UID FETCH <uid_set> (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (<headers>)])`
    /// on the selected mailbox. When `headers` is empty, fetch `BODY.PEEK[HEADER]` (the whole header block).
    /// Sorted by UID.
    ///
    /// Only UIDs inside `uid_set` are returned, `*` counting as "no upper bound": a server answers
    /// `4:*` with its last message even when that UID is below 4, and that one was not asked for.
    /// A message whose answer lacks a requested item (some servers send `FETCH (UID 7 )`) is fetched
    /// once more on its own; if the item is still missing the call fails rather than guessing (empty
    /// flags would clear `\Seen` on the copy). A message the second FETCH does not return at all was
    /// expunged in between and is left out, like any message that vanished before the listing.
    pub async fn fetch_meta(
        &mut self,
        uid_set: &str,
        headers: &[String],
    ) -> Result<Vec<MessageMeta>> {
        let set = wire::UidSet::parse(uid_set)?;
        let section = if headers.is_empty() {
            "BODY.PEEK[HEADER]".to_string()
        } else {
            for h in headers {
                wire::check_header_name(h)?;
            }
            format!("BODY.PEEK[HEADER.FIELDS ({})]", headers.join(" "))
        };
        let items = format!("UID FLAGS INTERNALDATE RFC822.SIZE {section}");
        let (parts, unparsed) = self.fetch_meta_once(uid_set, &items).await?;
        // Items gathered per UID over both FETCHes: the second one only has to supply what the
        // first left out (a server may answer the retry with just the missing item).
        let mut gathered: BTreeMap<u32, Partial> = BTreeMap::new();
        let label = self.endpoint.label.clone();
        let gather = |parts: Vec<Partial>, gathered: &mut BTreeMap<u32, Partial>| {
            for p in parts {
                let Some(uid) = p.uid else { continue };
                if !set.contains(uid) {
                    tracing::debug!(endpoint = %label, "ignoring FETCH for UID {uid} outside {uid_set}");
                    continue;
                }
                gathered.entry(uid).or_default().merge(p);
            }
        };
        gather(parts, &mut gathered);
        let mut retry: Vec<u32> = unparsed.into_iter().filter(|u| set.contains(*u)).collect();
        retry.extend(
            gathered
                .iter()
                .filter(|(_, p)| !p.is_complete())
                .map(|(u, _)| *u),
        );
        retry.retain(|u| !gathered.get(u).is_some_and(Partial::is_complete));
        retry.sort_unstable();
        retry.dedup();
        if !retry.is_empty() {
            tracing::warn!(
                endpoint = %self.endpoint.label,
                "{} message(s) came back without all requested items; fetching them again",
                retry.len()
            );
            let (parts, unparsed) = self.fetch_meta_once(&wire::uid_set(&retry), &items).await?;
            // What the server answered for at all (complete or not): the others are gone.
            let answered: HashSet<u32> =
                parts.iter().filter_map(|p| p.uid).chain(unparsed).collect();
            gather(parts, &mut gathered);
            let (missing, gone): (Vec<u32>, Vec<u32>) = retry
                .iter()
                .copied()
                .filter(|u| !gathered.get(u).is_some_and(Partial::is_complete))
                .partition(|u| answered.contains(u));
            if !gone.is_empty() {
                tracing::debug!(
                    endpoint = %self.endpoint.label,
                    "UIDs {} vanished between the two FETCHes (expunged meanwhile)",
                    wire::uid_set(&gone)
                );
            }
            if !missing.is_empty() {
                return Err(ImapError::Protocol {
                    command: "UID FETCH".into(),
                    detail: format!("the server left out requested items (FLAGS/INTERNALDATE/RFC822.SIZE/header) for UIDs {}", wire::uid_set(&missing)),
                });
            }
        }
        Ok(gathered
            .into_values()
            .filter_map(Partial::into_meta)
            .collect())
    }

    /// `UID FETCH <uids> (UID BODY.PEEK[])`: the exact bytes; never sets `\Seen`.
    /// Returns (uid, bytes) for the UIDs the server returned (a vanished UID is simply absent),
    /// sorted by UID. UIDs not asked for are dropped.
    ///
    /// A message answered without its body (a FETCH response with the UID but no `BODY[]`, e.g. only
    /// an unsolicited FLAGS update) is fetched once more on its own, like a missing item in
    /// [`Session::fetch_meta`]; still without a body it is an error, never taken for "vanished".
    pub async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let (mut out, no_body) = self.fetch_bodies_once(uids).await?;
        if !no_body.is_empty() {
            tracing::warn!(
                endpoint = %self.endpoint.label,
                "UIDs {} came back without their body; fetching them again",
                wire::uid_set(&no_body)
            );
            let (again, still) = self.fetch_bodies_once(&no_body).await?;
            if !still.is_empty() {
                return Err(ImapError::Protocol {
                    command: "UID FETCH".into(),
                    detail: format!(
                        "the server answered UIDs {} twice without the requested BODY[]",
                        wire::uid_set(&still)
                    ),
                });
            }
            out.extend(again);
        }
        Ok(out.into_iter().collect())
    }

    /// One `UID FETCH (UID BODY.PEEK[])`: the bodies by UID, and the UIDs answered without one.
    async fn fetch_bodies_once(
        &mut self,
        uids: &[u32],
    ) -> Result<(BTreeMap<u32, Vec<u8>>, Vec<u32>)> {
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let label = self.endpoint.label.clone();
        let mut col = FetchCollector::default();
        self.exec(
            "UID FETCH",
            &[text(format!(
                "UID FETCH {} (UID BODY.PEEK[])",
                wire::uid_set(uids)
            ))],
            |u| col.on(u, &label),
        )
        .await?;
        let (parts, unparsed) = col.finish();
        let mut out: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut nil = Vec::new();
        let mut no_body = BTreeSet::new();
        for p in parts {
            let Some(uid) = p.uid else { continue };
            if !wanted.contains(&uid) {
                continue;
            }
            match p.body {
                Some(Some(b)) => {
                    out.insert(uid, b);
                }
                Some(None) => nil.push(uid),
                None => {
                    no_body.insert(uid);
                }
            }
        }
        let bad: Vec<u32> = unparsed
            .into_iter()
            .filter(|u| wanted.contains(u) && !out.contains_key(u))
            .collect();
        if !bad.is_empty() || !nil.is_empty() {
            return Err(ImapError::Protocol {
                command: "UID FETCH".into(),
                detail: format!(
                    "no usable body for UIDs {} (unparsable or NIL)",
                    wire::uid_set(&[bad, nil].concat())
                ),
            });
        }
        let no_body = no_body
            .into_iter()
            .filter(|u| !out.contains_key(u))
            .collect();
        Ok((out, no_body))
    }

    /// APPEND the messages to `raw_name`: MULTIAPPEND in one command when the server offers it and there are
    /// several, LITERAL+ (non-synchronising literals) when offered. All or nothing (a NO fails the batch;
    /// the caller retries one by one to find the culprit). Returns host2's UID for each message, in order,
    /// when the tagged OK carries `[APPENDUID v uid-set]`, else `None`s.
    ///
    /// Several messages without MULTIAPPEND are refused (`Invalid`) rather than sent one by one: a
    /// failure half-way would leave some appended and the caller could not tell which
    /// (see [`Session::max_append_batch`]).
    pub async fn append(
        &mut self,
        raw_name: &str,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Option<u32>>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        if messages.len() > 1 && !self.caps.has("MULTIAPPEND") {
            return Err(ImapError::Invalid(format!(
                "{} messages in one APPEND but the server lacks MULTIAPPEND: send them one at a time",
                messages.len()
            )));
        }
        wire::mailbox_arg(raw_name)?;
        if let Some(why) = &self.broken {
            return Err(ImapError::ConnectionLost {
                command: "APPEND".into(),
                detail: format!("session unusable after an earlier error: {why}"),
            });
        }
        let mut flags = Vec::with_capacity(messages.len());
        let mut dates = Vec::with_capacity(messages.len());
        for m in messages {
            flags.push(
                if m.flags.iter().all(|f| f.eq_ignore_ascii_case("\\Recent")) {
                    None
                } else {
                    Some(wire::flag_list(&m.flags)?)
                },
            );
            dates.push(
                m.internaldate
                    .as_ref()
                    .map(wire::format_internaldate)
                    .transpose()?,
            );
        }
        let msgs: Vec<AppendMessage<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| AppendMessage {
                flags: flags[i].as_deref(),
                internaldate: dates[i].as_deref(),
                content: m.body,
            })
            .collect();
        let lp = self.caps.has("LITERAL+");
        let total: usize = messages.iter().map(|m| m.body.len()).sum();
        tracing::trace!(endpoint = %self.endpoint.label, "> APPEND {} message(s), {total} bytes", messages.len());
        crate::stats::count(&self.endpoint, "APPEND");
        let res = self.inner.append_multi(raw_name, &msgs, lp).await;
        for line in self.inner.take_unparsed() {
            tracing::warn!(endpoint = %self.endpoint.label, "ignoring a response imap-proto cannot parse: {:?}", String::from_utf8_lossy(&line[..line.len().min(200)]));
        }
        let mut bye = None;
        while let Ok(u) = self.inner.unsolicited_responses.try_recv() {
            if let async_imap::types::UnsolicitedResponse::Other(r) = u {
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = r.parsed()
                {
                    bye = Some(outcome.information.as_deref().unwrap_or("").to_string());
                }
            }
        }
        match res {
            Ok(Some(au)) => match au.expand(messages.len()) {
                Some(v) if v.len() == messages.len() => Ok(v.into_iter().map(Some).collect()),
                _ => {
                    tracing::warn!(endpoint = %self.endpoint.label, "APPENDUID {au:?} does not match {} messages", messages.len());
                    Ok(vec![None; messages.len()])
                }
            },
            Ok(None) => Ok(vec![None; messages.len()]),
            Err(e) => {
                let mut err = from_async("APPEND", &self.endpoint, e);
                if let (ImapError::ConnectionLost { detail, .. }, Some(b)) = (&mut err, bye) {
                    *detail = format!("server said BYE: {b}");
                }
                if is_fatal(&err) {
                    self.broken = Some(err.to_string());
                }
                Err(err)
            }
        }
    }

    /// `UID STORE <uids> FLAGS|+FLAGS|-FLAGS.SILENT (<flags>)` on the selected mailbox.
    pub async fn uid_store(
        &mut self,
        uids: &[u32],
        mode: StoreMode,
        flags: &[String],
    ) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let list = wire::flag_list(flags)?;
        if list == "()" && mode != StoreMode::Replace {
            return Ok(());
        }
        let op = match mode {
            StoreMode::Add => "+FLAGS.SILENT",
            StoreMode::Remove => "-FLAGS.SILENT",
            StoreMode::Replace => "FLAGS.SILENT",
        };
        let cmd = format!("UID STORE {} {op} {list}", wire::uid_set(uids));
        self.exec("UID STORE", &[text(cmd)], ignore).await?;
        Ok(())
    }

    /// `UID SEARCH <criteria>` on the selected mailbox. Sorted.
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        wire::check_line("search criteria", criteria)?;
        let mut out = Vec::new();
        self.exec(
            "UID SEARCH",
            &[text(format!("UID SEARCH {criteria}"))],
            |u| {
                if let Untagged::Parsed(r) = u {
                    if let Response::MailboxData(MailboxDatum::Search(v)) = r.parsed() {
                        out.extend_from_slice(v);
                    }
                }
                Ok(())
            },
        )
        .await?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// `UID MOVE <uids> <raw_name>` (RFC 6851) on the selected mailbox. Needs MOVE: without it the
    /// caller decides how to emulate it (COPY, `\Deleted`, UID EXPUNGE) and what to do if that is
    /// interrupted. An empty `uids` does nothing.
    pub async fn uid_move(&mut self, uids: &[u32], raw_name: &str) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        if !self.caps.has("MOVE") {
            return Err(ImapError::Invalid(
                "UID MOVE without the MOVE capability".into(),
            ));
        }
        let parts = [
            text(format!("UID MOVE {} ", wire::uid_set(uids))),
            wire::mailbox_arg(raw_name)?,
        ];
        self.exec("UID MOVE", &parts, ignore).await?;
        Ok(())
    }

    /// `UID COPY <uids> <raw_name>` on the selected mailbox. An empty `uids` does nothing.
    pub async fn uid_copy(&mut self, uids: &[u32], raw_name: &str) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let parts = [
            text(format!("UID COPY {} ", wire::uid_set(uids))),
            wire::mailbox_arg(raw_name)?,
        ];
        self.exec("UID COPY", &parts, ignore).await?;
        Ok(())
    }

    /// Expunge `\Deleted` messages: `UID EXPUNGE <uids>` with UIDPLUS, else `EXPUNGE`.
    /// An empty `uids` does nothing.
    pub async fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        if self.caps.has("UIDPLUS") {
            let cmd = format!("UID EXPUNGE {}", wire::uid_set(uids));
            self.exec("UID EXPUNGE", &[text(cmd)], ignore).await?;
        } else {
            tracing::debug!(endpoint = %self.endpoint.label, "no UIDPLUS: plain EXPUNGE removes every \\Deleted message");
            self.exec("EXPUNGE", &[text("EXPUNGE")], ignore).await?;
        }
        Ok(())
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<()> {
        self.exec("NOOP", &[text("NOOP")], ignore).await?;
        Ok(())
    }

    /// LOGOUT and close (errors ignored).
    pub async fn logout(mut self) {
        if self.broken.is_none() {
            if let Err(e) = self.exec("LOGOUT", &[text("LOGOUT")], ignore).await {
                tracing::debug!(endpoint = %self.endpoint.label, "LOGOUT: {e}");
            }
        }
        use tokio::io::AsyncWriteExt;
        let _ = self.inner.get_mut().shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Session>();
    }

    /// Compile-time check: every command's future can go into `tokio::spawn`.
    #[allow(dead_code)]
    fn futures_are_send(s: &'static mut Session, ep: &'static Endpoint) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&Session::connect(ep));
        is_send(&s.id());
        is_send(&s.enable(&[]));
        is_send(&s.namespaces());
        is_send(&s.list());
        is_send(&s.create("x"));
        is_send(&s.delete("x"));
        is_send(&s.select("x", false));
        is_send(&s.status("x"));
        is_send(&s.fetch_meta("1:*", &[]));
        is_send(&s.fetch_bodies(&[]));
        is_send(&s.append("x", &[]));
        is_send(&s.uid_store(&[], StoreMode::Add, &[]));
        is_send(&s.uid_search("ALL"));
        is_send(&s.expunge(&[]));
        is_send(&s.uid_move(&[], "x"));
        is_send(&s.uid_copy(&[], "x"));
        is_send(&s.noop());
    }

    #[test]
    fn transient_refusals() {
        assert!(transient_auth_refusal(
            Some("LIMIT"),
            "Maximum number of connections"
        ));
        assert!(transient_auth_refusal(
            None,
            "Request is throttled. Suggested Backoff Time: 299609 milliseconds"
        ));
        assert!(!transient_auth_refusal(
            Some("AUTHENTICATIONFAILED"),
            "Authentication failed."
        ));
        assert!(!transient_auth_refusal(None, "Authentication failed."));
    }

    #[test]
    fn quoted_sections_are_unescaped() {
        let raw = b"* 1 FETCH (BODY[] \"a\\\\b\")\r\n";
        assert_eq!(section_bytes(raw, b"a\\\\b"), b"a\\b");
        let raw = b"* 1 FETCH (BODY[] {4}\r\na\\\\b)\r\n";
        assert_eq!(section_bytes(raw, b"a\\\\b"), b"a\\\\b");
    }
}
