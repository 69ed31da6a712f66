//! One folder pair: the steps of a pass (reading a side, replacing flags, copying messages); the
//! pass itself is [`super::pass::sync_folder`].
//!
//! Errors come in two kinds ([`Fail`]): a lost connection (the caller reconnects and calls
//! `sync_folder` again, which re-plans from fresh metadata), and a folder-level refusal (recorded,
//! the account goes on). Message-level problems (one APPEND refused, flags refused, quota) are pushed
//! to `errs` and the folder goes on.

use std::collections::HashMap;
use std::ops::Range;

use imapfleet_imap::{AppendRequest, ImapError, MessageMeta, SelectInfo, Session, StoreMode};
use tokio::sync::SemaphorePermit;
use tracing::{debug, warn};

use super::batch::{append_fallbacks, batches_with_solo, group_by_flags, removed_flags};
use super::intents::IntentLog;
use super::{Ctx, Pair, Side};
use crate::identity::{key_from_fields, key_from_full_header, IdentityConfig, IdentityKey, Keyed};
use crate::mapping::FolderPair;
use crate::plan::{CopyAction, FlagAction, FolderSide, MsgInfo};
use crate::report::{ErrorClass, FolderReport, SyncError};

/// Why a folder attempt stopped early.
pub(crate) enum Fail {
    /// The session of `side` is unusable, or its server asked us to slow down
    /// ([`ImapError::is_throttle`]; Office 365 drops the session right after): reconnect (after the
    /// pause the server asked for) and redo the folder.
    Connection { side: Side, err: ImapError },
    /// The folder cannot be synced (SELECT refused, metadata FETCH refused...).
    Folder(SyncError),
}

/// Errors after which the folder attempt stops and the session is opened again: a lost
/// connection, or a throttling refusal (the same command right away would be refused again).
fn reconnect_needed(err: &ImapError) -> bool {
    err.is_connection() || err.is_throttle()
}

/// Most UIDs per `UID STORE` / header re-fetch command (keeps command lines short).
const UIDS_PER_COMMAND: usize = 500;

/// Map an IMAP error of `side` to a [`Fail`]: connection problems are retried, others are
/// `class` errors of the folder carrying the server's words.
pub(crate) fn fail(
    side: Side,
    class: ErrorClass,
    folder: &str,
    what: &str,
) -> impl FnOnce(ImapError) -> Fail {
    let folder = folder.to_string();
    let what = what.to_string();
    move |err| {
        if reconnect_needed(&err) {
            Fail::Connection { side, err }
        } else {
            Fail::Folder(SyncError::folder(
                class,
                &folder,
                format!("{} {what}: {err}", side.label()),
            ))
        }
    }
}

/// PERMANENTFLAGS to assume for a host2 folder that does not exist yet (dry run): what Dovecot,
/// Cyrus and most servers offer on a fresh mailbox.
pub(crate) fn assumed_new_folder_side() -> FolderSide {
    let flags: Vec<String> = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut perm = flags.clone();
    perm.push("\\*".into());
    FolderSide {
        uidvalidity: None,
        permanent_flags: Some(perm),
        flags,
        messages: Vec::new(),
    }
}

/// Errors that account for one message not being on host2.
pub(crate) fn message_errors(errs: &[SyncError]) -> usize {
    errs.iter()
        .filter(|e| {
            e.uid.is_some()
                && matches!(
                    e.class,
                    ErrorClass::Append | ErrorClass::Quota | ErrorClass::Fetch
                )
        })
        .count()
}

/// Extra copies of an identity already present in the same folder.
pub(crate) fn duplicates(msgs: &[MsgInfo]) -> u64 {
    let mut seen: HashMap<&IdentityKey, u64> = HashMap::new();
    for m in msgs {
        *seen.entry(&m.key).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// host2's side. An EXAMINEd (read-only) mailbox reports `PERMANENTFLAGS ()` on Dovecot and others,
/// which says nothing about what a write would keep: assume the usual set then (dry runs only).
pub(crate) fn host2_side(info: &SelectInfo, messages: Vec<MsgInfo>) -> FolderSide {
    let mut side = folder_side(info, messages);
    if info.read_only && side.permanent_flags.as_ref().is_some_and(Vec::is_empty) {
        side.permanent_flags = assumed_new_folder_side().permanent_flags;
    }
    side
}

pub(crate) fn folder_side(info: &SelectInfo, messages: Vec<MsgInfo>) -> FolderSide {
    FolderSide {
        uidvalidity: info.uidvalidity,
        permanent_flags: info.permanent_flags.clone(),
        flags: info.flags.clone(),
        messages,
    }
}

/// Metadata and identity keys of every message of the selected folder. Messages without any
/// identity header get a second FETCH of their whole header block. A message that vanished between
/// the two FETCHes is left out.
pub(crate) async fn read_side(
    s: &mut Session,
    side: Side,
    exists: u32,
    cfg: &IdentityConfig,
    folder: &str,
) -> Result<Vec<MsgInfo>, Fail> {
    if exists == 0 {
        return Ok(Vec::new());
    }
    read_meta(s, side, "1:*", cfg, folder).await
}

/// [`read_side`] for the messages of `uid_set` only (`*` meaning "no upper bound").
pub(crate) async fn read_meta(
    s: &mut Session,
    side: Side,
    uid_set: &str,
    cfg: &IdentityConfig,
    folder: &str,
) -> Result<Vec<MsgInfo>, Fail> {
    let metas = s.fetch_meta(uid_set, &cfg.headers).await.map_err(fail(
        side,
        ErrorClass::Fetch,
        folder,
        "FETCH metadata",
    ))?;
    let mut keys: Vec<Option<IdentityKey>> = Vec::with_capacity(metas.len());
    let mut need_full: Vec<u32> = Vec::new();
    for m in &metas {
        match key_from_fields(&m.headers, cfg) {
            Keyed::Key(k) => keys.push(Some(k)),
            Keyed::NeedFullHeader => {
                keys.push(None);
                need_full.push(m.uid);
            }
        }
    }
    let mut full: HashMap<u32, IdentityKey> = HashMap::new();
    for chunk in need_full.chunks(UIDS_PER_COMMAND) {
        let headers = s
            .fetch_meta(&super::uid_set(chunk), &[])
            .await
            .map_err(fail(side, ErrorClass::Fetch, folder, "FETCH header"))?;
        full.extend(
            headers
                .iter()
                .map(|m| (m.uid, key_from_full_header(&m.headers))),
        );
    }
    Ok(metas
        .into_iter()
        .zip(keys)
        .filter_map(|(m, key)| {
            let key = key.or_else(|| full.remove(&m.uid))?;
            Some(msg_info(m, key))
        })
        .collect())
}

fn msg_info(m: MessageMeta, key: IdentityKey) -> MsgInfo {
    MsgInfo {
        uid: m.uid,
        key,
        flags: m.flags,
        internaldate: m.internaldate,
        size: m.size,
    }
}

/// Replace host2 flags, one `UID STORE` per distinct flag set. A refused set is retried with the
/// fall-back sets (fewer flags); whatever happens is reported as a Flags error, never fatal.
pub(crate) async fn update_flags(
    s2: &mut Session,
    folder: &str,
    updates: &[FlagAction],
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<(), Fail> {
    let groups = group_by_flags(updates.iter().map(|a| (a.uid2, a.flags.as_slice())));
    for (flags, uids) in groups {
        for chunk in uids.chunks(UIDS_PER_COMMAND) {
            let err = match s2.uid_store(chunk, StoreMode::Replace, &flags).await {
                Ok(()) => {
                    rep.flags_updated += chunk.len() as u64;
                    continue;
                }
                Err(e) if reconnect_needed(&e) => {
                    return Err(Fail::Connection {
                        side: Side::Host2,
                        err: e,
                    })
                }
                Err(e) => e,
            };
            // Store what host2 takes of the set: the refused flags alone are lost, by name.
            let refused = super::refused::replace_flags(s2, chunk, &flags)
                .await
                .map_err(|e| Fail::Connection {
                    side: Side::Host2,
                    err: e,
                })?;
            if refused.len() < flags.len() || flags.is_empty() {
                rep.flags_updated += chunk.len() as u64;
            }
            let message = format!(
                "host2 UID STORE {flags:?} on {} messages: {err}; stored without {refused:?}",
                chunk.len()
            );
            warn!(folder, "{message}");
            errs.push(SyncError::folder(ErrorClass::Flags, folder, message));
        }
    }
    Ok(())
}

/// Bodies of one batch, fetched from host1, holding their share of the memory budget.
struct Fetched<'a> {
    /// (index into the copies, body), in copy order.
    items: Vec<(usize, Vec<u8>)>,
    vanished: u64,
    errors: Vec<SyncError>,
    _permit: Option<SemaphorePermit<'a>>,
}

/// Copy the planned messages: host1 FETCH of batch n+1 runs while batch n is APPENDed to host2.
/// With saved state (`log`), each batch's intents are written durably before it is sent
/// ([`super::intents`]). Returns (appended, vanished).
/// A message this large goes to host2 in an APPEND of its own ([`batches_with_solo`]): a refusal
/// for its size costs one send, not two, and does not make its batch mates travel again.
pub(crate) const SOLO_APPEND_BYTES: u64 = 256 * 1024;

pub(crate) async fn copy_messages(
    ctx: &Ctx<'_>,
    p: &mut Pair,
    pair: &FolderPair,
    copies: &[CopyAction],
    log: Option<&IntentLog<'_>>,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<(u64, u64), Fail> {
    let sizes: Vec<u64> = copies.iter().map(|c| u64::from(c.size)).collect();
    let batch_bytes = u64::try_from(ctx.opts.batch_bytes).unwrap_or(u64::MAX);
    let mut ranges = batches_with_solo(
        &sizes,
        ctx.opts.batch_messages,
        batch_bytes,
        SOLO_APPEND_BYTES,
    )
    .into_iter();
    let Pair { s1, s2 } = p;
    let (mut appended, mut vanished) = (0u64, 0u64);
    let mut pending = match ranges.next() {
        Some(r) => Some(fetch_batch(ctx, s1, &pair.name1, copies, r).await?),
        None => None,
    };
    while let Some(mut batch) = pending.take() {
        vanished += batch.vanished;
        errs.append(&mut batch.errors);
        let next = ranges.next();
        let fetch_next = async {
            match next {
                Some(r) => fetch_batch(ctx, s1, &pair.name1, copies, r).await.map(Some),
                None => Ok(None),
            }
        };
        let (a, f) = tokio::join!(
            append_batch(ctx, s2, pair, copies, batch, log, rep, errs),
            fetch_next
        );
        appended += a?;
        pending = f?;
    }
    Ok((appended, vanished))
}

/// `EXPUNGEISSUED` (RFC 5530) or Dovecot's wording: the message is gone from host1, not an error.
fn is_expunged(err: &ImapError) -> bool {
    match err {
        ImapError::No { code, text, .. } => {
            code.as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("EXPUNGEISSUED"))
                || text.to_ascii_lowercase().contains("no longer exist")
        }
        _ => false,
    }
}

/// Fetch the bodies of `copies[range]` from host1 after taking their share of the byte budget.
/// A refused batch is retried message by message so that one bad message does not hold back the rest.
async fn fetch_batch<'a>(
    ctx: &'a Ctx<'_>,
    s1: &mut Session,
    folder: &str,
    copies: &[CopyAction],
    range: Range<usize>,
) -> Result<Fetched<'a>, Fail> {
    let estimate: u64 = copies[range.clone()]
        .iter()
        .map(|c| u64::from(c.size))
        .sum();
    let kib = estimate.div_ceil(1024).clamp(1, u64::from(ctx.budget_kib));
    let permit = ctx
        .budget
        .acquire_many(u32::try_from(kib).unwrap_or(ctx.budget_kib))
        .await
        .ok();
    let index: HashMap<u32, usize> = range.clone().map(|i| (copies[i].uid1, i)).collect();
    let uids: Vec<u32> = range.clone().map(|i| copies[i].uid1).collect();
    let mut got: Vec<(usize, Vec<u8>)> = Vec::with_capacity(uids.len());
    let mut errors = Vec::new();
    let mut vanished = 0;
    match s1.fetch_bodies(&uids).await {
        Ok(bodies) => got.extend(
            bodies
                .into_iter()
                .filter_map(|(uid, b)| Some((*index.get(&uid)?, b))),
        ),
        Err(e) if reconnect_needed(&e) => {
            return Err(Fail::Connection {
                side: Side::Host1,
                err: e,
            })
        }
        Err(e) => {
            warn!(folder, error = %e, "host1 FETCH of a batch refused; fetching one by one");
            for &uid in &uids {
                match s1.fetch_bodies(&[uid]).await {
                    Ok(bodies) => got.extend(
                        bodies
                            .into_iter()
                            .filter_map(|(u, b)| Some((*index.get(&u)?, b))),
                    ),
                    Err(e) if reconnect_needed(&e) => {
                        return Err(Fail::Connection {
                            side: Side::Host1,
                            err: e,
                        })
                    }
                    Err(e) if is_expunged(&e) => vanished += 1,
                    Err(e) => errors.push(SyncError::message(
                        ErrorClass::Fetch,
                        folder,
                        uid,
                        format!("host1 FETCH: {e}"),
                    )),
                }
            }
        }
    }
    got.sort_by_key(|(i, _)| *i);
    got.dedup_by_key(|(i, _)| *i);
    // The bytes served are what is copied; RFC822.SIZE is only the server's claim (OVH Exchange
    // and hMailServer give sizes that do not match what they serve). Worth a warning: the listing
    // and the planning (batches, --maxsize) relied on the claim.
    for (i, body) in &got {
        let listed = copies[*i].size;
        if u64::from(listed) != body.len() as u64 {
            warn!(
                folder,
                uid = copies[*i].uid1,
                "size mismatch {listed} vs {}: host1's RFC822.SIZE differs from the bytes it served; copying the served bytes",
                body.len()
            );
        }
    }
    // UIDs the server did not return (and that are not errors) were expunged meanwhile.
    let failed = errors.len() as u64;
    vanished += (uids.len() as u64).saturating_sub(got.len() as u64 + failed + vanished);
    Ok(Fetched {
        items: got,
        vanished,
        errors,
        _permit: permit,
    })
}

fn request<'b>(copy: &CopyAction, flags: Vec<String>, body: &'b [u8]) -> AppendRequest<'b> {
    AppendRequest {
        flags,
        internaldate: copy.internaldate,
        body,
    }
}

/// Count one message that reached host2.
fn record_copied(
    ctx: &Ctx<'_>,
    folder: &str,
    copy: &CopyAction,
    bytes: usize,
    rep: &mut FolderReport,
) {
    rep.transferred += 1;
    rep.bytes += bytes as u64;
    if !copy.dropped_flags.is_empty() {
        rep.flags_dropped += 1;
    }
    ctx.progress.message_copied(folder, copy.uid1, bytes as u64);
}

/// APPEND one fetched batch (MULTIAPPEND when host2 offers it; without it, one by one so that a
/// failure never leaves an unknown part of the batch stored). A refused batch is retried message by
/// message. Returns how many messages reached host2. Consumes the batch: its memory and budget share
/// are released as soon as it is appended. With `log`, the batch's intents are written first (one
/// durable write; a stale fence stops the folder here, before anything is sent).
#[allow(clippy::too_many_arguments)]
async fn append_batch(
    ctx: &Ctx<'_>,
    s2: &mut Session,
    pair: &FolderPair,
    copies: &[CopyAction],
    batch: Fetched<'_>,
    log: Option<&IntentLog<'_>>,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<u64, Fail> {
    let folder = pair.name1.as_str();
    // A server announcing APPENDLIMIT (RFC 7889) gets nothing larger: it would be refused.
    let limit = super::refused::appendlimit(s2.capabilities());
    let mut items: Vec<&(usize, Vec<u8>)> = Vec::with_capacity(batch.items.len());
    for item in &batch.items {
        match limit {
            Some(max) if item.1.len() as u64 > max => {
                let why = format!("larger than host2's APPENDLIMIT={max}: not sent");
                refused_message(folder, &copies[item.0], &item.1, &why, errs);
            }
            _ => items.push(item),
        }
    }
    if items.is_empty() {
        return Ok(0);
    }
    if let Some(log) = log {
        log.record(items.iter().map(|(i, _)| copies[*i].uid1), folder)
            .await?;
    }
    let mut first_error = None;
    if items.len() == 1 || s2.capabilities().has("MULTIAPPEND") {
        let reqs: Vec<AppendRequest<'_>> = items
            .iter()
            .map(|(i, body)| request(&copies[*i], copies[*i].flags.clone(), body))
            .collect();
        match s2.append(&pair.raw2, &reqs).await {
            Ok(_) => {
                for (i, body) in &items {
                    record_copied(ctx, folder, &copies[*i], body.len(), rep);
                }
                return Ok(items.len() as u64);
            }
            Err(e) if reconnect_needed(&e) => {
                return Err(Fail::Connection {
                    side: Side::Host2,
                    err: e,
                })
            }
            Err(e) if items.len() == 1 => first_error = Some(e),
            Err(e) => debug!(folder, error = %e, "batch APPEND refused; appending one by one"),
        }
    }
    let mut n = 0;
    for (i, body) in &items {
        let copy = &copies[*i];
        if append_one(s2, pair, copy, body, first_error.take(), errs).await? {
            record_copied(ctx, folder, copy, body.len(), rep);
            n += 1;
        }
    }
    Ok(n)
}

/// Quota refusal (`NO [OVERQUOTA]`, RFC 5530, or a server that only says so in words).
fn is_quota(err: &ImapError) -> bool {
    match err {
        ImapError::No { code, text, .. } => {
            code.as_deref()
                .is_some_and(|c| c.to_ascii_uppercase().starts_with("OVERQUOTA"))
                || text.to_ascii_lowercase().contains("quota")
        }
        _ => false,
    }
}

/// APPEND one message; on refusal, try the flag fall-backs (the message is never given up because
/// of its flags). `known` is the refusal already received for the original flags, if any.
/// Returns whether the message reached host2; errors are pushed to `errs`.
async fn append_one(
    s2: &mut Session,
    pair: &FolderPair,
    copy: &CopyAction,
    body: &[u8],
    known: Option<ImapError>,
    errs: &mut Vec<SyncError>,
) -> Result<bool, Fail> {
    let folder = pair.name1.as_str();
    let first = match known {
        Some(e) => e,
        None => match s2
            .append(&pair.raw2, &[request(copy, copy.flags.clone(), body)])
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => e,
        },
    };
    if reconnect_needed(&first) {
        return Err(Fail::Connection {
            side: Side::Host2,
            err: first,
        });
    }
    if is_quota(&first) {
        errs.push(SyncError::message(
            ErrorClass::Quota,
            folder,
            copy.uid1,
            format!("host2 APPEND: {first}"),
        ));
        return Ok(false);
    }
    if super::refused::is_size_refusal(&first) {
        // The message itself is refused: no flag set can change that; it is not sent again.
        return Ok(refused_message(
            folder,
            copy,
            body,
            &first.to_string(),
            errs,
        ));
    }
    for fallback in append_fallbacks(&copy.flags) {
        match s2
            .append(&pair.raw2, &[request(copy, fallback.clone(), body)])
            .await
        {
            Ok(uids) => {
                // The rest goes on with STORE (host2 UID from APPENDUID): only what host2 really
                // refuses is lost. Without UIDPLUS the next pass's flag resync tries again.
                let removed = removed_flags(&copy.flags, &fallback);
                let refused = match uids.first().copied().flatten() {
                    Some(uid2) => super::refused::add_flags(s2, &[uid2], &removed)
                        .await
                        .map_err(|e| Fail::Connection {
                            side: Side::Host2,
                            err: e,
                        })?,
                    None => removed,
                };
                if !refused.is_empty() {
                    let msg =
                        format!("copied without flags {refused:?}: host2 refused them: {first}");
                    warn!(folder, uid = copy.uid1, "{msg}");
                    errs.push(SyncError::message(
                        ErrorClass::Flags,
                        folder,
                        copy.uid1,
                        msg,
                    ));
                }
                return Ok(true);
            }
            Err(e) if reconnect_needed(&e) => {
                return Err(Fail::Connection {
                    side: Side::Host2,
                    err: e,
                })
            }
            Err(e) if is_quota(&e) => {
                errs.push(SyncError::message(
                    ErrorClass::Quota,
                    folder,
                    copy.uid1,
                    format!("host2 APPEND: {e}"),
                ));
                return Ok(false);
            }
            Err(_) => {}
        }
    }
    Ok(refused_message(
        folder,
        copy,
        body,
        &first.to_string(),
        errs,
    ))
}

/// Report a message host2 will not take: folder, host1 UID, size, Message-ID and the server's
/// words. Returns `false` (the message is not on host2).
fn refused_message(
    folder: &str,
    copy: &CopyAction,
    body: &[u8],
    why: &str,
    errs: &mut Vec<SyncError>,
) -> bool {
    let id = crate::identity::message_id_of(body).unwrap_or_else(|| "no Message-ID".into());
    warn!(folder, uid = copy.uid1, size = body.len(), message_id = %id, error = %why, "APPEND refused");
    errs.push(SyncError::message(
        ErrorClass::Append,
        folder,
        copy.uid1,
        format!("host2 APPEND of {id} ({} bytes): {why}", body.len()),
    ));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_refusals() {
        let no = |code: Option<&str>, text: &str| ImapError::No {
            command: "APPEND".into(),
            code: code.map(String::from),
            text: text.into(),
        };
        assert!(is_quota(&no(Some("OVERQUOTA"), "Quota exceeded")));
        assert!(is_quota(&no(
            None,
            "Quota exceeded (mailbox for user is full)"
        )));
        assert!(!is_quota(&no(Some("CANNOT"), "Keyword length too long")));
        assert!(is_expunged(&no(
            Some("EXPUNGEISSUED"),
            "Some messages were expunged"
        )));
        assert!(!is_expunged(&no(None, "Internal error")));
    }
}
