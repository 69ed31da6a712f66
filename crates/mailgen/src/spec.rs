//! What to generate ([`MailboxSpec`]), the cheap up-front plan of every message ([`Plan`]), and the lazy
//! per-folder generation of bytes ([`Folders`]).

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::render;
use crate::rng::Rng;

/// Streams of the generator (one independent random stream per purpose).
pub(crate) const STREAM_PLAN: u64 = 1;
pub(crate) const STREAM_BODY: u64 = 2;
pub(crate) const STREAM_MSGID: u64 = 3;
pub(crate) const STREAM_DATES: u64 = 4;
pub(crate) const STREAM_FLAGS: u64 = 5;

/// System flags, in the order they are listed on a message.
pub const SYSTEM_FLAGS: &[&str] = &["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"];
/// Keywords used by the generator.
pub const KEYWORDS: &[&str] = &["$Forwarded", "$Junk", "$NotJunk", "$Label1", "Work"];

/// What to generate. Every field takes part in the output: same spec, same bytes, on every machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSpec {
    pub seed: u64,
    /// Number of folders, INBOX included. The first 20 come from a fixed list of awkward names
    /// (nested, non-ASCII, spaces, `&`); more are named `Extra 021`, ...
    pub folders: usize,
    /// Number of messages in all folders.
    pub messages: usize,
    /// Total size of all messages (approximate: within a few percent when reachable).
    pub target_bytes: u64,
    /// Size range of ordinary messages (bytes).
    pub min_message_bytes: u64,
    pub max_message_bytes: u64,
    /// Number of messages carrying a large base64 attachment, and their size range (bytes).
    pub big_messages: usize,
    pub big_message_bytes: (u64, u64),
    /// Share of messages without a Message-Id header (per mille; at least one when > 0).
    pub no_message_id_per_mille: u32,
    /// Share of messages that reuse another message's Message-Id with a different body (per mille).
    pub duplicate_id_per_mille: u32,
    /// Share of messages that are byte-for-byte copies of another message (per mille).
    pub exact_duplicate_per_mille: u32,
    /// Share of messages with raw 8-bit (UTF-8 or Latin-1) bytes in their header (per mille).
    pub eight_bit_header_per_mille: u32,
    /// INTERNALDATEs fall between 1 January of the first year and 31 December of the last.
    pub years: (i32, i32),
}

impl MailboxSpec {
    /// A few folders (9, nested and non-ASCII), 60 messages, ~1.8 MB: for tests.
    pub fn small() -> MailboxSpec {
        MailboxSpec {
            seed: 1,
            folders: 9,
            messages: 60,
            target_bytes: 1_800_000,
            min_message_bytes: 2 * 1024,
            max_message_bytes: 50 * 1024,
            big_messages: 1,
            big_message_bytes: (300_000, 400_000),
            no_message_id_per_mille: 30,
            duplicate_id_per_mille: 20,
            exact_duplicate_per_mille: 20,
            eight_bit_header_per_mille: 30,
            years: (2012, 2024),
        }
    }

    /// 20 folders, 5,000 messages, ~145 MB (6 of them with 1.5-4 MB attachments): the benchmark.
    pub fn bench() -> MailboxSpec {
        MailboxSpec {
            seed: 1,
            folders: 20,
            messages: 5_000,
            target_bytes: 145_000_000,
            min_message_bytes: 2 * 1024,
            max_message_bytes: 50 * 1024,
            big_messages: 6,
            big_message_bytes: (1_500_000, 4_000_000),
            no_message_id_per_mille: 30,
            duplicate_id_per_mille: 5,
            exact_duplicate_per_mille: 5,
            eight_bit_header_per_mille: 10,
            years: (2009, 2025),
        }
    }

    pub fn with_seed(mut self, seed: u64) -> MailboxSpec {
        self.seed = seed;
        self
    }

    /// Folder paths (hierarchy components), parents before children.
    pub fn folder_paths(&self) -> Vec<Vec<String>> {
        (0..self.folders).map(folder_path).collect()
    }

    /// The plan: every message's folder, kind, size, flags and date, without the bytes.
    pub fn plan(&self) -> Plan {
        Plan::new(self)
    }

    /// All folders, generated lazily one at a time.
    pub fn generate(&self) -> Folders {
        self.plan().into_folders()
    }

    /// Messages not flagged `\Deleted`: what a default sync copies.
    pub fn live_messages(&self) -> usize {
        self.generate()
            .map(|f| {
                f.messages
                    .iter()
                    .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
                    .count()
            })
            .sum()
    }
}

/// One generated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenMessage {
    /// The whole message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// IMAP flags (`\Seen`, `$Label1`, ...): system flags first.
    pub flags: Vec<String>,
    pub internaldate: DateTime<FixedOffset>,
}

/// One generated folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenFolder {
    /// Hierarchy components (UTF-8), e.g. `["Projects", "2024", "Q1"]`; `["INBOX"]` for the inbox.
    pub path: Vec<String>,
    pub messages: Vec<GenMessage>,
}

impl GenFolder {
    /// The UTF-8 name with the given separator.
    pub fn name(&self, sep: char) -> String {
        self.path.join(&sep.to_string())
    }
    pub fn total_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.bytes.len() as u64).sum()
    }
}

/// What role a folder plays (drives flags and headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Inbox,
    Sent,
    Drafts,
    Trash,
    Junk,
    Lists,
    Projects,
    Other,
}

/// (path, weight for the share of messages, role). Parents come before children.
const FOLDERS: &[(&[&str], u32, Role)] = &[
    (&["INBOX"], 30, Role::Inbox),
    (&["Projects"], 0, Role::Projects),
    (&["Projects", "2024"], 3, Role::Projects),
    (&["Projects", "2024", "Q1"], 6, Role::Projects),
    (&["Archiv"], 4, Role::Other),
    (&["Archiv", "Gelöschte"], 5, Role::Trash),
    (&["Отправленные"], 6, Role::Sent),
    (&["日本語"], 3, Role::Other),
    (&["Clients & Partners"], 4, Role::Other),
    (&["Sent"], 10, Role::Sent),
    (&["Drafts"], 1, Role::Drafts),
    (&["Trash"], 4, Role::Trash),
    (&["Junk"], 3, Role::Junk),
    (&["Projects", "2024", "Q2"], 5, Role::Projects),
    (&["Newsletters"], 2, Role::Lists),
    (&["Newsletters", "Rust & Go"], 5, Role::Lists),
    (&["Ελληνικά"], 2, Role::Other),
    (&["Café Münster"], 2, Role::Other),
    (&["Archive 2019"], 6, Role::Other),
    (&["📦 Lieferungen"], 2, Role::Other),
];

fn folder_path(i: usize) -> Vec<String> {
    match FOLDERS.get(i) {
        Some((p, _, _)) => p.iter().map(|s| s.to_string()).collect(),
        None => vec![format!("Extra {:03}", i + 1)],
    }
}

fn folder_weight(i: usize) -> u32 {
    FOLDERS.get(i).map(|f| f.1).unwrap_or(3)
}

fn folder_role(i: usize) -> Role {
    FOLDERS.get(i).map(|f| f.2).unwrap_or(Role::Other)
}

/// The body layout of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A single text/plain part.
    Plain,
    /// multipart/alternative: text/plain + text/html.
    Alternative,
    /// multipart/mixed with one or two small attachments.
    Attachments,
    /// multipart/mixed with one large base64 attachment.
    Big,
}

/// Where a message's Message-Id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMode {
    /// Its own unique Message-Id.
    Own,
    /// No Message-Id header.
    Missing,
    /// The Message-Id of message `.0` (global index), with a different body.
    SameIdAs(usize),
    /// A byte-for-byte copy of message `.0` (same bytes, same INTERNALDATE, own flags).
    ExactCopyOf(usize),
}

/// Raw 8-bit bytes in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EightBit {
    Utf8,
    Latin1,
}

/// The plan of one message: everything but its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePlan {
    pub folder: usize,
    pub kind: Kind,
    /// Planned size in bytes (the generated message is within a line or two of it).
    pub size: u64,
    pub flags: Vec<String>,
    pub internaldate: DateTime<FixedOffset>,
    pub id: IdMode,
    pub eight_bit: Option<EightBit>,
}

/// One folder of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPlan {
    pub path: Vec<String>,
    pub role: Role,
    /// Global indices of its messages: `first..first + count`.
    pub first: usize,
    pub count: usize,
}

/// The plan of a whole mailbox. Cheap (no bytes); render folders with [`Plan::folder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    pub folders: Vec<FolderPlan>,
    pub messages: Vec<MessagePlan>,
}

const ZONES: &[i32] = &[
    0, 3600, 3600, 7200, 7200, -18000, -14400, -25200, -28800, 19800, 32400, 36000, 45900, -12600,
    20700, -36000, 10800, 28800,
];

fn year_start(y: i32) -> i64 {
    NaiveDate::from_ymd_opt(y, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0)
}

/// Split `n` by integer weights (largest remainder, ties to the lower index).
fn apportion(n: usize, weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|w| *w as u64).sum();
    if total == 0 {
        let mut v = vec![0; weights.len()];
        if let Some(first) = v.first_mut() {
            *first = n;
        }
        return v;
    }
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| (n as u64 * *w as u64 / total) as usize)
        .collect();
    let mut rem: Vec<(u64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| ((n as u64 * *w as u64) % total, i))
        .collect();
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = n - counts.iter().sum::<usize>();
    for (_, i) in rem {
        if left == 0 {
            break;
        }
        if weights[i] > 0 {
            counts[i] += 1;
            left -= 1;
        }
    }
    counts
}

fn count_for(n: usize, per_mille: u32) -> usize {
    if per_mille == 0 || n == 0 {
        return 0;
    }
    ((n as u64 * per_mille as u64 + 500) / 1000).max(1) as usize
}

const SHAPE_ONE: u64 = 1 << 20;

impl Plan {
    fn new(spec: &MailboxSpec) -> Plan {
        let mut rng = Rng::derive(spec.seed, STREAM_PLAN, 0);
        let nf = spec.folders.max(1);
        let n = spec.messages;

        // Folders and their message counts.
        let weights: Vec<u32> = (0..nf).map(folder_weight).collect();
        let counts = apportion(n, &weights);
        let mut folders = Vec::with_capacity(nf);
        let mut folder_of = Vec::with_capacity(n);
        let mut first = 0;
        for (i, c) in counts.iter().enumerate() {
            folders.push(FolderPlan {
                path: folder_path(i),
                role: folder_role(i),
                first,
                count: *c,
            });
            folder_of.extend(std::iter::repeat_n(i, *c));
            first += c;
        }

        // Kinds and size shapes.
        let mut kinds: Vec<Kind> = (0..n)
            .map(|_| match rng.weighted(&[50, 32, 18]) {
                0 => Kind::Plain,
                1 => Kind::Alternative,
                _ => Kind::Attachments,
            })
            .collect();
        let shapes: Vec<u64> = (0..n)
            .map(|_| {
                let u = rng.below(SHAPE_ONE);
                if rng.chance(500) {
                    u
                } else {
                    u * u / SHAPE_ONE
                }
            })
            .collect();

        // Special messages at random distinct positions.
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut ids = vec![IdMode::Own; n];
        let mut pos = 0;
        let mut take = |k: usize| {
            let s = &order[pos.min(n)..(pos + k).min(n)];
            pos += k;
            s.to_vec()
        };
        let big: Vec<usize> = take(spec.big_messages.min(n));
        for &g in &big {
            kinds[g] = Kind::Big;
        }
        for g in take(count_for(n, spec.no_message_id_per_mille)) {
            ids[g] = IdMode::Missing;
        }
        let mut dup_id = take(count_for(n, spec.duplicate_id_per_mille));
        let mut exact = take(count_for(n, spec.exact_duplicate_per_mille));
        dup_id.sort_unstable();
        exact.sort_unstable();
        let mut dups: Vec<(usize, bool)> = dup_id
            .iter()
            .map(|g| (*g, false))
            .chain(exact.iter().map(|g| (*g, true)))
            .collect();
        dups.sort_unstable();
        for (g, is_exact) in dups {
            let same_folder = rng.chance(500);
            let lo = if same_folder {
                folders[folder_of[g]].first
            } else {
                0
            };
            let candidates: Vec<usize> = (lo..g)
                .filter(|&s| {
                    kinds[s] != Kind::Big
                        && (ids[s] == IdMode::Own || (is_exact && ids[s] == IdMode::Missing))
                })
                .collect();
            let candidates = if candidates.is_empty() && same_folder {
                (0..g)
                    .filter(|&s| kinds[s] != Kind::Big && ids[s] == IdMode::Own)
                    .collect()
            } else {
                candidates
            };
            if candidates.is_empty() {
                continue;
            }
            let src = *rng.pick(&candidates);
            if is_exact {
                ids[g] = IdMode::ExactCopyOf(src);
                kinds[g] = kinds[src];
            } else {
                ids[g] = IdMode::SameIdAs(src);
                if kinds[g] == Kind::Big {
                    kinds[g] = Kind::Plain;
                }
            }
        }
        let mut eight = vec![None; n];
        for (i, g) in take(count_for(n, spec.eight_bit_header_per_mille))
            .into_iter()
            .enumerate()
        {
            eight[g] = Some(if i % 3 == 1 {
                EightBit::Latin1
            } else {
                EightBit::Utf8
            });
        }

        // Sizes: big ones uniform in their range; the others scaled so that the total meets the target.
        let mut sizes = vec![0u64; n];
        let (blo, bhi) = spec.big_message_bytes;
        for g in 0..n {
            if kinds[g] == Kind::Big && !matches!(ids[g], IdMode::ExactCopyOf(_)) {
                sizes[g] = rng.range(blo, bhi.max(blo));
            }
        }
        let big_total: u64 = sizes.iter().sum();
        let min = spec.min_message_bytes;
        let max = spec.max_message_bytes.max(min);
        let source = |g: usize| match ids[g] {
            IdMode::ExactCopyOf(s) => s,
            _ => g,
        };
        let mut multiplicity = vec![0u64; n];
        for g in 0..n {
            if kinds[g] != Kind::Big {
                multiplicity[source(g)] += 1;
            }
        }
        let size_at = |shape: u64, k: u64| -> u64 {
            let extra = ((max - min) as u128 * shape as u128 * k as u128
                / (SHAPE_ONE as u128 * 1024)) as u64;
            (min + extra).min(max)
        };
        let total_at = |k: u64| -> u64 {
            (0..n)
                .filter(|g| multiplicity[*g] > 0)
                .map(|g| size_at(shapes[g], k) * multiplicity[g])
                .sum()
        };
        let want = spec.target_bytes.saturating_sub(big_total);
        let (mut lo, mut hi) = (0u64, 1u64 << 24);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if total_at(mid) <= want {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        for g in 0..n {
            if kinds[g] != Kind::Big || matches!(ids[g], IdMode::ExactCopyOf(_)) {
                sizes[g] = size_at(shapes[source(g)], lo);
            }
        }
        for g in 0..n {
            if let IdMode::ExactCopyOf(s) = ids[g] {
                sizes[g] = sizes[s];
            }
        }

        // INTERNALDATEs: sorted within each folder (arrival order), a few out of order, varied zones.
        let start = year_start(spec.years.0);
        let end = year_start(spec.years.1.max(spec.years.0) + 1) - 1;
        let mut dates = vec![0i64; n];
        let mut zones = vec![0i32; n];
        for f in &folders {
            let mut r = Rng::derive(
                spec.seed,
                STREAM_DATES,
                f.first as u64 ^ ((f.count as u64) << 32),
            );
            let mut d: Vec<i64> = (0..f.count).map(|_| r.range_i64(start, end)).collect();
            d.sort_unstable();
            for i in 1..d.len() {
                if r.chance(40) {
                    d.swap(i - 1, i);
                }
            }
            for (i, ts) in d.into_iter().enumerate() {
                dates[f.first + i] = ts;
                zones[f.first + i] = *r.pick(ZONES);
            }
        }
        let mut internaldates: Vec<DateTime<FixedOffset>> = (0..n)
            .map(|g| {
                let off = FixedOffset::east_opt(zones[g]).expect("valid zone");
                DateTime::from_timestamp(dates[g], 0)
                    .expect("valid date")
                    .with_timezone(&off)
            })
            .collect();
        for g in 0..n {
            if let IdMode::ExactCopyOf(s) = ids[g] {
                internaldates[g] = internaldates[s];
            }
        }

        // Flags.
        let mut flags: Vec<Vec<String>> = (0..n)
            .map(|g| {
                let mut r = Rng::derive(spec.seed, STREAM_FLAGS, g as u64);
                plan_flags(&mut r, folders[folder_of[g]].role)
            })
            .collect();
        // Make sure every flag occurs at least once (small mailboxes).
        if n > 0 {
            for (i, f) in SYSTEM_FLAGS.iter().chain(KEYWORDS.iter()).enumerate() {
                if !flags.iter().any(|fl| fl.iter().any(|x| x == f)) {
                    let g = (crate::rng::mix(&[spec.seed, 77, i as u64]) % n as u64) as usize;
                    if *f == "$Junk" {
                        flags[g].retain(|x| x != "$NotJunk");
                    }
                    if *f == "$NotJunk" {
                        flags[g].retain(|x| x != "$Junk");
                    }
                    flags[g].push(f.to_string());
                    sort_flags(&mut flags[g]);
                }
            }
        }

        let messages = (0..n)
            .map(|g| MessagePlan {
                folder: folder_of[g],
                kind: kinds[g],
                size: sizes[g],
                flags: std::mem::take(&mut flags[g]),
                internaldate: internaldates[g],
                id: ids[g],
                eight_bit: eight[g],
            })
            .collect();
        Plan {
            seed: spec.seed,
            folders,
            messages,
        }
    }

    /// Sum of the planned sizes.
    pub fn planned_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }

    /// The bytes of message `g` (global index).
    pub fn message_bytes(&self, g: usize) -> Vec<u8> {
        match self.messages[g].id {
            IdMode::ExactCopyOf(s) => render::render(self, s),
            _ => render::render(self, g),
        }
    }

    /// The Message-Id of message `g` as it appears in its header, if it has one.
    pub fn message_id(&self, g: usize) -> Option<String> {
        match self.messages[g].id {
            IdMode::Own => Some(render::message_id(self.seed, g)),
            IdMode::Missing => None,
            IdMode::SameIdAs(s) => Some(render::message_id(self.seed, s)),
            IdMode::ExactCopyOf(s) => self.message_id(s),
        }
    }

    /// Generate folder `i`.
    pub fn folder(&self, i: usize) -> GenFolder {
        let f = &self.folders[i];
        let messages = (f.first..f.first + f.count)
            .map(|g| GenMessage {
                bytes: self.message_bytes(g),
                flags: self.messages[g].flags.clone(),
                internaldate: self.messages[g].internaldate,
            })
            .collect();
        GenFolder {
            path: f.path.clone(),
            messages,
        }
    }

    pub fn into_folders(self) -> Folders {
        Folders {
            plan: self,
            next: 0,
        }
    }
}

fn sort_flags(flags: &mut Vec<String>) {
    let rank = |f: &String| {
        SYSTEM_FLAGS
            .iter()
            .chain(KEYWORDS.iter())
            .position(|x| x == f)
            .unwrap_or(usize::MAX)
    };
    flags.sort_by_key(rank);
    flags.dedup();
}

fn plan_flags(r: &mut Rng, role: Role) -> Vec<String> {
    let mut f: Vec<&str> = Vec::new();
    let seen = match role {
        Role::Sent => 1000,
        Role::Drafts => 500,
        Role::Junk => 300,
        Role::Lists => 600,
        _ => 750,
    };
    if r.chance(seen) {
        f.push("\\Seen");
    }
    if !matches!(role, Role::Sent | Role::Drafts) && r.chance(120) {
        f.push("\\Answered");
    }
    if r.chance(60) {
        f.push("\\Flagged");
    }
    if role == Role::Drafts || r.chance(5) {
        f.push("\\Draft");
    }
    if r.chance(if role == Role::Trash { 400 } else { 10 }) {
        f.push("\\Deleted");
    }
    if r.chance(40) {
        f.push("$Forwarded");
    }
    let junk = r.chance(if role == Role::Junk { 900 } else { 10 });
    if junk {
        f.push("$Junk");
    } else if r.chance(40) {
        f.push("$NotJunk");
    }
    if r.chance(30) {
        f.push("$Label1");
    }
    if r.chance(if role == Role::Projects { 400 } else { 50 }) {
        f.push("Work");
    }
    f.into_iter().map(String::from).collect()
}

/// Folders generated one at a time (only one folder's bytes in memory).
pub struct Folders {
    plan: Plan,
    next: usize,
}

impl Folders {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

impl Iterator for Folders {
    type Item = GenFolder;
    fn next(&mut self) -> Option<GenFolder> {
        if self.next >= self.plan.folders.len() {
            return None;
        }
        let f = self.plan.folder(self.next);
        self.next += 1;
        Some(f)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.folders.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Folders {}
