//! Telling apart messages whose identity headers are equal (BR-16: automated notices without
//! Message-ID, same sender, subject and date, different bodies).
//!
//! Header keys pair such messages as a multiset, which copies the right *number* of them; but when
//! host2 already holds some, the headers cannot say *which*, and the planner could pair host1's
//! first notice with host2's copy of the second and copy the second again: one notice lost, one
//! duplicated. So for the keys where that can happen ([`ambiguous_keys`]: on both sides, more than
//! once on one of them) the bodies of those messages are fetched from both sides and the keys
//! refined with a normalised body digest ([`refine_with_body`]). Only the planning inputs are
//! refined; what is saved as sync state keeps the header keys, so both sides always meet on equal
//! terms at the next pass.

use std::collections::{BTreeSet, HashMap};

use imapfleet_imap::Session;

use super::folder::{fail, Fail};
use super::Side;
use crate::identity::{ambiguous_keys, refine_with_body, IdentityKey};
use crate::plan::FolderSide;
use crate::report::ErrorClass;

/// Messages per body FETCH while refining: bounds the memory held (bodies are hashed and dropped).
const BODIES_PER_FETCH: usize = 20;

/// `(side1, side2)` with refined keys when some keys are ambiguous, else `None` (plan the sides
/// as they are). Both sessions must have their folder selected.
pub(crate) async fn for_planning(
    s1: &mut Session,
    s2: &mut Session,
    side1: &FolderSide,
    side2: &FolderSide,
    folder: &str,
) -> Result<Option<(FolderSide, FolderSide)>, Fail> {
    let ambiguous = ambiguous_keys(
        side1.messages.iter().map(|m| &m.key),
        side2.messages.iter().map(|m| &m.key),
    );
    if ambiguous.is_empty() {
        return Ok(None);
    }
    let (r1, r2) = tokio::join!(
        refined(s1, Side::Host1, side1, &ambiguous, folder),
        refined(s2, Side::Host2, side2, &ambiguous, folder)
    );
    Ok(Some((r1?, r2?)))
}

/// A copy of `side` whose messages with an ambiguous key carry the refined key. A message whose
/// body the server did not return (expunged meanwhile) keeps its header key.
async fn refined(
    s: &mut Session,
    side: Side,
    from: &FolderSide,
    ambiguous: &BTreeSet<IdentityKey>,
    folder: &str,
) -> Result<FolderSide, Fail> {
    let uids: Vec<u32> = from
        .messages
        .iter()
        .filter(|m| ambiguous.contains(&m.key))
        .map(|m| m.uid)
        .collect();
    let by_uid: HashMap<u32, &IdentityKey> =
        from.messages.iter().map(|m| (m.uid, &m.key)).collect();
    let mut new_keys: HashMap<u32, IdentityKey> = HashMap::new();
    for chunk in uids.chunks(BODIES_PER_FETCH) {
        let bodies = s.fetch_bodies(chunk).await.map_err(fail(
            side,
            ErrorClass::Fetch,
            folder,
            "FETCH bodies",
        ))?;
        for (uid, body) in bodies {
            if let Some(key) = by_uid.get(&uid) {
                new_keys.insert(uid, refine_with_body(key, &body));
            }
        }
    }
    let mut out = from.clone();
    for m in &mut out.messages {
        if let Some(k) = new_keys.get(&m.uid) {
            m.key = k.clone();
        }
    }
    Ok(out)
}
