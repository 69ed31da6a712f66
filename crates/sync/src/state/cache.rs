//! The message cache of a folder pair: both sides as the planner sees them ([`FolderSide`]) and the
//! host1-UID -> host2-UID map, in a compact binary form (about 60 bytes a message: a 5,000-message
//! folder pair is about 600 KB).
//!
//! Layout (little endian): magic `IFMC`, version u8, side1, side2, map. A side: UIDVALIDITY
//! (tag u8 + u32), FLAGS (string list), PERMANENTFLAGS (tag + string list), the distinct flag lists
//! of its messages (count u32, lists), then per message: UID u32, identity key (32 bytes),
//! flag-list index u32, INTERNALDATE (tag u8, seconds i64, offset seconds i32), size u32. A string
//! list: count u32, then length u32 + UTF-8 bytes each. The map: count u32, (uid1 u32, uid2 u32)
//! each. Anything that does not decode exactly is no cache (full read).

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, TimeZone};

use crate::identity::IdentityKey;
use crate::plan::{FolderSide, MsgInfo};

const MAGIC: &[u8; 4] = b"IFMC";
const VERSION: u8 = 1;

/// Both sides of a folder pair and the UID map of the pairs, as the last pass left them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCache {
    pub side1: FolderSide,
    pub side2: FolderSide,
    /// (host1 UID, host2 UID) of the messages present on both, ascending by host1 UID.
    pub map: Vec<(u32, u32)>,
}

impl MessageCache {
    /// The binary form; `None` when a key is not a hex SHA-256 (then nothing is cached).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let n = self.side1.messages.len() + self.side2.messages.len();
        let mut out = Vec::with_capacity(64 + n * 60 + self.map.len() * 8);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        encode_side(&mut out, &self.side1)?;
        encode_side(&mut out, &self.side2)?;
        put_u32(&mut out, self.map.len() as u32);
        for (a, b) in &self.map {
            put_u32(&mut out, *a);
            put_u32(&mut out, *b);
        }
        Some(out)
    }

    /// `None` unless `bytes` is exactly one cache of this version.
    pub fn decode(bytes: &[u8]) -> Option<MessageCache> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return None;
        }
        let side1 = decode_side(&mut r)?;
        let side2 = decode_side(&mut r)?;
        let n = r.u32()? as usize;
        let mut map = Vec::with_capacity(n.min(bytes.len() / 8));
        for _ in 0..n {
            map.push((r.u32()?, r.u32()?));
        }
        (r.pos == bytes.len()).then_some(MessageCache { side1, side2, map })
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str_list(out: &mut Vec<u8>, list: &[String]) {
    put_u32(out, list.len() as u32);
    for s in list {
        put_u32(out, s.len() as u32);
        out.extend_from_slice(s.as_bytes());
    }
}

fn encode_side(out: &mut Vec<u8>, side: &FolderSide) -> Option<()> {
    match side.uidvalidity {
        Some(v) => {
            out.push(1);
            put_u32(out, v);
        }
        None => out.push(0),
    }
    put_str_list(out, &side.flags);
    match &side.permanent_flags {
        Some(p) => {
            out.push(1);
            put_str_list(out, p);
        }
        None => out.push(0),
    }
    let mut lists: Vec<&[String]> = Vec::new();
    let mut index: HashMap<&[String], u32> = HashMap::new();
    let mut ids = Vec::with_capacity(side.messages.len());
    for m in &side.messages {
        let id = *index.entry(m.flags.as_slice()).or_insert_with(|| {
            lists.push(m.flags.as_slice());
            (lists.len() - 1) as u32
        });
        ids.push(id);
    }
    put_u32(out, lists.len() as u32);
    for l in lists {
        put_str_list(out, l);
    }
    put_u32(out, side.messages.len() as u32);
    for (m, id) in side.messages.iter().zip(ids) {
        put_u32(out, m.uid);
        let key = hex::decode(&m.key.0).ok().filter(|k| k.len() == 32)?;
        out.extend_from_slice(&key);
        put_u32(out, id);
        match m.internaldate {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.timestamp().to_le_bytes());
                out.extend_from_slice(&d.offset().local_minus_utc().to_le_bytes());
            }
            None => out.push(0),
        }
        put_u32(out, m.size);
    }
    Some(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str_list(&mut self) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = self.u32()? as usize;
            v.push(String::from_utf8(self.take(len)?.to_vec()).ok()?);
        }
        Some(v)
    }
}

fn decode_date(secs: i64, offset: i32) -> Option<DateTime<FixedOffset>> {
    FixedOffset::east_opt(offset)?
        .timestamp_opt(secs, 0)
        .single()
}

fn decode_side(r: &mut Reader<'_>) -> Option<FolderSide> {
    let uidvalidity = match r.u8()? {
        0 => None,
        1 => Some(r.u32()?),
        _ => return None,
    };
    let flags = r.str_list()?;
    let permanent_flags = match r.u8()? {
        0 => None,
        1 => Some(r.str_list()?),
        _ => return None,
    };
    let n_lists = r.u32()? as usize;
    let mut lists = Vec::with_capacity(n_lists.min(4096));
    for _ in 0..n_lists {
        lists.push(r.str_list()?);
    }
    let n = r.u32()? as usize;
    let mut messages = Vec::with_capacity(n.min(r.buf.len() / 45 + 1));
    for _ in 0..n {
        let uid = r.u32()?;
        let key = IdentityKey(hex::encode(r.take(32)?));
        let flags = lists.get(r.u32()? as usize)?.clone();
        let internaldate = match r.u8()? {
            0 => None,
            1 => {
                let secs = r.i64()?;
                let off = r.i32()?;
                Some(decode_date(secs, off)?)
            }
            _ => return None,
        };
        let size = r.u32()?;
        messages.push(MsgInfo {
            uid,
            key,
            flags,
            internaldate,
            size,
        });
    }
    Some(FolderSide {
        uidvalidity,
        permanent_flags,
        flags,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn key(i: u32) -> IdentityKey {
        IdentityKey(hex::encode(Sha256::digest(i.to_le_bytes())))
    }

    fn side(n: u32) -> FolderSide {
        let date = DateTime::parse_from_rfc3339("2024-03-01T10:11:12+05:30").unwrap();
        FolderSide {
            uidvalidity: Some(1234),
            permanent_flags: Some(vec!["\\Seen".into(), "\\*".into()]),
            flags: vec!["\\Seen".into(), "$Label1".into()],
            messages: (1..=n)
                .map(|uid| MsgInfo {
                    uid,
                    key: key(uid % 7),
                    flags: if uid % 2 == 0 {
                        vec!["\\Seen".into(), "$Label1".into()]
                    } else {
                        vec![]
                    },
                    internaldate: (uid % 5 != 0).then_some(date),
                    size: uid * 100,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        let c = MessageCache {
            side1: side(50),
            side2: FolderSide {
                uidvalidity: None,
                permanent_flags: None,
                ..side(20)
            },
            map: vec![(1, 3), (2, 4)],
        };
        let bytes = c.encode().unwrap();
        assert!(bytes.len() < 70 * 70, "compact: {} bytes", bytes.len());
        let back = MessageCache::decode(&bytes).unwrap();
        assert_eq!(back, c);
        // Offsets survive (the APPEND date string keeps host1's zone).
        let d = back.side1.messages[0].internaldate.unwrap();
        assert_eq!(d.offset().local_minus_utc(), 5 * 3600 + 1800);
    }

    #[test]
    fn truncated_or_extended_bytes_are_no_cache() {
        let bytes = MessageCache {
            side1: side(5),
            side2: side(5),
            map: vec![],
        }
        .encode()
        .unwrap();
        for cut in [0, 3, 5, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(MessageCache::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(MessageCache::decode(&longer), None);
    }

    #[test]
    fn a_key_that_is_not_a_digest_is_not_cached() {
        let mut s = side(2);
        s.messages[0].key = IdentityKey("not-hex".into());
        let c = MessageCache {
            side1: s,
            ..MessageCache::default()
        };
        assert_eq!(c.encode(), None);
    }
}
