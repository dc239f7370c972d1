//! Bitswap wire format: unsigned-varint length prefixes and a hand-rolled protobuf codec for `message.proto`
//! (the subset a responder needs: decode wantlists, encode blocks and block presences).

use bytes::Bytes;
use cid::Cid;

/// Bitswap protocol versions we speak; replies use the version the peer used for its wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V100,
    V110,
    V120,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V120, Version::V110, Version::V100];

    pub fn protocol(self) -> &'static str {
        match self {
            Version::V100 => "/ipfs/bitswap/1.0.0",
            Version::V110 => "/ipfs/bitswap/1.1.0",
            Version::V120 => "/ipfs/bitswap/1.2.0",
        }
    }

    /// Block presences (HAVE / DONT_HAVE) and want-have exist only from 1.2.0 on.
    pub fn has_presences(self) -> bool {
        self == Version::V120
    }
}

/// One wantlist entry as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    pub cid: Cid,
    pub priority: i32,
    pub cancel: bool,
    /// `wantType = Have` (1.2.0); `false` means want-block.
    pub want_have: bool,
    pub send_dont_have: bool,
}

/// The parts of an inbound message a responder acts on (blocks and presences peers send us are ignored).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub entries: Vec<WantEntry>,
    pub full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

/// An outbound message.
#[derive(Debug, Default, Clone)]
pub struct Outbound {
    pub blocks: Vec<(Cid, Bytes)>,
    pub presences: Vec<(Cid, Presence)>,
}

impl Outbound {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.presences.is_empty()
    }

    /// Approximate encoded size (block payload plus per-entry overhead).
    pub fn size_hint(&self) -> usize {
        self.blocks.iter().map(|(_, d)| d.len() + 64).sum::<usize>() + self.presences.len() * 64
    }

    /// Encodes the message body (without the length prefix) for `version`.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint() + 16);
        for (cid, data) in &self.blocks {
            match version {
                // 1.0.0: `repeated bytes blocks = 2`.
                Version::V100 => put_bytes(&mut out, 2, data),
                // 1.1.0+: `repeated Block payload = 3 { bytes prefix = 1; bytes data = 2; }`.
                Version::V110 | Version::V120 => {
                    let prefix = cid_prefix(cid);
                    let mut block = Vec::with_capacity(prefix.len() + data.len() + 16);
                    put_bytes(&mut block, 1, &prefix);
                    put_bytes(&mut block, 2, data);
                    put_bytes(&mut out, 3, &block);
                }
            }
        }
        if version.has_presences() {
            for (cid, presence) in &self.presences {
                // `repeated BlockPresence blockPresences = 4 { bytes cid = 1; BlockPresenceType type = 2; }`.
                let mut p = Vec::with_capacity(48);
                put_bytes(&mut p, 1, &cid.to_bytes());
                put_varint_field(&mut p, 2, matches!(presence, Presence::DontHave) as u64);
                put_bytes(&mut out, 4, &p);
            }
        }
        out
    }
}

/// `version ‖ codec ‖ multihash code ‖ digest length`, each an unsigned varint.
pub fn cid_prefix(cid: &Cid) -> Vec<u8> {
    let mut p = Vec::with_capacity(8);
    put_varint(&mut p, cid.version() as u64);
    put_varint(&mut p, cid.codec());
    put_varint(&mut p, cid.hash().code());
    put_varint(&mut p, cid.hash().size() as u64);
    p
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, ((field as u64) << 3) | wire as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated protobuf")]
    Truncated,
    #[error("varint too long")]
    VarintOverflow,
    #[error("unsupported wire type {0}")]
    WireType(u8),
}

/// A protobuf reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(DecodeError::Truncated);
            };
            self.buf = rest;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let value = match (key & 7) as u8 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()? as usize;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            w => return Err(DecodeError::WireType(w)),
        };
        Ok(Some((field, value)))
    }
}

/// Decodes a message body. Entries whose CID does not parse are skipped (a peer's bad entry must not hide the rest).
pub fn decode(buf: &[u8]) -> Result<Inbound, DecodeError> {
    let mut msg = Inbound::default();
    let mut r = Reader { buf };
    while let Some((field, value)) = r.next()? {
        if let (1, Value::Bytes(wl)) = (field, value) {
            decode_wantlist(wl, &mut msg)?;
        }
    }
    Ok(msg)
}

fn decode_wantlist(buf: &[u8], msg: &mut Inbound) -> Result<(), DecodeError> {
    let mut r = Reader { buf };
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Value::Bytes(entry)) => {
                if let Some(e) = decode_entry(entry)? {
                    msg.entries.push(e);
                }
            }
            (2, Value::Varint(v)) => msg.full = v != 0,
            _ => {}
        }
    }
    Ok(())
}

fn decode_entry(buf: &[u8]) -> Result<Option<WantEntry>, DecodeError> {
    let mut r = Reader { buf };
    let mut cid = None;
    let mut entry = WantEntry {
        cid: Cid::default(),
        priority: 1,
        cancel: false,
        want_have: false,
        send_dont_have: false,
    };
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => cid = Cid::try_from(b).ok(),
            (2, Value::Varint(v)) => entry.priority = v as i32,
            (3, Value::Varint(v)) => entry.cancel = v != 0,
            (4, Value::Varint(v)) => entry.want_have = v == 1,
            (5, Value::Varint(v)) => entry.send_dont_have = v != 0,
            _ => {}
        }
    }
    Ok(cid.map(|cid| WantEntry { cid, ..entry }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_cid() -> Cid {
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap()
    }

    fn encode_want(entries: &[WantEntry], full: bool) -> Vec<u8> {
        let mut wl = Vec::new();
        for e in entries {
            let mut b = Vec::new();
            put_bytes(&mut b, 1, &e.cid.to_bytes());
            put_varint_field(&mut b, 2, e.priority as u64);
            if e.cancel {
                put_varint_field(&mut b, 3, 1);
            }
            if e.want_have {
                put_varint_field(&mut b, 4, 1);
            }
            if e.send_dont_have {
                put_varint_field(&mut b, 5, 1);
            }
            put_bytes(&mut wl, 1, &b);
        }
        if full {
            put_varint_field(&mut wl, 2, 1);
        }
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &wl);
        out
    }

    #[test]
    fn decodes_wantlist() {
        let e = WantEntry {
            cid: sample_cid(),
            priority: 7,
            cancel: false,
            want_have: true,
            send_dont_have: true,
        };
        let msg = decode(&encode_want(std::slice::from_ref(&e), true)).unwrap();
        assert!(msg.full);
        assert_eq!(msg.entries, vec![e]);
    }

    #[test]
    fn truncated_is_an_error() {
        let e = WantEntry {
            cid: sample_cid(),
            priority: 1,
            cancel: true,
            want_have: false,
            send_dont_have: false,
        };
        let buf = encode_want(&[e], false);
        assert_eq!(decode(&buf[..buf.len() - 3]), Err(DecodeError::Truncated));
    }

    #[test]
    fn prefix_of_raw_sha256() {
        assert_eq!(cid_prefix(&sample_cid()), vec![1, 0x55, 0x12, 32]);
    }

    #[test]
    fn presences_only_in_120() {
        let m = Outbound {
            blocks: vec![],
            presences: vec![(sample_cid(), Presence::DontHave)],
        };
        assert!(m.encode(Version::V110).is_empty());
        let enc = m.encode(Version::V120);
        assert_eq!(enc[0], (4 << 3) | 2);
        // ... and ends with `type = DontHave` (field 2, varint 1).
        assert_eq!(&enc[enc.len() - 2..], &[(2 << 3), 1]);
    }
}
