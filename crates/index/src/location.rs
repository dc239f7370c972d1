//! The fixed-width encoding of one block location (artifact, kind, byte range) stored in the block multimap.

use pkgseed_unixfs::{BlockKind, DigestAlgo};

use crate::ArtifactId;

/// How the bytes of a block are obtained, without the interior node's bytes (those live in their own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocKind {
    RawLeaf,
    PbLeaf,
    Interior,
    WholeFile(DigestAlgo),
}

impl LocKind {
    pub(crate) fn of(kind: &BlockKind) -> LocKind {
        match kind {
            BlockKind::RawLeaf => LocKind::RawLeaf,
            BlockKind::PbLeaf => LocKind::PbLeaf,
            BlockKind::Interior(_) => LocKind::Interior,
            BlockKind::WholeFile(algo) => LocKind::WholeFile(*algo),
        }
    }

    fn tag(self) -> (u8, u8) {
        match self {
            LocKind::RawLeaf => (0, 0),
            LocKind::PbLeaf => (1, 0),
            LocKind::Interior => (2, 0),
            LocKind::WholeFile(DigestAlgo::Sha256) => (3, 0),
            LocKind::WholeFile(DigestAlgo::Sha512) => (3, 1),
        }
    }

    fn from_tag(tag: u8, algo: u8) -> Option<LocKind> {
        Some(match (tag, algo) {
            (0, _) => LocKind::RawLeaf,
            (1, _) => LocKind::PbLeaf,
            (2, _) => LocKind::Interior,
            (3, 0) => LocKind::WholeFile(DigestAlgo::Sha256),
            (3, 1) => LocKind::WholeFile(DigestAlgo::Sha512),
            _ => return None,
        })
    }
}

/// Where one block's bytes live. Encoded as 26 bytes: artifact id (u64 BE), kind tag, algo tag, offset (u64 BE),
/// length (u64 BE). The artifact id comes first so that two artifacts never produce equal values for one CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub artifact: ArtifactId,
    pub kind: LocKind,
    pub offset: u64,
    pub len: u64,
}

pub(crate) const ENCODED_LEN: usize = 26;

impl Location {
    pub(crate) fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let (tag, algo) = self.kind.tag();
        out[0..8].copy_from_slice(&self.artifact.to_be_bytes());
        out[8] = tag;
        out[9] = algo;
        out[10..18].copy_from_slice(&self.offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Location> {
        if bytes.len() != ENCODED_LEN {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Some(Location {
            artifact: u64_at(0),
            kind: LocKind::from_tag(bytes[8], bytes[9])?,
            offset: u64_at(10),
            len: u64_at(18),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            LocKind::RawLeaf,
            LocKind::PbLeaf,
            LocKind::Interior,
            LocKind::WholeFile(DigestAlgo::Sha256),
            LocKind::WholeFile(DigestAlgo::Sha512),
        ] {
            let loc = Location {
                artifact: 0x0102_0304_0506_0708,
                kind,
                offset: u64::MAX - 3,
                len: 1 << 20,
            };
            assert_eq!(Location::decode(&loc.encode()), Some(loc));
        }
        assert_eq!(Location::decode(&[0u8; 25]), None);
        let mut bad = Location {
            artifact: 1,
            kind: LocKind::RawLeaf,
            offset: 0,
            len: 1,
        }
        .encode();
        bad[8] = 9;
        assert_eq!(Location::decode(&bad), None);
    }
}
