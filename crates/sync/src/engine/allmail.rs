//! host1's `\All` folder (RFC 6154; Gmail's "[Gmail]/All Mail"): a view of every message of the
//! account, each also shown in its label folders.
//!
//! Copied like an ordinary folder it duplicates every labelled message; left out, it loses the
//! archived mail that has no label (BR-29). So by default it is synced *after* the other folders and
//! contributes only the messages none of them holds: the planner gets the identity keys of every
//! other synced host1 folder as `skip_keys` ([`crate::plan::SkipReason::InOtherFolder`]). A
//! message with two labels is copied into both label folders (one copy each); the result does not
//! depend on the order folders are processed in. `--copy-all-folder` turns this off.
//!
//! The keys come from the passes of this run (each pass of another folder records its host1
//! side); a folder that no pass read (skipped as unchanged, or synced in another process, as the
//! fleet's folder slices are) is read here, on host1's session, before the `\All` folder is
//! selected. If that fails, the `\All` folder is not synced in this pass: copying it without
//! knowing what the labels hold would duplicate mail.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use imapfleet_imap::SpecialUse;
use tracing::debug;

use super::folder::{fail, read_side, Fail};
use super::{Job, Pair, Side, SyncOptions};
use crate::identity::IdentityKey;
use crate::mapping::FolderPair;
use crate::plan::{FolderSide, PlanOptions};
use crate::report::ErrorClass;

/// Is this pair host1's `\All` folder?
pub(crate) fn is_all(pair: &FolderPair) -> bool {
    pair.special_use == Some(SpecialUse::All)
}

/// What an account run shares about its `\All` folder.
#[derive(Debug, Default)]
pub(crate) struct AllFolder {
    /// Raw host1 names of the synced folders that are not `\All`.
    others: Vec<String>,
    /// Keys read from host1 by this run's passes, by raw host1 name.
    keys: Mutex<HashMap<String, Vec<IdentityKey>>>,
}

impl AllFolder {
    /// For an account whose pairs are `pairs`: `None` when none is `\All` or the rule is off.
    pub(crate) fn for_pairs(pairs: &[FolderPair], opts: &SyncOptions) -> Option<AllFolder> {
        if opts.copy_all_folder || !pairs.iter().any(is_all) {
            return None;
        }
        Some(AllFolder {
            others: others(pairs),
            keys: Mutex::default(),
        })
    }

    /// A pass of another folder read host1's side: remember its keys.
    pub(crate) fn record(&self, pair: &FolderPair, side1: &FolderSide) {
        if is_all(pair) {
            return;
        }
        if let Ok(mut k) = self.keys.lock() {
            k.insert(
                pair.raw1.clone(),
                side1.messages.iter().map(|m| m.key.clone()).collect(),
            );
        }
    }
}

fn others(pairs: &[FolderPair]) -> Vec<String> {
    pairs
        .iter()
        .filter(|p| !is_all(p))
        .map(|p| p.raw1.clone())
        .collect()
}

/// The plan options of a pass of `job`: the run's, plus, for host1's `\All` folder, the keys of
/// every other synced host1 folder as `skip_keys`. Must run before the `\All` folder is selected
/// on `p.s1` (it may EXAMINE the other folders).
pub(crate) async fn plan_options(
    ctx: &super::Ctx<'_>,
    p: &mut Pair,
    job: &Job,
) -> Result<PlanOptions, Fail> {
    let opts = ctx.opts;
    if opts.copy_all_folder || !is_all(&job.pair) {
        return Ok(opts.plan.clone());
    }
    let name1 = job.pair.name1.as_str();
    // A folder slice (the fleet) knows only its own pair: find the others by mapping again.
    let others = match &ctx.allmail {
        Some(a) => a.others.clone(),
        None => {
            let (map, _, _) = super::map_account(p, opts).await.map_err(Fail::Folder)?;
            self::others(&map.pairs)
        }
    };
    let mut keys: BTreeSet<IdentityKey> = BTreeSet::new();
    let mut missing = Vec::new();
    {
        let recorded = ctx.allmail.as_ref().and_then(|a| a.keys.lock().ok());
        for raw in &others {
            match recorded.as_ref().and_then(|r| r.get(raw)) {
                Some(k) => keys.extend(k.iter().cloned()),
                None => missing.push(raw.clone()),
            }
        }
    }
    for raw in missing {
        let what = format!("EXAMINE {raw:?} (to know which \\All messages other folders hold)");
        let info = p.s1.select(&raw, true).await.map_err(fail(
            Side::Host1,
            ErrorClass::Select,
            name1,
            &what,
        ))?;
        let msgs = read_side(&mut p.s1, Side::Host1, info.exists, &opts.identity, name1).await?;
        debug!(folder = name1, other = %raw, messages = msgs.len(), "read for the \\All folder");
        keys.extend(msgs.into_iter().map(|m| m.key));
    }
    Ok(PlanOptions {
        skip_keys: Some(Arc::new(keys)),
        ..opts.plan.clone()
    })
}
