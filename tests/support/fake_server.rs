//! A scripted fake IMAP server for the tests (a fixture, not a product part).
//!
//! One tokio listener on 127.0.0.1:0. Each connection gets the greeting, then every command the
//! client sends is answered by the first of these that applies:
//!
//! 1. a **quirk** of the misbehaving server being imitated ([`Config`]: a busy greeting on the first
//!    connections, an APPEND that gets a throttling `NO` and a dropped connection, a `BYE` for
//!    commands naming too many UIDs, a connection cut after the n-th command of some verb, messages
//!    hidden until `ENABLE UTF8=ACCEPT`);
//! 2. the **next scripted step**, when the command matches it loosely: same verb (SELECT and
//!    EXAMINE count as one), same mailbox argument, for FETCH an overlapping UID set and the step's
//!    items among the ones asked for. The step's bytes are sent with `{tag}` replaced by the
//!    command's tag. When the client asked for more FETCH items than the step's `client` hint
//!    names, or for more UIDs, the missing items / messages are added from the mailbox model, so a
//!    script written for `UID FETCH 1:* (UID FLAGS)` still answers a tool that also wants headers;
//!    the items the hint names are the script's alone (a FLAGS the script leaves out stays out);
//! 3. a small **in-memory mailbox model** ([`Folder`]s of [`Message`]s) that gives minimal valid
//!    answers to CAPABILITY, LOGIN/AUTHENTICATE, NAMESPACE, LIST, STATUS, SELECT/EXAMINE, CREATE,
//!    APPEND (MULTIAPPEND too), FETCH/UID FETCH, UID STORE, UID SEARCH, UID MOVE/COPY, EXPUNGE,
//!    ENABLE, ID, NOOP and LOGOUT.
//!
//! Literals from the client (`{n}` after `+ OK`, `{n+}` at once) are read, so APPEND works. Every
//! command is recorded ([`FakeServer::received`]) with its literals inlined, for assertions such as
//! "no EXPUNGE was sent" or "no command named more than 250 UIDs".

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One scripted exchange: when a command matching `client` arrives, send `server`.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the client is expected to send (a hint: matched loosely, see the module doc). A hint
    /// in angle brackets (`<base64 credentials>`) stands for a continuation line (a SASL response).
    pub client: String,
    /// Bytes to send; `{tag}` is replaced by the tag of the command being answered.
    pub server: Vec<u8>,
}

/// One stored message of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub flags: Vec<String>,
    /// INTERNALDATE as IMAP renders it, e.g. `01-Feb-2022 08:00:00 +0000`.
    pub internaldate: String,
    pub body: Vec<u8>,
}

/// One mailbox of the model.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The name as listed (mUTF-7 or whatever the imitated server sends).
    pub name: String,
    /// Special-use attribute sent in LIST, e.g. `\Trash`.
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: Vec<Message>,
}

/// Default INTERNALDATE of messages the model makes up.
pub const DEFAULT_DATE: &str = "01-Feb-2022 08:00:00 +0000";

impl Folder {
    pub fn new(name: &str) -> Folder {
        Folder {
            name: name.to_string(),
            special_use: None,
            uidvalidity: 1,
            uidnext: 1,
            messages: Vec::new(),
        }
    }

    /// Add a message with the next UID; returns it.
    pub fn push(&mut self, flags: &[&str], internaldate: &str, body: Vec<u8>) -> u32 {
        let uid = self.uidnext;
        self.insert(uid, flags, internaldate, body);
        uid
    }

    /// Add a message with this UID (kept in UID order; UIDNEXT moves past it).
    pub fn insert(&mut self, uid: u32, flags: &[&str], internaldate: &str, body: Vec<u8>) {
        self.messages.retain(|m| m.uid != uid);
        self.messages.push(Message {
            uid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internaldate: internaldate.to_string(),
            body,
        });
        self.messages.sort_by_key(|m| m.uid);
        self.uidnext = self.uidnext.max(uid.saturating_add(1));
    }

    pub fn get(&self, uid: u32) -> Option<&Message> {
        self.messages.iter().find(|m| m.uid == uid)
    }
}

/// An APPEND refused with a throttling `NO` (Office 365 style), then the connection dropped and
/// every login refused the same way until `window` has passed.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// The n-th APPEND command (1-based, counted over all connections) gets `reply`.
    pub on_append_number: usize,
    /// Tagged refusal (`{tag}` replaced).
    pub reply: Vec<u8>,
    /// Close the connection after the refusal.
    pub close_after: bool,
    /// How long LOGIN/AUTHENTICATE are refused (with `reply`) after the refusal.
    pub window: Duration,
}

/// What the fake server is and how it misbehaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// First bytes sent on a connection.
    pub greeting: Vec<u8>,
    /// Capabilities (CAPABILITY answers, before and after login).
    pub capabilities: String,
    pub separator: char,
    pub steps: Vec<Step>,
    pub folders: Vec<Folder>,
    /// `* FLAGS` / `* OK [PERMANENTFLAGS` lines (CRLF-terminated) sent by SELECT instead of the
    /// model's own, e.g. a server's exact quirky bytes. A writable folder then refuses APPEND and
    /// STORE of keywords missing from PERMANENTFLAGS when it has no `\*`.
    pub select_flag_lines: Option<Vec<u8>>,
    /// The first this many connections get `busy_greeting` and are closed.
    pub busy_connections: usize,
    pub busy_greeting: Vec<u8>,
    pub throttle: Option<Throttle>,
    /// UIDs (of any folder) that are invisible until the connection sent `ENABLE UTF8=ACCEPT`:
    /// left out of listings, and a body FETCH of one gets `hidden_reply`.
    pub hidden_until_utf8: Vec<u32>,
    pub hidden_reply: Vec<u8>,
    /// A bulk command (UID STORE / COPY / MOVE / EXPUNGE) whose UID set names more than this many
    /// messages of the selected folder gets `bye_reply` and the connection is closed.
    pub max_uids_per_command: Option<usize>,
    pub bye_reply: Vec<u8>,
    /// Close the connection (once) right after answering the n-th command with this verb
    /// (e.g. `("UID MOVE", 3)`).
    pub cut_after: Option<(String, usize)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            greeting: Vec::new(),
            capabilities: "IMAP4rev1 AUTH=PLAIN".into(),
            separator: '/',
            steps: Vec::new(),
            folders: Vec::new(),
            select_flag_lines: None,
            busy_connections: 0,
            busy_greeting: Vec::new(),
            throttle: None,
            hidden_until_utf8: Vec::new(),
            hidden_reply: b"{tag} NO [UNAVAILABLE] message unavailable\r\n".to_vec(),
            max_uids_per_command: None,
            bye_reply: b"* BYE Connection closed.\r\n".to_vec(),
            cut_after: None,
        }
    }
}

/// One command as received (tag removed, literals inlined as `{n}\r\n<bytes>`), or a continuation
/// line (tag `+`).
#[derive(Debug, Clone)]
pub struct Received {
    /// Connection number, from 0.
    pub conn: usize,
    pub tag: String,
    pub command: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.command).into_owned()
    }

    /// Upper-cased verb, with `UID` and its sub-command as one (`UID FETCH`).
    pub fn verb(&self) -> String {
        verb_of(&self.command)
    }
}

/// A throttling refusal that was sent.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleEvent {
    pub at: Instant,
    pub until: Instant,
}

struct Shared {
    cfg: Config,
    folders: Vec<Folder>,
    next_step: usize,
    received: Vec<Received>,
    connections: usize,
    appends: usize,
    throttled_until: Option<Instant>,
    throttle_events: Vec<ThrottleEvent>,
    /// Refusals sent while throttled (logins refused).
    throttled_logins: usize,
    verb_counts: std::collections::HashMap<String, usize>,
    cut_done: bool,
    /// When each connection was accepted.
    accepted: Vec<Instant>,
    next_uidvalidity: u32,
}

/// A running fake server. Dropping it stops the listener (open connections end with the test).
pub struct FakeServer {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panicking connection task must not hide the state from the test's assertions.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeServer {
    pub async fn start(cfg: Config) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake server");
        let port = listener.local_addr().expect("local addr").port();
        let mut folders = cfg.folders.clone();
        if !folders.iter().any(|f| f.name.eq_ignore_ascii_case("INBOX")) {
            folders.insert(0, Folder::new("INBOX"));
        }
        let shared = Arc::new(Mutex::new(Shared {
            cfg,
            folders,
            next_step: 0,
            received: Vec::new(),
            connections: 0,
            appends: 0,
            throttled_until: None,
            throttle_events: Vec::new(),
            throttled_logins: 0,
            verb_counts: Default::default(),
            cut_done: false,
            accepted: Vec::new(),
            next_uidvalidity: 1000,
        }));
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                let n = {
                    let mut s = lock(&sh);
                    s.connections += 1;
                    s.accepted.push(Instant::now());
                    s.connections - 1
                };
                let sh = sh.clone();
                tokio::spawn(async move {
                    serve(sock, sh, n).await;
                });
            }
        });
        FakeServer { port, shared, task }
    }

    /// A plain-text endpoint for this server (any user and password are accepted).
    pub fn endpoint(&self, label: &str, user: &str) -> Endpoint {
        Endpoint {
            label: label.into(),
            host: "127.0.0.1".into(),
            port: self.port,
            security: Security::Plain,
            user: user.into(),
            authuser: None,
            password: Secret::new("secret"),
            auth: AuthMethod::Auto,
            ca_file: None,
            insecure: false,
            timeout: Duration::from_secs(10),
        }
    }

    /// Every command received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared).received.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared).connections
    }

    /// When each connection was accepted, in order.
    pub fn accepted(&self) -> Vec<Instant> {
        lock(&self.shared).accepted.clone()
    }

    /// A copy of a model folder.
    pub fn folder(&self, name: &str) -> Option<Folder> {
        lock(&self.shared)
            .folders
            .iter()
            .find(|f| f.name == name)
            .cloned()
    }

    /// Names of the model's folders.
    pub fn folder_names(&self) -> Vec<String> {
        lock(&self.shared)
            .folders
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    /// Remove a message from a model folder (another client expunged it).
    pub fn expunge(&self, folder: &str, uid: u32) {
        if let Some(f) = lock(&self.shared)
            .folders
            .iter_mut()
            .find(|f| f.name == folder)
        {
            f.messages.retain(|m| m.uid != uid);
        }
    }

    /// Start the script over: the server behaves as it did for the first run (same mailbox).
    pub fn replay_script(&self) {
        lock(&self.shared).next_step = 0;
    }

    /// Scripted steps not answered yet.
    pub fn steps_left(&self) -> usize {
        let s = lock(&self.shared);
        s.cfg.steps.len() - s.next_step.min(s.cfg.steps.len())
    }

    pub fn throttle_events(&self) -> Vec<ThrottleEvent> {
        lock(&self.shared).throttle_events.clone()
    }

    /// Logins refused because the throttle window was still open.
    pub fn throttled_logins(&self) -> usize {
        lock(&self.shared).throttled_logins
    }
}

// ---------------------------------------------------------------------------------------------
// Reading commands

/// One line from the client, with literals read and inlined. `None` at EOF.
async fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let body = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        all.extend_from_slice(&body);
        match literal_at_end(&body) {
            Some((n, plus)) => {
                if !plus {
                    r.get_mut().write_all(b"+ OK\r\n").await.ok()?;
                }
                let mut buf = vec![0u8; n];
                r.read_exact(&mut buf).await.ok()?;
                all.extend_from_slice(b"\r\n");
                all.extend_from_slice(&buf);
            }
            None => return Some(all),
        }
    }
}

/// `{n}` or `{n+}` (or `~{n}`) at the end of a line: (n, non-synchronising).
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let l = line.strip_suffix(b"}")?;
    let open = l.iter().rposition(|b| *b == b'{')?;
    let inner = &l[open + 1..];
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, plus))
}

fn split_tag(line: &[u8]) -> (String, Vec<u8>) {
    match line.iter().position(|b| *b == b' ') {
        Some(p) => (
            String::from_utf8_lossy(&line[..p]).into_owned(),
            line[p + 1..].to_vec(),
        ),
        None => (String::from_utf8_lossy(line).into_owned(), Vec::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens of a command

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom; a `[...]` section (with spaces and parentheses inside) belongs to it.
    Atom(String),
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    List(Vec<Tok>),
}

impl Tok {
    /// The value of an astring (atom, quoted or literal).
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Tok::Atom(a) => Some(a.as_bytes().to_vec()),
            Tok::Quoted(b) | Tok::Literal(b) => Some(b.clone()),
            Tok::List(_) => None,
        }
    }

    fn string(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

fn tokens(input: &[u8]) -> Vec<Tok> {
    let mut pos = 0;
    parse_seq(input, &mut pos, false)
}

fn parse_seq(s: &[u8], pos: &mut usize, in_list: bool) -> Vec<Tok> {
    let mut out = Vec::new();
    while *pos < s.len() {
        match s[*pos] {
            b' ' => *pos += 1,
            b')' if in_list => {
                *pos += 1;
                return out;
            }
            b'(' => {
                *pos += 1;
                out.push(Tok::List(parse_seq(s, pos, true)));
            }
            b'"' => {
                *pos += 1;
                let mut v = Vec::new();
                while *pos < s.len() && s[*pos] != b'"' {
                    if s[*pos] == b'\\' && *pos + 1 < s.len() {
                        *pos += 1;
                    }
                    v.push(s[*pos]);
                    *pos += 1;
                }
                *pos += 1;
                out.push(Tok::Quoted(v));
            }
            b'{' | b'~' => {
                let start = *pos;
                let rest = &s[start..];
                let close = rest.iter().position(|b| *b == b'}');
                let lit = close.and_then(|c| {
                    let inner = &rest[..c];
                    let inner = inner.strip_prefix(b"~").unwrap_or(inner);
                    let inner = inner.strip_prefix(b"{")?;
                    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
                    let n: usize = std::str::from_utf8(inner).ok()?.parse().ok()?;
                    rest.get(c + 1..c + 3)
                        .filter(|crlf| *crlf == b"\r\n")
                        .map(|_| (c + 3, n))
                });
                match lit {
                    Some((skip, n)) if start + skip + n <= s.len() => {
                        let from = start + skip;
                        out.push(Tok::Literal(s[from..from + n].to_vec()));
                        *pos = from + n;
                    }
                    _ => out.push(Tok::Atom(atom(s, pos))),
                }
            }
            _ => out.push(Tok::Atom(atom(s, pos))),
        }
    }
    out
}

fn atom(s: &[u8], pos: &mut usize) -> String {
    let start = *pos;
    let mut depth = 0usize;
    while *pos < s.len() {
        let b = s[*pos];
        match b {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b' ' | b'(' | b')' if depth == 0 => break,
            _ => {}
        }
        *pos += 1;
    }
    if *pos == start {
        // A lone special character: consume it so parsing always progresses.
        *pos += 1;
    }
    String::from_utf8_lossy(&s[start..*pos]).into_owned()
}

fn verb_of(command: &[u8]) -> String {
    let toks = tokens(command);
    let word = |i: usize| match toks.get(i) {
        Some(Tok::Atom(a)) => a.to_ascii_uppercase(),
        _ => String::new(),
    };
    let first = word(0);
    if first == "UID" {
        format!("UID {}", word(1))
    } else {
        first
    }
}

// ---------------------------------------------------------------------------------------------
// Sets

/// A UID or sequence set; `u32::MAX` stands for `*`.
#[derive(Debug, Clone, Default)]
struct Set(Vec<(u32, u32)>);

impl Set {
    fn parse(s: &str) -> Option<Set> {
        let mut v = Vec::new();
        for part in s.split(',') {
            let num = |x: &str| -> Option<u32> {
                if x == "*" {
                    Some(u32::MAX)
                } else {
                    x.parse().ok()
                }
            };
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            v.push((a.min(b), a.max(b)));
        }
        Some(Set(v))
    }

    /// Members among `values` (sorted), with RFC 3501's `*` = the largest value: `n:*` holds the
    /// last message even when it is below n.
    fn select(&self, values: &[u32]) -> Vec<u32> {
        let last = values.iter().copied().max();
        let resolve = |x: u32| if x == u32::MAX { last } else { Some(x) };
        let mut out = BTreeSet::new();
        for &(a, b) in &self.0 {
            let (Some(a), Some(b)) = (resolve(a), resolve(b)) else {
                continue;
            };
            let (a, b) = (a.min(b), a.max(b));
            out.extend(values.iter().copied().filter(|v| (a..=b).contains(v)));
        }
        out.into_iter().collect()
    }

    fn overlaps(&self, other: &Set) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| other.0.iter().any(|&(c, d)| a <= d && c <= b))
    }

    fn contains(&self, v: u32) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&v))
    }

    /// How many values it names (`*` ranges count as unbounded).
    fn size(&self) -> u64 {
        self.0
            .iter()
            .map(|&(a, b)| u64::from(b) - u64::from(a) + 1)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Matching scripted steps

fn norm_item(item: &str) -> String {
    let up = item.to_ascii_uppercase();
    let up = up.replacen("BODY.PEEK[", "BODY[", 1);
    up.replacen("BINARY.PEEK[", "BINARY[", 1)
}

/// Items of a FETCH command's item argument (a list or one item), normalised.
fn fetch_items(tok: Option<&Tok>) -> Vec<String> {
    let mut items = Vec::new();
    let mut push = |t: &Tok| {
        if let Tok::Atom(a) = t {
            items.push(norm_item(a));
        }
    };
    match tok {
        Some(Tok::List(l)) => l.iter().for_each(&mut push),
        Some(t) => push(t),
        None => {}
    }
    // `[HEADER.FIELDS (...)]` sections keep their list inside the atom; macros expand.
    let mut out = Vec::new();
    for i in items {
        match i.as_str() {
            "ALL" => {
                out.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"].map(String::from))
            }
            "FAST" => out.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE"].map(String::from)),
            _ => out.push(i),
        }
    }
    out
}

fn same_item(a: &str, b: &str) -> bool {
    let hf = "BODY[HEADER.FIELDS";
    a == b || (a.starts_with(hf) && b.starts_with(hf))
}

/// The parts of a command that matter for matching: verb, first argument, FETCH set and items.
struct Shape {
    verb: String,
    mailbox: Option<Vec<u8>>,
    set: Option<Set>,
    items: Vec<String>,
}

fn shape(command: &[u8]) -> Shape {
    let toks = tokens(command);
    let mut verb = verb_of(command);
    if verb == "EXAMINE" {
        verb = "SELECT".into();
    }
    let args: &[Tok] = if verb.starts_with("UID ") {
        toks.get(2..).unwrap_or(&[])
    } else {
        toks.get(1..).unwrap_or(&[])
    };
    let mut s = Shape {
        verb: verb.clone(),
        mailbox: None,
        set: None,
        items: Vec::new(),
    };
    match verb.as_str() {
        "FETCH" | "UID FETCH" => {
            s.set = args
                .first()
                .and_then(Tok::string)
                .and_then(|t| Set::parse(&t));
            s.items = fetch_items(args.get(1));
        }
        "SELECT" | "STATUS" | "CREATE" | "DELETE" | "APPEND" => {
            s.mailbox = args.first().and_then(Tok::bytes);
        }
        _ => {}
    }
    s
}

fn same_mailbox(a: &[u8], b: &[u8]) -> bool {
    a == b || (a.eq_ignore_ascii_case(b"INBOX") && b.eq_ignore_ascii_case(b"INBOX"))
}

/// Does `command` answer to the step hint `hint`?
fn step_matches(hint: &str, command: &[u8]) -> bool {
    let h = shape(hint.as_bytes());
    let c = shape(command);
    if h.verb != c.verb {
        return false;
    }
    if let (Some(a), Some(b)) = (&h.mailbox, &c.mailbox) {
        if !same_mailbox(a, b) {
            return false;
        }
    }
    if let (Some(a), Some(b)) = (&h.set, &c.set) {
        if !a.overlaps(b) {
            return false;
        }
    }
    h.items
        .iter()
        .all(|i| c.items.iter().any(|j| same_item(i, j)))
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn quote(name: &[u8]) -> Vec<u8> {
    if name
        .iter()
        .any(|b| *b >= 0x80 || *b == b'\r' || *b == b'\n')
    {
        let mut v = format!("{{{}}}\r\n", name.len()).into_bytes();
        v.extend_from_slice(name);
        return v;
    }
    let mut v = vec![b'"'];
    for &b in name {
        if b == b'"' || b == b'\\' {
            v.push(b'\\');
        }
        v.push(b);
    }
    v.push(b'"');
    v
}

fn literal(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{{{}}}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v
}

/// The header block of a message (up to and including the empty line).
fn header_block(body: &[u8]) -> &[u8] {
    match body.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &body[..p + 4],
        None => body,
    }
}

/// The fields named in `names` (case-insensitive), folded lines kept, plus the empty line.
fn header_fields(body: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let block = header_block(body);
    let mut out = Vec::new();
    let mut keep = false;
    let mut rest = block;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .unwrap_or(rest.len());
        let line = &rest[..end];
        rest = &rest[end..];
        if line == b"\r\n" {
            break;
        }
        if line[0] != b' ' && line[0] != b'\t' {
            let name = line.split(|b| *b == b':').next().unwrap_or(b"");
            let named = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            keep = named != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `BODY[...]` of one message for a (normalised) item, as the response item, or `None` for items
/// the model does not know.
fn render_item(item: &str, m: &Message) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    match item {
        "UID" => v.extend(format!("UID {}", m.uid).into_bytes()),
        "FLAGS" => v.extend(format!("FLAGS ({})", m.flags.join(" ")).into_bytes()),
        "INTERNALDATE" => v.extend(format!("INTERNALDATE \"{}\"", m.internaldate).into_bytes()),
        "RFC822.SIZE" => v.extend(format!("RFC822.SIZE {}", m.body.len()).into_bytes()),
        "RFC822" => {
            v.extend_from_slice(b"RFC822 ");
            v.extend(literal(&m.body));
        }
        "RFC822.HEADER" => {
            v.extend_from_slice(b"RFC822.HEADER ");
            v.extend(literal(header_block(&m.body)));
        }
        "ENVELOPE" | "BODYSTRUCTURE" | "MODSEQ" => return None,
        _ if item.starts_with("BODY[") || item.starts_with("BINARY[") => {
            let open = item.find('[')?;
            let close = item.rfind(']')?;
            let section = &item[open + 1..close];
            let data: Vec<u8> = if section.is_empty() {
                m.body.clone()
            } else if section == "HEADER" {
                header_block(&m.body).to_vec()
            } else if section == "TEXT" {
                m.body[header_block(&m.body).len()..].to_vec()
            } else if let Some(list) = section
                .strip_prefix("HEADER.FIELDS.NOT ")
                .map(|l| (l, true))
                .or_else(|| section.strip_prefix("HEADER.FIELDS ").map(|l| (l, false)))
            {
                let names: Vec<String> = list
                    .0
                    .trim_matches(|c| c == '(' || c == ')')
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                header_fields(&m.body, &names, list.1)
            } else {
                return None;
            };
            v.extend_from_slice(&item.as_bytes()[..=close]);
            v.push(b' ');
            v.extend(literal(&data));
        }
        _ => return None,
    }
    Some(v)
}

fn fetch_line(seq: usize, m: &Message, items: &[String]) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![format!("UID {}", m.uid).into_bytes()];
    for i in items {
        if i == "UID" {
            continue;
        }
        if let Some(p) = render_item(i, m) {
            parts.push(p);
        }
    }
    let mut v = format!("* {seq} FETCH (").into_bytes();
    v.extend(parts.join(&b' '));
    v.extend_from_slice(b")\r\n");
    v
}

// ---------------------------------------------------------------------------------------------
// Scripted replies

/// Response lines of a server script, literals kept with their line.
fn script_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        loop {
            let Some(nl) = bytes[pos..].windows(2).position(|w| w == b"\r\n") else {
                pos = bytes.len();
                break;
            };
            let line = &bytes[pos..pos + nl];
            pos += nl + 2;
            match literal_at_end(line) {
                Some((n, _)) => pos = (pos + n).min(bytes.len()),
                None => break,
            }
        }
        out.push(&bytes[start..pos]);
    }
    out
}

/// (sequence number, UID) of a `* n FETCH (... UID u ...)` line.
fn fetch_line_ids(line: &[u8]) -> Option<(usize, u32)> {
    let text = String::from_utf8_lossy(line);
    let rest = text.strip_prefix("* ")?;
    let (seq, rest) = rest.split_once(' ')?;
    if !rest.to_ascii_uppercase().starts_with("FETCH") {
        return None;
    }
    let seq: usize = seq.parse().ok()?;
    let up = rest.to_ascii_uppercase();
    let p = up.find("UID ")?;
    let digits: String = up[p + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((seq, digits.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// One connection

#[derive(Default)]
struct ConnState {
    authenticated: bool,
    selected: Option<String>,
    read_only: bool,
    utf8: bool,
    /// Capabilities the server announced on this connection after login (a scripted untagged
    /// CAPABILITY or a `[CAPABILITY ...]` code): CAPABILITY answers with them from then on.
    announced: Option<String>,
}

enum Pending {
    /// A scripted step sent a continuation request: the next line belongs to `tag`'s command.
    Scripted(String),
    /// The model asked for the SASL response of `tag`.
    Auth(String),
}

async fn serve(sock: TcpStream, sh: Arc<Mutex<Shared>>, conn: usize) {
    let mut r = BufReader::new(sock);
    let greeting = {
        let s = lock(&sh);
        if conn < s.cfg.busy_connections {
            Err(s.cfg.busy_greeting.clone())
        } else if s.cfg.greeting.is_empty() {
            Ok(format!(
                "* OK [CAPABILITY {}] fake server ready\r\n",
                s.cfg.capabilities
            )
            .into_bytes())
        } else {
            Ok(s.cfg.greeting.clone())
        }
    };
    match greeting {
        Err(busy) => {
            let _ = r.get_mut().write_all(&busy).await;
            let _ = r.get_mut().shutdown().await;
            return;
        }
        Ok(g) => {
            if r.get_mut().write_all(&g).await.is_err() {
                return;
            }
        }
    }
    let mut st = ConnState::default();
    let mut pending: Option<Pending> = None;
    while let Some(line) = read_command(&mut r).await {
        let (reply, close) = {
            let mut s = lock(&sh);
            match pending.take() {
                Some(p) => {
                    s.received.push(Received {
                        conn,
                        tag: "+".into(),
                        command: line.clone(),
                        at: Instant::now(),
                    });
                    continuation(&mut s, &mut st, p, &mut pending)
                }
                None => {
                    let (tag, command) = split_tag(&line);
                    s.received.push(Received {
                        conn,
                        tag: tag.clone(),
                        command: command.clone(),
                        at: Instant::now(),
                    });
                    answer(&mut s, &mut st, &tag, &command, &mut pending)
                }
            }
        };
        if !reply.is_empty() && r.get_mut().write_all(&reply).await.is_err() {
            return;
        }
        if close {
            let _ = r.get_mut().shutdown().await;
            return;
        }
    }
}

fn with_tag(bytes: &[u8], tag: &str) -> Vec<u8> {
    let text = bytes;
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"{tag}") {
            out.extend_from_slice(tag.as_bytes());
            i += 5;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Does a reply complete the command `tag` (a tagged line), or ask for more (a `+` line)?
fn completes(reply: &[u8], tag: &str) -> bool {
    let prefix = format!("{tag} ");
    script_lines(reply)
        .iter()
        .any(|l| l.starts_with(prefix.as_bytes()))
}

/// Capabilities a reply announces: an untagged CAPABILITY line or a `[CAPABILITY ...]` code.
fn announced_caps(reply: &[u8]) -> Option<String> {
    for l in script_lines(reply) {
        let t = String::from_utf8_lossy(l);
        let t = t.trim_end();
        if let Some(rest) = t.strip_prefix("* CAPABILITY ") {
            return Some(rest.to_string());
        }
        if let Some(p) = t.find("[CAPABILITY ") {
            let rest = &t[p + 12..];
            if let Some(end) = rest.find(']') {
                return Some(rest[..end].to_string());
            }
        }
    }
    None
}

fn continuation(
    s: &mut Shared,
    st: &mut ConnState,
    p: Pending,
    pending: &mut Option<Pending>,
) -> (Vec<u8>, bool) {
    match p {
        Pending::Scripted(tag) => {
            let step = s.cfg.steps.get(s.next_step).cloned();
            match step {
                Some(step) if step.client.starts_with('<') => {
                    s.next_step += 1;
                    let reply = with_tag(&step.server, &tag);
                    after_auth_reply(st, &reply, &tag);
                    if !completes(&reply, &tag) {
                        *pending = Some(Pending::Scripted(tag));
                    }
                    (reply, false)
                }
                _ => login_ok(s, st, &tag),
            }
        }
        Pending::Auth(tag) => login_ok(s, st, &tag),
    }
}

fn after_auth_reply(st: &mut ConnState, reply: &[u8], tag: &str) {
    if let Some(c) = announced_caps(reply) {
        st.announced = Some(c);
    }
    if reply.starts_with(format!("{tag} OK").as_bytes())
        || script_lines(reply)
            .iter()
            .any(|l| l.starts_with(format!("{tag} OK").as_bytes()))
    {
        st.authenticated = true;
    }
}

fn login_ok(s: &mut Shared, st: &mut ConnState, tag: &str) -> (Vec<u8>, bool) {
    if let (Some(until), Some(t)) = (s.throttled_until, s.cfg.throttle.as_ref()) {
        if Instant::now() < until {
            s.throttled_logins += 1;
            return (with_tag(&t.reply, tag), false);
        }
    }
    st.authenticated = true;
    (format!("{tag} OK Logged in\r\n").into_bytes(), false)
}

/// Answer one command: quirks, then the next scripted step, then the model.
fn answer(
    s: &mut Shared,
    st: &mut ConnState,
    tag: &str,
    command: &[u8],
    pending: &mut Option<Pending>,
) -> (Vec<u8>, bool) {
    let verb = verb_of(command);
    *s.verb_counts.entry(verb.clone()).or_default() += 1;
    let count = s.verb_counts[&verb];

    // Quirk: a bulk command (STORE, COPY, MOVE, EXPUNGE) naming too many messages. Listings
    // (FETCH, SEARCH) are not bulk commands: `UID FETCH 1:*` is what every client sends.
    if let Some(max) = s.cfg.max_uids_per_command {
        let bulk = matches!(
            verb.as_str(),
            "UID STORE" | "UID COPY" | "UID MOVE" | "UID EXPUNGE"
        );
        let set = tokens(command)
            .get(2)
            .and_then(Tok::string)
            .and_then(|t| Set::parse(&t));
        let named = match (&set, st.selected.as_deref().and_then(|n| find_folder(s, n))) {
            (Some(set), Some(f)) => {
                let uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
                set.select(&uids).len()
            }
            _ => 0,
        };
        if bulk && named > max {
            return (s.cfg.bye_reply.clone(), true);
        }
    }
    // Quirk: throttled APPEND.
    if verb == "APPEND" {
        s.appends += 1;
        if let Some(t) = s.cfg.throttle.clone() {
            if s.appends == t.on_append_number {
                let now = Instant::now();
                s.throttled_until = Some(now + t.window);
                s.throttle_events.push(ThrottleEvent {
                    at: now,
                    until: now + t.window,
                });
                return (with_tag(&t.reply, tag), t.close_after);
            }
        }
    }

    let (reply, close) = match scripted(s, st, tag, command, pending) {
        Some(r) => r,
        None => model(s, st, tag, command, pending),
    };
    // Quirk: cut the connection after the n-th command of a verb.
    let cut = match &s.cfg.cut_after {
        Some((v, n)) if !s.cut_done && *v == verb && *n == count => {
            s.cut_done = true;
            true
        }
        _ => false,
    };
    (reply, close || cut)
}

fn scripted(
    s: &mut Shared,
    st: &mut ConnState,
    tag: &str,
    command: &[u8],
    pending: &mut Option<Pending>,
) -> Option<(Vec<u8>, bool)> {
    let step = s.cfg.steps.get(s.next_step)?.clone();
    if step.client.starts_with('<') || !step_matches(&step.client, command) {
        return None;
    }
    s.next_step += 1;
    let mut reply = with_tag(&step.server, tag);
    let verb = verb_of(command);
    if verb == "AUTHENTICATE" || verb == "LOGIN" {
        after_auth_reply(st, &reply, tag);
    } else if let Some(c) = announced_caps(&reply) {
        st.announced = Some(c);
    }
    if !completes(&reply, tag) {
        *pending = Some(Pending::Scripted(tag.to_string()));
        return Some((reply, false));
    }
    if verb == "SELECT" || verb == "EXAMINE" {
        let c = shape(command);
        st.selected = c.mailbox.map(|m| String::from_utf8_lossy(&m).into_owned());
        st.read_only = verb == "EXAMINE";
    }
    if verb == "FETCH" || verb == "UID FETCH" {
        reply = supplement_fetch(
            s,
            st,
            &step.client,
            command,
            reply,
            tag,
            verb == "UID FETCH",
        );
    }
    Some((reply, false))
}

/// Add what the script leaves to the model: items the client asked for beyond the hint's, for the
/// messages the script answered; and whole answers for UIDs the client asked for beyond the hint's.
fn supplement_fetch(
    s: &Shared,
    st: &ConnState,
    hint: &str,
    command: &[u8],
    reply: Vec<u8>,
    tag: &str,
    by_uid: bool,
) -> Vec<u8> {
    let h = shape(hint.as_bytes());
    let c = shape(command);
    let Some(folder) = st.selected.as_deref().and_then(|n| find_folder(s, n)) else {
        return reply;
    };
    let extra: Vec<String> = c
        .items
        .iter()
        .filter(|i| *i != "UID" && !h.items.iter().any(|j| same_item(i, j)))
        .cloned()
        .collect();
    let mut add: Vec<u8> = Vec::new();
    let mut answered = BTreeSet::new();
    for line in script_lines(&reply) {
        let Some((seq, uid)) = fetch_line_ids(line) else {
            continue;
        };
        answered.insert(uid);
        if extra.is_empty() {
            continue;
        }
        if let Some(m) = folder.get(uid) {
            add.extend(fetch_line(seq, m, &extra));
        }
    }
    if by_uid {
        if let (Some(hs), Some(cs)) = (&h.set, &c.set) {
            let uids: Vec<u32> = folder.messages.iter().map(|m| m.uid).collect();
            let covered = hs.select(&uids);
            for uid in cs.select(&uids) {
                if covered.contains(&uid) || answered.contains(&uid) {
                    continue;
                }
                if let Some((i, m)) = folder
                    .messages
                    .iter()
                    .enumerate()
                    .find(|(_, m)| m.uid == uid)
                {
                    add.extend(fetch_line(i + 1, m, &c.items));
                }
            }
        }
    }
    if add.is_empty() {
        return reply;
    }
    // Before the tagged completion.
    let prefix = format!("{tag} ");
    let mut out = Vec::with_capacity(reply.len() + add.len());
    let mut inserted = false;
    for line in script_lines(&reply) {
        if !inserted && line.starts_with(prefix.as_bytes()) {
            out.extend_from_slice(&add);
            inserted = true;
        }
        out.extend_from_slice(line);
    }
    if !inserted {
        out.extend_from_slice(&add);
    }
    out
}

fn find_folder<'a>(s: &'a Shared, name: &str) -> Option<&'a Folder> {
    s.folders
        .iter()
        .find(|f| same_mailbox(f.name.as_bytes(), name.as_bytes()))
}

fn find_folder_mut<'a>(s: &'a mut Shared, name: &str) -> Option<&'a mut Folder> {
    s.folders
        .iter_mut()
        .find(|f| same_mailbox(f.name.as_bytes(), name.as_bytes()))
}

fn ok(tag: &str, text: &str) -> Vec<u8> {
    format!("{tag} OK {text}\r\n").into_bytes()
}

fn no(tag: &str, text: &str) -> Vec<u8> {
    format!("{tag} NO {text}\r\n").into_bytes()
}

fn bad(tag: &str, text: &str) -> Vec<u8> {
    format!("{tag} BAD {text}\r\n").into_bytes()
}

fn flags_of(tok: Option<&Tok>) -> Vec<String> {
    match tok {
        Some(Tok::List(l)) => l.iter().filter_map(Tok::string).collect(),
        Some(t) => t.string().into_iter().collect(),
        None => Vec::new(),
    }
}

/// PERMANENTFLAGS of the scripted SELECT lines, when the folder cannot take new keywords.
fn keyword_limit(s: &Shared) -> Option<Vec<String>> {
    let lines = s.cfg.select_flag_lines.as_ref()?;
    let text = String::from_utf8_lossy(lines);
    let p = text.find("[PERMANENTFLAGS (")?;
    let rest = &text[p + 17..];
    let list = &rest[..rest.find(')')?];
    let flags: Vec<String> = list.split_whitespace().map(String::from).collect();
    if flags.iter().any(|f| f == "\\*") {
        None
    } else {
        Some(flags)
    }
}

fn refused_keyword(s: &Shared, flags: &[String]) -> Option<String> {
    let allowed = keyword_limit(s)?;
    flags
        .iter()
        .find(|f| !f.starts_with('\\') && !allowed.iter().any(|a| a.eq_ignore_ascii_case(f)))
        .cloned()
}

fn model(
    s: &mut Shared,
    st: &mut ConnState,
    tag: &str,
    command: &[u8],
    pending: &mut Option<Pending>,
) -> (Vec<u8>, bool) {
    let toks = tokens(command);
    let verb = verb_of(command);
    let args: Vec<Tok> = if verb.starts_with("UID ") {
        toks.get(2..).unwrap_or(&[]).to_vec()
    } else {
        toks.get(1..).unwrap_or(&[]).to_vec()
    };
    let arg = |i: usize| args.get(i).and_then(Tok::string).unwrap_or_default();
    let caps = s.cfg.capabilities.clone();
    let has = |c: &str| caps.split_whitespace().any(|x| x.eq_ignore_ascii_case(c));
    match verb.as_str() {
        "CAPABILITY" => {
            let list = if st.authenticated {
                st.announced.clone().unwrap_or(caps.clone())
            } else {
                caps.clone()
            };
            let mut v = format!("* CAPABILITY {list}\r\n").into_bytes();
            v.extend(ok(tag, "Capability completed."));
            (v, false)
        }
        "LOGIN" => login_ok(s, st, tag),
        "AUTHENTICATE" => {
            if args.len() >= 2 {
                login_ok(s, st, tag)
            } else {
                *pending = Some(Pending::Auth(tag.to_string()));
                (b"+ \r\n".to_vec(), false)
            }
        }
        "LOGOUT" => {
            let mut v = b"* BYE Logging out\r\n".to_vec();
            v.extend(ok(tag, "Logout completed."));
            (v, true)
        }
        "NOOP" | "CHECK" | "IDLE" => (ok(tag, "NOOP completed."), false),
        "CLOSE" | "UNSELECT" => {
            st.selected = None;
            (ok(tag, "Done."), false)
        }
        "ID" => {
            let mut v = b"* ID NIL\r\n".to_vec();
            v.extend(ok(tag, "ID completed."));
            (v, false)
        }
        "ENABLE" => {
            let on: Vec<String> = args
                .iter()
                .filter_map(Tok::string)
                .filter(|e| has(e))
                .collect();
            if on.iter().any(|e| e.eq_ignore_ascii_case("UTF8=ACCEPT")) {
                st.utf8 = true;
            }
            let mut v = format!("* ENABLED {}\r\n", on.join(" ")).into_bytes();
            if on.is_empty() {
                v = b"* ENABLED\r\n".to_vec();
            }
            v.extend(ok(tag, "Enabled."));
            (v, false)
        }
        "NAMESPACE" => {
            let mut v =
                format!("* NAMESPACE ((\"\" \"{}\")) NIL NIL\r\n", s.cfg.separator).into_bytes();
            v.extend(ok(tag, "Namespace completed."));
            (v, false)
        }
        "LIST" | "LSUB" => {
            let mut v = Vec::new();
            for f in &s.folders {
                let mut attrs = vec!["\\HasNoChildren".to_string()];
                if let Some(su) = &f.special_use {
                    attrs.push(su.clone());
                }
                v.extend(
                    format!("* {verb} ({}) \"{}\" ", attrs.join(" "), s.cfg.separator).into_bytes(),
                );
                v.extend(quote(f.name.as_bytes()));
                v.extend_from_slice(b"\r\n");
            }
            v.extend(ok(tag, "List completed."));
            (v, false)
        }
        "STATUS" => {
            let name = arg(0);
            let Some(f) = find_folder(s, &name) else {
                return (no(tag, "[NONEXISTENT] Mailbox doesn't exist"), false);
            };
            let visible = visible(s, st, f);
            let mut items = Vec::new();
            for i in fetch_items(args.get(1)) {
                match i.as_str() {
                    "MESSAGES" => items.push(format!("MESSAGES {}", visible.len())),
                    "UIDNEXT" => items.push(format!("UIDNEXT {}", f.uidnext)),
                    "UIDVALIDITY" => items.push(format!("UIDVALIDITY {}", f.uidvalidity)),
                    "UNSEEN" => items.push(format!(
                        "UNSEEN {}",
                        visible
                            .iter()
                            .filter(|m| !m.flags.iter().any(|x| x.eq_ignore_ascii_case("\\Seen")))
                            .count()
                    )),
                    _ => {}
                }
            }
            let mut v = b"* STATUS ".to_vec();
            v.extend(quote(f.name.as_bytes()));
            v.extend(format!(" ({})\r\n", items.join(" ")).into_bytes());
            v.extend(ok(tag, "Status completed."));
            (v, false)
        }
        "SELECT" | "EXAMINE" => {
            let name = arg(0);
            let Some(f) = find_folder(s, &name) else {
                st.selected = None;
                return (no(tag, "[NONEXISTENT] Mailbox doesn't exist"), false);
            };
            let read_only = verb == "EXAMINE";
            let mut v = match &s.cfg.select_flag_lines {
                Some(lines) => lines.clone(),
                None => {
                    let perm = if read_only {
                        String::new()
                    } else {
                        "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*".into()
                    };
                    format!(
                        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS ({perm})] Flags permitted.\r\n"
                    )
                    .into_bytes()
                }
            };
            v.extend(
                format!(
                    "* {} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                    f.messages.len(),
                    f.uidvalidity,
                    f.uidnext
                )
                .into_bytes(),
            );
            let name = f.name.clone();
            v.extend(ok(
                tag,
                if read_only {
                    "[READ-ONLY] Examine completed."
                } else {
                    "[READ-WRITE] Select completed."
                },
            ));
            st.selected = Some(name);
            st.read_only = read_only;
            (v, false)
        }
        "CREATE" => {
            let name = arg(0);
            if find_folder(s, &name).is_some() {
                return (no(tag, "[ALREADYEXISTS] Mailbox already exists"), false);
            }
            let mut f = Folder::new(&name);
            f.uidvalidity = s.next_uidvalidity;
            s.next_uidvalidity += 1;
            s.folders.push(f);
            (ok(tag, "Create completed."), false)
        }
        "DELETE" => {
            let name = arg(0);
            let before = s.folders.len();
            s.folders
                .retain(|f| !same_mailbox(f.name.as_bytes(), name.as_bytes()));
            if s.folders.len() == before {
                (no(tag, "[NONEXISTENT] Mailbox doesn't exist"), false)
            } else {
                (ok(tag, "Delete completed."), false)
            }
        }
        "APPEND" => append(s, tag, &args),
        "FETCH" | "UID FETCH" => fetch(s, st, tag, &args, verb == "UID FETCH"),
        "STORE" | "UID STORE" => store(s, st, tag, &args, verb == "UID STORE"),
        "SEARCH" | "UID SEARCH" => search(s, st, tag, &args),
        "UID MOVE" | "UID COPY" | "MOVE" | "COPY" => copy_move(s, st, tag, &args, &verb),
        "EXPUNGE" | "UID EXPUNGE" => expunge(s, st, tag, &args, verb == "UID EXPUNGE"),
        _ => (bad(tag, "Unknown command"), false),
    }
}

/// Messages this connection may see (hidden ones need UTF8=ACCEPT).
fn visible<'a>(s: &Shared, st: &ConnState, f: &'a Folder) -> Vec<&'a Message> {
    f.messages
        .iter()
        .filter(|m| st.utf8 || !s.cfg.hidden_until_utf8.contains(&m.uid))
        .collect()
}

fn append(s: &mut Shared, tag: &str, args: &[Tok]) -> (Vec<u8>, bool) {
    let Some(name) = args.first().and_then(Tok::string) else {
        return (bad(tag, "Missing mailbox"), false);
    };
    // [flags] [date] literal, repeated (MULTIAPPEND).
    let mut msgs: Vec<(Vec<String>, Option<String>, Vec<u8>)> = Vec::new();
    let mut flags = Vec::new();
    let mut date = None;
    for t in &args[1..] {
        match t {
            Tok::List(_) => flags = flags_of(Some(t)),
            Tok::Quoted(d) => date = Some(String::from_utf8_lossy(d).into_owned()),
            Tok::Literal(body) => {
                msgs.push((std::mem::take(&mut flags), date.take(), body.clone()));
            }
            Tok::Atom(_) => {}
        }
    }
    if msgs.is_empty() {
        return (bad(tag, "Missing message literal"), false);
    }
    for (f, _, _) in &msgs {
        if let Some(k) = refused_keyword(s, f) {
            return (
                no(tag, &format!("[CANNOT] Keyword {k} not permitted")),
                false,
            );
        }
    }
    let uidplus = s
        .cfg
        .capabilities
        .split_whitespace()
        .any(|c| c.eq_ignore_ascii_case("UIDPLUS"));
    let Some(folder) = find_folder_mut(s, &name) else {
        return (no(tag, "[TRYCREATE] Mailbox doesn't exist"), false);
    };
    let mut uids = Vec::new();
    for (f, d, body) in msgs {
        let fl: Vec<&str> = f
            .iter()
            .map(String::as_str)
            .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
            .collect();
        let d = d.unwrap_or_else(|| DEFAULT_DATE.to_string());
        uids.push(folder.push(&fl, &d, body));
    }
    let text = if uidplus {
        let set = match (uids.first(), uids.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}:{b}"),
            (Some(a), _) => a.to_string(),
            _ => String::new(),
        };
        format!("[APPENDUID {} {set}] Append completed.", folder.uidvalidity)
    } else {
        "Append completed.".into()
    };
    (ok(tag, &text), false)
}

fn selected_folder<'a>(s: &'a Shared, st: &ConnState) -> Option<&'a Folder> {
    st.selected.as_deref().and_then(|n| find_folder(s, n))
}

fn fetch(s: &Shared, st: &ConnState, tag: &str, args: &[Tok], by_uid: bool) -> (Vec<u8>, bool) {
    let Some(f) = selected_folder(s, st) else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let Some(set) = args
        .first()
        .and_then(Tok::string)
        .and_then(|t| Set::parse(&t))
    else {
        return (bad(tag, "Invalid set"), false);
    };
    let mut items = fetch_items(args.get(1));
    if by_uid && !items.iter().any(|i| i == "UID") {
        items.insert(0, "UID".into());
    }
    let full_body = items
        .iter()
        .any(|i| i == "BODY[]" || i == "BINARY[]" || i == "RFC822");
    let all_uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
    let wanted: Vec<u32> = if by_uid {
        set.select(&all_uids)
    } else {
        let seqs: Vec<u32> = (1..=f.messages.len() as u32).collect();
        set.select(&seqs)
            .into_iter()
            .filter_map(|q| f.messages.get(q as usize - 1).map(|m| m.uid))
            .collect()
    };
    let mut v = Vec::new();
    for (i, m) in f.messages.iter().enumerate() {
        if !wanted.contains(&m.uid) {
            continue;
        }
        if !st.utf8 && s.cfg.hidden_until_utf8.contains(&m.uid) {
            if full_body && set.size() == 1 {
                return (with_tag(&s.cfg.hidden_reply, tag), false);
            }
            continue;
        }
        v.extend(fetch_line(i + 1, m, &items));
    }
    v.extend(ok(tag, "Fetch completed."));
    (v, false)
}

fn store(s: &mut Shared, st: &ConnState, tag: &str, args: &[Tok], by_uid: bool) -> (Vec<u8>, bool) {
    if st.read_only {
        return (no(tag, "Mailbox is read-only"), false);
    }
    let Some(set) = args
        .first()
        .and_then(Tok::string)
        .and_then(|t| Set::parse(&t))
    else {
        return (bad(tag, "Invalid set"), false);
    };
    let op = args
        .get(1)
        .and_then(Tok::string)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let flags = flags_of(args.get(2));
    if let Some(k) = refused_keyword(s, &flags) {
        return (
            no(tag, &format!("[CANNOT] Keyword {k} not permitted")),
            false,
        );
    }
    let Some(name) = st.selected.clone() else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let Some(f) = find_folder_mut(s, &name) else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let all_uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
    let wanted: Vec<u32> = if by_uid {
        set.select(&all_uids)
    } else {
        let seqs: Vec<u32> = (1..=f.messages.len() as u32).collect();
        set.select(&seqs)
            .into_iter()
            .filter_map(|q| f.messages.get(q as usize - 1).map(|m| m.uid))
            .collect()
    };
    let silent = op.ends_with(".SILENT");
    let mut v = Vec::new();
    for (i, m) in f.messages.iter_mut().enumerate() {
        if !wanted.contains(&m.uid) {
            continue;
        }
        let has = |m: &Message, x: &str| m.flags.iter().any(|y| y.eq_ignore_ascii_case(x));
        if op.starts_with('+') {
            for x in &flags {
                if !has(m, x) {
                    m.flags.push(x.clone());
                }
            }
        } else if op.starts_with('-') {
            m.flags
                .retain(|y| !flags.iter().any(|x| x.eq_ignore_ascii_case(y)));
        } else {
            m.flags = flags.clone();
        }
        if !silent {
            v.extend(
                format!(
                    "* {} FETCH (UID {} FLAGS ({}))\r\n",
                    i + 1,
                    m.uid,
                    m.flags.join(" ")
                )
                .into_bytes(),
            );
        }
    }
    v.extend(ok(tag, "Store completed."));
    (v, false)
}

fn search(s: &Shared, st: &ConnState, tag: &str, args: &[Tok]) -> (Vec<u8>, bool) {
    let Some(f) = selected_folder(s, st) else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let all_uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
    let mut hits: Vec<u32> = visible(s, st, f).iter().map(|m| m.uid).collect();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].string().unwrap_or_default().to_ascii_uppercase();
        match word.as_str() {
            "ALL" => {}
            "UID" => {
                let set = args
                    .get(i + 1)
                    .and_then(Tok::string)
                    .and_then(|t| Set::parse(&t));
                let keep = set.map(|s| s.select(&all_uids)).unwrap_or_default();
                hits.retain(|u| keep.contains(u));
                i += 1;
            }
            "DELETED" | "UNDELETED" => {
                let want = word == "DELETED";
                hits.retain(|u| {
                    f.get(*u).is_some_and(|m| {
                        m.flags.iter().any(|x| x.eq_ignore_ascii_case("\\Deleted")) == want
                    })
                });
            }
            "HEADER" => {
                let name = args.get(i + 1).and_then(Tok::string).unwrap_or_default();
                let value = args.get(i + 2).and_then(Tok::string).unwrap_or_default();
                hits.retain(|u| {
                    f.get(*u).is_some_and(|m| {
                        let h = header_fields(&m.body, std::slice::from_ref(&name), false);
                        String::from_utf8_lossy(&h)
                            .to_ascii_lowercase()
                            .contains(&value.to_ascii_lowercase())
                    })
                });
                i += 2;
            }
            _ => {
                if let Some(set) = Set::parse(&word) {
                    let seqs: Vec<u32> = (1..=f.messages.len() as u32).collect();
                    let keep: Vec<u32> = set
                        .select(&seqs)
                        .into_iter()
                        .filter_map(|q| f.messages.get(q as usize - 1).map(|m| m.uid))
                        .collect();
                    hits.retain(|u| keep.contains(u));
                }
            }
        }
        i += 1;
    }
    let list: Vec<String> = hits.iter().map(u32::to_string).collect();
    let mut v = if list.is_empty() {
        b"* SEARCH\r\n".to_vec()
    } else {
        format!("* SEARCH {}\r\n", list.join(" ")).into_bytes()
    };
    v.extend(ok(tag, "Search completed."));
    (v, false)
}

fn copy_move(
    s: &mut Shared,
    st: &ConnState,
    tag: &str,
    args: &[Tok],
    verb: &str,
) -> (Vec<u8>, bool) {
    let by_uid = verb.starts_with("UID ");
    let is_move = verb.ends_with("MOVE");
    let Some(set) = args
        .first()
        .and_then(Tok::string)
        .and_then(|t| Set::parse(&t))
    else {
        return (bad(tag, "Invalid set"), false);
    };
    let Some(dest) = args.get(1).and_then(Tok::string) else {
        return (bad(tag, "Missing mailbox"), false);
    };
    let Some(src_name) = st.selected.clone() else {
        return (bad(tag, "No mailbox selected"), false);
    };
    if find_folder(s, &dest).is_none() {
        return (no(tag, "[TRYCREATE] Mailbox doesn't exist"), false);
    }
    let (moved, src_validity): (Vec<Message>, u32) = {
        let Some(src) = find_folder(s, &src_name) else {
            return (bad(tag, "No mailbox selected"), false);
        };
        let all_uids: Vec<u32> = src.messages.iter().map(|m| m.uid).collect();
        let wanted: Vec<u32> = if by_uid {
            set.select(&all_uids)
        } else {
            let seqs: Vec<u32> = (1..=src.messages.len() as u32).collect();
            set.select(&seqs)
                .into_iter()
                .filter_map(|q| src.messages.get(q as usize - 1).map(|m| m.uid))
                .collect()
        };
        (
            src.messages
                .iter()
                .filter(|m| wanted.contains(&m.uid))
                .cloned()
                .collect(),
            src.uidvalidity,
        )
    };
    let mut v = Vec::new();
    if moved.is_empty() {
        v.extend(ok(tag, "No messages."));
        return (v, false);
    }
    let (dst_validity, new_uids) = {
        let Some(dst) = find_folder_mut(s, &dest) else {
            return (no(tag, "[TRYCREATE] Mailbox doesn't exist"), false);
        };
        let mut new_uids = Vec::new();
        for m in &moved {
            let fl: Vec<&str> = m.flags.iter().map(String::as_str).collect();
            new_uids.push(dst.push(&fl, &m.internaldate, m.body.clone()));
        }
        (dst.uidvalidity, new_uids)
    };
    let join = |u: &[u32]| u.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let old: Vec<u32> = moved.iter().map(|m| m.uid).collect();
    let code = format!(
        "[COPYUID {dst_validity} {} {}]",
        join(&old),
        join(&new_uids)
    );
    let _ = src_validity;
    if is_move {
        v.extend(format!("* OK {code} Moved\r\n").into_bytes());
        if let Some(src) = find_folder_mut(s, &src_name) {
            // EXPUNGE responses from the highest sequence number down keep the numbers valid.
            let seqs: Vec<usize> = src
                .messages
                .iter()
                .enumerate()
                .filter(|(_, m)| old.contains(&m.uid))
                .map(|(i, _)| i + 1)
                .collect();
            for q in seqs.iter().rev() {
                v.extend(format!("* {q} EXPUNGE\r\n").into_bytes());
            }
            src.messages.retain(|m| !old.contains(&m.uid));
        }
        v.extend(ok(tag, "Move completed."));
    } else {
        v.extend(ok(tag, &format!("{code} Copy completed.")));
    }
    (v, false)
}

fn expunge(
    s: &mut Shared,
    st: &ConnState,
    tag: &str,
    args: &[Tok],
    by_uid: bool,
) -> (Vec<u8>, bool) {
    if st.read_only {
        return (no(tag, "Mailbox is read-only"), false);
    }
    let set = if by_uid {
        args.first()
            .and_then(Tok::string)
            .and_then(|t| Set::parse(&t))
    } else {
        None
    };
    let Some(name) = st.selected.clone() else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let Some(f) = find_folder_mut(s, &name) else {
        return (bad(tag, "No mailbox selected"), false);
    };
    let gone: Vec<usize> = f
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.flags.iter().any(|x| x.eq_ignore_ascii_case("\\Deleted"))
                && set.as_ref().is_none_or(|s| s.contains(m.uid))
        })
        .map(|(i, _)| i)
        .collect();
    let mut v = Vec::new();
    for i in gone.iter().rev() {
        v.extend(format!("* {} EXPUNGE\r\n", i + 1).into_bytes());
        f.messages.remove(*i);
    }
    v.extend(ok(tag, "Expunge completed."));
    (v, false)
}

// ---------------------------------------------------------------------------------------------
// Case files

/// Replace each `{literal:PATH}` in `server` by `{N}\r\n` and the N bytes of `dir/PATH`.
pub fn expand_literals(server: &[u8], dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(server.len());
    let mut rest = server;
    let marker = b"{literal:";
    while let Some(p) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..p]);
        let after = &rest[p + marker.len()..];
        let end = after.iter().position(|b| *b == b'}').ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unterminated {literal:")
        })?;
        let path = String::from_utf8_lossy(&after[..end]).into_owned();
        let data = std::fs::read(dir.join(&path))?;
        out.extend(literal(&data));
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// A small distinct message for a UID the case gives no file for (unique Message-ID).
pub fn generated_message(case: &str, folder: &str, uid: u32) -> Vec<u8> {
    format!(
        "From: Sender {uid} <sender{uid}@example.com>\r\nTo: Rcpt <rcpt@example.org>\r\n\
Subject: {case} {folder} message {uid}\r\nDate: Tue, 01 Feb 2022 08:00:00 +0000\r\n\
Message-ID: <{case}.{uid}.{}@example.net>\r\n\r\nBody of message {uid}.\r\n",
        folder.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_matching() {
        assert!(step_matches(
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE)",
            b"UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Message-Id Received)])"
        ));
        assert!(step_matches(
            "UID FETCH 102 (BODY.PEEK[])",
            b"UID FETCH 101:103 (UID BODY.PEEK[])"
        ));
        assert!(!step_matches(
            "UID FETCH 102 (BODY.PEEK[])",
            b"UID FETCH 102 (UID FLAGS BODY.PEEK[HEADER])"
        ));
        assert!(!step_matches(
            "UID FETCH 102 (BODY.PEEK[])",
            b"UID FETCH 101 (UID BODY.PEEK[])"
        ));
        assert!(step_matches(
            "SELECT INBOX",
            b"EXAMINE \"INBOX\" (CONDSTORE)"
        ));
        assert!(!step_matches("SELECT INBOX", b"SELECT \"Sent\""));
        assert!(step_matches(
            "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)",
            b"STATUS \"INBOX\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"
        ));
        assert!(step_matches(
            "LIST \"\" \"*\"",
            b"LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        ));
    }

    #[test]
    fn sets_and_tokens() {
        let s = Set::parse("4:*").expect("set");
        assert_eq!(s.select(&[1, 2, 3]), vec![3], "n:* holds the last message");
        assert_eq!(Set::parse("1:3,7").expect("set").size(), 4);
        let t = tokens(
            b"APPEND \"INBOX\" (\\Seen) \"01-Feb-2022 08:00:00 +0000\" {3}\r\nabc {2}\r\nxy",
        );
        assert_eq!(t[4], Tok::Literal(b"abc".to_vec()));
        assert_eq!(t[5], Tok::Literal(b"xy".to_vec()));
        let f =
            fetch_items(tokens(b"(UID BODY.PEEK[HEADER.FIELDS (Message-Id Received)])").first());
        assert_eq!(f, vec!["UID", "BODY[HEADER.FIELDS (MESSAGE-ID RECEIVED)]"]);
    }

    #[test]
    fn header_fields_keep_folded_lines() {
        let body = b"Received: a\r\n b\r\nSubject: x\r\nMessage-ID: <m@x>\r\n\r\nbody";
        assert_eq!(
            header_fields(body, &["received".into(), "message-id".into()], false),
            b"Received: a\r\n b\r\nMessage-ID: <m@x>\r\n\r\n"
        );
    }
}
