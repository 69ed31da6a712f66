//! Folder mapping: which host1 folder goes to which host2 folder.
//!
//! Works on decoded (UTF-8) names split into path components by each side's separator, so the
//! separator and the personal-namespace prefix of each side never leak into the other. The rules
//! run in this order: selection (`--folder`, `--include`, `--exclude`), strip host1 prefix, INBOX
//! normalisation, `--automap`, `--f1f2`, re-join with host2's separator (a host2 separator inside a
//! component is replaced, see [`SEPARATOR_REPLACEMENT`]), `--subfolder2`, host2 prefix, `--regextrans2`
//! (in order, on the full host2 name). The result is then encoded to canonical mUTF-7 for host2.
//!
//! Examples (host1 -> host2): `Clients.Acme` on a `.` server -> `Clients/Acme` on a `/` server;
//! `INBOX/COMPTA` and `Archives` without prefix -> `INBOX.COMPTA` and `INBOX.Archives` under a
//! Courier-style `INBOX.` prefix (never `INBOX.INBOX.COMPTA`); `INBOX.Sent` under `INBOX.` ->
//! `Sent` on a server without prefix; `Jim / John` on a `.` server -> `Jim _ John` on a `/` server.
//! The policy decisions (f1f2, subfolder2, control characters, automap ties) are listed on
//! [`map_folders`]; folders that end up sharing one host2 name are reported by
//! [`FolderMap::merged_targets`].

pub(crate) mod localized;
mod regextrans;

use imapfleet_imap::{mutf7, MailboxEntry, Namespaces, SpecialUse};
use regex::Regex;

pub use regextrans::RegexTrans;

/// What a host2 separator found inside a host1 name component is replaced with.
/// (Documented rule: `/` inside a name on a `/` server becomes `_`; likewise `.` on a `.` server.)
pub const SEPARATOR_REPLACEMENT: char = '_';

/// The facts of one side needed for mapping.
#[derive(Debug, Clone, Default)]
pub struct SideFacts {
    /// Hierarchy separator (`--sep1/2` override, else from NAMESPACE / LIST).
    pub separator: Option<char>,
    /// Personal namespace prefix, decoded (`--prefix1/2` override, else NAMESPACE), e.g. `INBOX.`.
    pub prefix: String,
    pub folders: Vec<MailboxEntry>,
}

impl SideFacts {
    /// Derive from NAMESPACE and LIST, with optional overrides.
    ///
    /// Separator: the override, else the personal namespace's, else the first LIST entry's, else
    /// `.`. Prefix: the override, else the personal namespace's (decoded from mUTF-7). A non-empty
    /// prefix that does not end with the separator gets it appended (`INBOX` -> `INBOX.`).
    pub fn from_server(
        ns: &Namespaces,
        folders: Vec<MailboxEntry>,
        sep_override: Option<char>,
        prefix_override: Option<String>,
    ) -> SideFacts {
        let personal = ns.personal.first();
        let separator = sep_override
            .or_else(|| personal.and_then(|n| n.delimiter))
            .or_else(|| folders.iter().find_map(|f| f.delimiter))
            .unwrap_or('.');
        let mut prefix = prefix_override
            .or_else(|| {
                personal.map(|n| mutf7::decode(&n.prefix).unwrap_or_else(|| n.prefix.clone()))
            })
            .unwrap_or_default();
        if !prefix.is_empty() && !prefix.ends_with(separator) {
            prefix.push(separator);
        }
        SideFacts {
            separator: Some(separator),
            prefix,
            folders,
        }
    }

    /// The separator, `.` when unknown.
    pub fn sep(&self) -> char {
        self.separator.unwrap_or('.')
    }

    /// The prefix as path components (`INBOX.` -> `["INBOX"]`, `` -> `[]`).
    fn prefix_components(&self) -> Vec<String> {
        let trimmed = self.prefix.strip_suffix(self.sep()).unwrap_or(&self.prefix);
        if trimmed.is_empty() {
            return Vec::new();
        }
        trimmed.split(self.sep()).map(str::to_owned).collect()
    }

    /// A full decoded name as components relative to the personal prefix, INBOX in upper case.
    ///
    /// `INBOX.Sent` under prefix `INBOX.` -> `["Sent"]`; `Inbox/Status` without prefix ->
    /// `["INBOX", "Status"]`; `INBOX` -> `["INBOX"]` whatever the prefix.
    fn relative_components(&self, name: &str) -> Vec<String> {
        let rel = strip_prefix(name, &self.prefix);
        let mut comps: Vec<String> = rel.split(self.sep()).map(str::to_owned).collect();
        if is_inbox(&comps[0]) {
            comps[0] = INBOX.to_owned();
        }
        comps
    }

    /// Full name from components relative to the prefix: the prefix is added unless the
    /// components already start with it, and never to INBOX itself.
    fn full_name(&self, comps: &[String]) -> String {
        let joined = comps.join(&self.sep().to_string());
        let prefix = self.prefix_components();
        let already_prefixed = comps.len() >= prefix.len()
            && prefix.iter().zip(comps).all(|(p, c)| same_component(p, c));
        if (comps.len() == 1 && comps[0] == INBOX) || already_prefixed {
            joined
        } else {
            format!("{}{joined}", self.prefix)
        }
    }

    /// The listed entry with this decoded name (INBOX in any case).
    fn find(&self, name: &str) -> Option<&MailboxEntry> {
        if is_inbox(name) {
            self.folders.iter().find(|f| is_inbox(&f.name))
        } else {
            self.folders.iter().find(|f| f.name == name)
        }
    }
}

/// Mapping options (imapsync's names).
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `--folder`: only these host1 folders (decoded names). Empty = all.
    pub folders: Vec<String>,
    /// `--include` regexes on the decoded host1 name.
    pub include: Vec<String>,
    /// `--exclude` regexes on the decoded host1 name.
    pub exclude: Vec<String>,
    /// `--f1f2 a=b` (decoded host1 name = decoded host2 name).
    pub f1f2: Vec<(String, String)>,
    /// `--regextrans2 's/x/y/'` in order.
    pub regextrans2: Vec<String>,
    /// `--subfolder2 X`: put everything under X on host2.
    pub subfolder2: Option<String>,
    /// `--automap`: map special-use folders onto host2's by attribute, then by localized name.
    pub automap: bool,
}

/// One folder pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPair {
    /// host1 raw (as listed) name.
    pub raw1: String,
    /// host1 decoded name.
    pub name1: String,
    /// host2 decoded name.
    pub name2: String,
    /// host2 raw name to send (listed raw name if it exists, else canonical mUTF-7).
    pub raw2: String,
    /// host2 folder does not exist yet.
    pub create: bool,
    /// Special use of host1's folder, if any.
    pub special_use: Option<SpecialUse>,
    /// Another host1 folder maps to the same host2 folder ([`FolderMap::merged_targets`]): each
    /// source's plan sees the other's messages as "only on host2", so `--delete2` and
    /// `--delete2duplicates` must not act on it.
    pub merged: bool,
}

/// The result of mapping a whole account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMap {
    /// Selectable host1 folders to sync, in host1 order.
    pub pairs: Vec<FolderPair>,
    /// host2 folders (raw names) to CREATE first, parents before children, including
    /// parents needed by pairs even if host1's parent was `\Noselect`.
    pub creates: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("bad --regextrans2 {expr:?}: {reason}")]
    BadRegextrans { expr: String, reason: String },
    #[error("bad regex {expr:?} in {option}: {reason}")]
    BadRegex {
        option: &'static str,
        expr: String,
        reason: String,
    },
    #[error("bad --f1f2 {0:?}: expected a=b")]
    BadF1f2(String),
    /// A folder named with `--folder` that host1 does not list: a typo, the other side's
    /// separator or the encoded form, or a folder since deleted. Never silently "0 folders".
    #[error(
        "--folder {}: no such folder on host1 (its separator is {sep:?}; give the decoded name, \
         e.g. {example:?})",
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    )]
    NoSuchFolder {
        names: Vec<String>,
        sep: char,
        example: String,
    },
    /// An empty pattern matches every folder: `--exclude ""` would exclude them all.
    #[error("{option} \"\": an empty pattern matches every folder")]
    EmptyPattern { option: &'static str },
}

impl FolderMap {
    /// host2 names that several host1 folders map to (they would be merged), with the host1
    /// names, in host1 order. Automatic rules avoid this where they can (see [`map_folders`]);
    /// explicit ones (`--f1f2`, `--regextrans2`) may ask for it. An executor should at least
    /// warn, and must not let `--delete2` of one source delete the other source's messages.
    pub fn merged_targets(&self) -> Vec<(String, Vec<String>)> {
        let mut merged: Vec<(String, Vec<String>)> = Vec::new();
        for pair in &self.pairs {
            match merged
                .iter_mut()
                .find(|(name2, _)| same_name(name2, &pair.name2))
            {
                Some((_, sources)) => sources.push(pair.name1.clone()),
                None => merged.push((pair.name2.clone(), vec![pair.name1.clone()])),
            }
        }
        merged.retain(|(_, sources)| sources.len() > 1);
        merged
    }
}

/// Parse one `--f1f2 a=b` argument (split at the first `=`; both sides non-empty).
pub fn parse_f1f2(arg: &str) -> Result<(String, String), MappingError> {
    match arg.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
        _ => Err(MappingError::BadF1f2(arg.to_owned())),
    }
}

/// Map host1's folders to host2.
///
/// Policies beyond the module doc:
/// - `--f1f2 a=b` names the complete decoded host2 folder: `b` is used as is (no separator
///   change, `--subfolder2`, prefix or `--regextrans2`), like imapsync.
/// - `--subfolder2 X` puts INBOX at `X` itself and every other folder under `X` (imapsync).
/// - A control character (TAB, CR, ...) in a host1 component becomes a space and trailing spaces
///   of that component go (`Da\tOggetto\t` -> `Da Oggetto`): servers refuse such names.
/// - `--automap` maps a host1 special folder and its subfolders (`Sent/2019` -> `Sent/2019` on
///   host2's Sent). Names count only at the top level (after the prefix) and only for classes
///   host1 marks with no attribute at all. The host2 target is its folder with that attribute,
///   else the same-named folder if its name is of that class, else the first folder whose name is
///   of the class; with none, the class's usual name (`Sent`, `Drafts`, `Trash`, `Junk`,
///   `Archive`; host1's `\All` goes to host2's `\All`, else its archive folder, else `Archive`),
///   created under host2's prefix. Each host2 special folder takes one host1 folder: those
///   with the attribute first, then by name, in host1 order; the others keep their own names.
pub fn map_folders(
    h1: &SideFacts,
    h2: &SideFacts,
    opts: &MappingOptions,
) -> Result<FolderMap, MappingError> {
    let rules = Rules::compile(opts)?;
    let missing: Vec<String> = opts
        .folders
        .iter()
        .filter(|f| !h1.folders.iter().any(|e| same_name(f, &e.name)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let sep = h1.separator.unwrap_or('.');
        let example = h1
            .folders
            .iter()
            .map(|e| e.name.as_str())
            .find(|n| n.contains(sep))
            .or_else(|| h1.folders.first().map(|e| e.name.as_str()))
            .unwrap_or("INBOX")
            .to_string();
        return Err(MappingError::NoSuchFolder {
            names: missing,
            sep,
            example,
        });
    }
    let automap = if opts.automap {
        AutoMap::build(h1, h2)
    } else {
        AutoMap::default()
    };
    let pairs: Vec<FolderPair> = h1
        .folders
        .iter()
        .filter(|e| !e.noselect && rules.selects(&e.name))
        .map(|e| {
            let name2 = map_name(e, h1, h2, &rules, &automap);
            make_pair(e, name2, h2)
        })
        .collect();
    let creates = creates_for(&pairs, h2);
    let mut map = FolderMap { pairs, creates };
    for (name2, _) in map.merged_targets() {
        for p in map.pairs.iter_mut().filter(|p| same_name(&p.name2, &name2)) {
            p.merged = true;
        }
    }
    Ok(map)
}

const INBOX: &str = "INBOX";

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case(INBOX)
}

/// Two host2 names that designate the same folder (INBOX is case-insensitive).
fn same_name(a: &str, b: &str) -> bool {
    a == b || (is_inbox(a) && is_inbox(b))
}

fn same_component(a: &str, b: &str) -> bool {
    same_name(a, b)
}

/// `name` without `prefix` (whose INBOX part matches in any case); `name` itself when it does
/// not start with the prefix or is the prefix.
fn strip_prefix<'a>(name: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() || name.len() <= prefix.len() || !name.is_char_boundary(prefix.len()) {
        return name;
    }
    let (head, rest) = name.split_at(prefix.len());
    let inbox_len = INBOX.len().min(prefix.len());
    let matches = if is_inbox(&prefix[..inbox_len]) && prefix.is_char_boundary(inbox_len) {
        head[..inbox_len].eq_ignore_ascii_case(&prefix[..inbox_len])
            && head[inbox_len..] == prefix[inbox_len..]
    } else {
        head == prefix
    };
    if matches {
        rest
    } else {
        name
    }
}

/// The options, validated and compiled.
struct Rules<'a> {
    opts: &'a MappingOptions,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    trans: Vec<RegexTrans>,
}

impl<'a> Rules<'a> {
    fn compile(opts: &'a MappingOptions) -> Result<Rules<'a>, MappingError> {
        Ok(Rules {
            opts,
            include: compile_all("--include", &opts.include)?,
            exclude: compile_all("--exclude", &opts.exclude)?,
            trans: opts
                .regextrans2
                .iter()
                .map(|e| RegexTrans::parse(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `--folder`, `--include`, `--exclude` on the decoded host1 name.
    fn selects(&self, name1: &str) -> bool {
        let listed =
            self.opts.folders.is_empty() || self.opts.folders.iter().any(|f| same_name(f, name1));
        let included = self.include.is_empty() || self.include.iter().any(|r| r.is_match(name1));
        listed && included && !self.exclude.iter().any(|r| r.is_match(name1))
    }

    fn f1f2(&self, name1: &str) -> Option<&str> {
        self.opts
            .f1f2
            .iter()
            .find(|(a, _)| same_name(a, name1))
            .map(|(_, b)| b.as_str())
    }
}

fn compile_all(option: &'static str, exprs: &[String]) -> Result<Vec<Regex>, MappingError> {
    if exprs.iter().any(String::is_empty) {
        return Err(MappingError::EmptyPattern { option });
    }
    exprs
        .iter()
        .map(|e| {
            Regex::new(e).map_err(|err| MappingError::BadRegex {
                option,
                expr: e.clone(),
                reason: err.to_string(),
            })
        })
        .collect()
}

/// The decoded host2 name of one host1 folder: the pipeline of the module doc.
fn map_name(
    entry: &MailboxEntry,
    h1: &SideFacts,
    h2: &SideFacts,
    rules: &Rules,
    automap: &AutoMap,
) -> String {
    if let Some(name2) = rules.f1f2(&entry.name) {
        return name2.to_owned();
    }
    let comps1 = h1.relative_components(&entry.name);
    let comps = automap.remap(&comps1).unwrap_or(comps1);
    let mut comps: Vec<String> = comps.iter().map(|c| host2_component(c, h2.sep())).collect();
    if let Some(sub) = &rules.opts.subfolder2 {
        comps = under_subfolder(sub, comps, h2.sep());
    }
    let name2 = h2.full_name(&comps);
    rules.trans.iter().fold(name2, |name, t| t.apply(&name))
}

/// One host1 component made fit for host2: control characters become spaces (then trailing
/// spaces go), host2's separator becomes [`SEPARATOR_REPLACEMENT`], an empty component becomes
/// [`SEPARATOR_REPLACEMENT`] too (`a..b` would be an invalid name).
fn host2_component(comp: &str, sep2: char) -> String {
    let mut out: String = comp
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out != comp {
        out.truncate(out.trim_end().len());
    }
    let out = out.replace(sep2, &SEPARATOR_REPLACEMENT.to_string());
    if out.is_empty() {
        SEPARATOR_REPLACEMENT.to_string()
    } else {
        out
    }
}

/// `--subfolder2 X`: INBOX becomes `X`, everything else goes below `X`.
fn under_subfolder(sub: &str, comps: Vec<String>, sep2: char) -> Vec<String> {
    let mut out: Vec<String> = sub
        .split(sep2)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if !(comps.len() == 1 && comps[0] == INBOX) {
        out.extend(comps);
    }
    out
}

fn make_pair(entry: &MailboxEntry, name2: String, h2: &SideFacts) -> FolderPair {
    let listed = h2.find(&name2);
    let raw2 = match listed {
        Some(e) => e.raw_name.clone(),
        None if is_inbox(&name2) => INBOX.to_owned(),
        None => mutf7::encode(&name2),
    };
    // INBOX always exists; a folder host2 lists as \Noselect exists only as a hierarchy node.
    let create = !is_inbox(&name2) && listed.is_none_or(|e| e.noselect);
    FolderPair {
        raw1: entry.raw_name.clone(),
        name1: entry.name.clone(),
        name2,
        raw2,
        create,
        special_use: entry.special_use,
        merged: false,
    }
}

/// Every folder to CREATE on host2: for each pair to create, its missing ancestors (shortest
/// first), then itself; each once. Ancestors host2 lists (even `\Noselect`), INBOX and the
/// namespace prefix itself are never created.
fn creates_for(pairs: &[FolderPair], h2: &SideFacts) -> Vec<String> {
    let sep = h2.sep();
    let mut creates: Vec<String> = Vec::new();
    for pair in pairs.iter().filter(|p| p.create) {
        let comps: Vec<&str> = pair.name2.split(sep).collect();
        for n in 1..comps.len() {
            let ancestor = comps[..n].join(&sep.to_string());
            let is_prefix = h2.prefix.starts_with(&format!("{ancestor}{sep}"));
            if ancestor.is_empty()
                || is_inbox(&ancestor)
                || is_prefix
                || h2.find(&ancestor).is_some()
            {
                continue;
            }
            push_unique(&mut creates, mutf7::encode(&ancestor));
        }
        push_unique(&mut creates, pair.raw2.clone());
    }
    creates
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// `--automap`: host1 special folders (as components relative to host1's prefix) and the host2
/// folder each goes to (as components relative to host2's prefix).
#[derive(Debug, Default)]
struct AutoMap {
    roots: Vec<(Vec<String>, Vec<String>)>,
}

impl AutoMap {
    fn build(h1: &SideFacts, h2: &SideFacts) -> AutoMap {
        let attributed: Vec<SpecialUse> = h1.folders.iter().filter_map(|e| e.special_use).collect();
        // (tier, host1 components, class): attribute = tier 0, localized name = tier 1.
        let mut candidates: Vec<(u8, Vec<String>, SpecialUse)> = Vec::new();
        for entry in &h1.folders {
            let comps = h1.relative_components(&entry.name);
            if comps.len() == 1 && comps[0] == INBOX {
                continue;
            }
            let by_name = || {
                let class = (comps.len() == 1)
                    .then(|| localized::class_of(&comps[0]))
                    .flatten()?;
                (!attributed.contains(&class)).then_some(class)
            };
            match entry.special_use {
                Some(class) => candidates.push((0, comps, class)),
                None => {
                    if let Some(class) = by_name() {
                        candidates.push((1, comps, class));
                    }
                }
            }
        }
        candidates.sort_by_key(|(tier, _, _)| *tier); // stable: host1 order within a tier
        let mut map = AutoMap::default();
        let mut taken: Vec<Vec<String>> = Vec::new();
        for (_, comps1, class) in candidates {
            let plain: Vec<String> = comps1
                .iter()
                .map(|c| host2_component(c, h2.sep()))
                .collect();
            let Some(target) = host2_target(h2, class, &plain) else {
                continue;
            };
            if !taken.contains(&target) {
                taken.push(target.clone());
                map.roots.push((comps1, target));
            }
        }
        map
    }

    /// The host2 components for host1 components at or below a special folder.
    fn remap(&self, comps1: &[String]) -> Option<Vec<String>> {
        let (root, target) = self
            .roots
            .iter()
            .filter(|(root, _)| comps1.starts_with(root))
            .max_by_key(|(root, _)| root.len())?;
        Some(
            target
                .iter()
                .chain(&comps1[root.len()..])
                .cloned()
                .collect(),
        )
    }
}

/// The name a host2 special folder gets when host2 has none of its class yet: the names Dovecot,
/// Cyrus and most server configurations give them (Dovecot lists a configured special-use folder
/// only once it exists, so a fresh host2 shows none). `\All` (Gmail's "All Mail") goes to the
/// archive: what it contributes is the mail no other folder holds (see the planner's
/// `skip_keys`). `\Flagged` is a view of flagged mail elsewhere: no default.
fn default_name(class: SpecialUse) -> Option<&'static str> {
    match class {
        SpecialUse::Sent => Some("Sent"),
        SpecialUse::Drafts => Some("Drafts"),
        SpecialUse::Trash => Some("Trash"),
        SpecialUse::Junk => Some("Junk"),
        SpecialUse::Archive | SpecialUse::All => Some("Archive"),
        SpecialUse::Flagged => None,
    }
}

/// host2's folder of `class`, as components relative to host2's prefix (see [`map_folders`]):
/// by attribute, else by localized name, else (`\All` only) host2's archive folder, else the
/// class's [`default_name`] (to be created).
fn host2_target(h2: &SideFacts, class: SpecialUse, plain: &[String]) -> Option<Vec<String>> {
    if let Some(found) = host2_existing(h2, class, plain) {
        return Some(found);
    }
    if class == SpecialUse::All {
        if let Some(archive) = host2_existing(h2, SpecialUse::Archive, plain) {
            return Some(archive);
        }
    }
    default_name(class).map(|n| vec![n.to_string()])
}

/// host2's existing folder of `class`: by attribute, else by localized name (the one named like
/// host1's folder first).
fn host2_existing(h2: &SideFacts, class: SpecialUse, plain: &[String]) -> Option<Vec<String>> {
    let usable = |e: &&MailboxEntry| {
        !e.noselect && !is_inbox(&e.name) && e.special_use.is_none_or(|c| c == class)
    };
    let named_of_class = |e: &&MailboxEntry| {
        let comps = h2.relative_components(&e.name);
        (comps.len() == 1 && localized::class_of(&comps[0]) == Some(class)).then_some(comps)
    };
    let by_attribute = h2
        .folders
        .iter()
        .filter(usable)
        .find(|e| e.special_use == Some(class));
    if let Some(e) = by_attribute {
        return Some(h2.relative_components(&e.name));
    }
    let candidates: Vec<Vec<String>> = h2
        .folders
        .iter()
        .filter(usable)
        .filter_map(|e| named_of_class(&e))
        .collect();
    candidates
        .iter()
        .find(|c| c.as_slice() == plain)
        .or(candidates.first())
        .cloned()
}

#[cfg(test)]
mod tests;
