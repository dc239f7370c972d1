//! UnixFS file DAGs computed in one streaming pass: the root CID for a CID profile, the whole-file
//! digests (for registry checksums), and a block map that says where every block's bytes come from,
//! so blocks can later be rebuilt from the original file without storing a copy.
//!
//! The reference for every CID is the JS `ipfs-unixfs-importer` configured with the same profile.
//! (API contract for the other crates; the implementation is owned by this crate.)

use cid::Cid;

/// A CID profile: how a file is chunked and linked into a DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// IPIP-499 `unixfs-v1-2025`: CIDv1, sha2-256, raw leaves, 1 MiB chunks, balanced, 1024 links.
    UnixfsV1_2025,
    /// `unixfs-v0-2015`: CIDv0, 256 KiB chunks, dag-pb leaves, balanced, 174 links.
    UnixfsV0_2015,
}

impl Profile {
    /// The name used in config and on the command line (`unixfs-v1-2025`, `unixfs-v0-2015`).
    pub fn name(self) -> &'static str {
        todo!()
    }
    pub fn parse(name: &str) -> Option<Profile> {
        todo!()
    }
    pub fn chunk_size_bytes(self) -> u64 {
        todo!()
    }
    pub fn max_links_per_node(self) -> usize {
        todo!()
    }
}

/// Whole-file hash algorithms a registry may publish and a checksum CID may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgo {
    Sha256,
    Sha512,
}

/// Where the bytes of one block come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    /// A raw leaf: exactly the file bytes `offset..offset+len`.
    RawLeaf,
    /// A dag-pb leaf of the legacy profile: a UnixFS File node wrapping file bytes `offset..offset+len`;
    /// rebuilt with [`pb_leaf_block`].
    PbLeaf,
    /// An interior dag-pb node; its encoded bytes are small and kept in the index.
    Interior(Vec<u8>),
    /// The whole file as one raw block under its registry checksum (a checksum CID); `offset` is 0.
    WholeFile(DigestAlgo),
}

/// One block of a file's DAG and where its bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBlock {
    pub cid: Cid,
    pub kind: BlockKind,
    /// Byte range in the file for leaves and whole-file blocks; 0/0 for interior nodes.
    pub offset: u64,
    pub len: u64,
}

/// The result of one pass over a file.
#[derive(Debug, Clone)]
pub struct FileDag {
    pub profile: Profile,
    pub root: Cid,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    /// Present when requested in [`DagBuilder::new`].
    pub sha512: Option<[u8; 64]>,
    /// Every distinct block of the DAG (leaves and interior nodes), root included. A root that is a single raw leaf
    /// appears once.
    pub blocks: Vec<PlannedBlock>,
}

/// Streaming builder: feed the file's bytes in any split with [`DagBuilder::update`], then [`DagBuilder::finish`].
pub struct DagBuilder {
    _private: (),
}

impl DagBuilder {
    pub fn new(profile: Profile, also_sha512: bool) -> DagBuilder {
        todo!()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        todo!()
    }
    pub fn finish(self) -> FileDag {
        todo!()
    }
}

/// Reads `path` once and builds its DAG.
pub fn dag_of_file(path: &std::path::Path, profile: Profile, also_sha512: bool) -> std::io::Result<FileDag> {
    todo!()
}

/// The checksum CID: CIDv1, codec raw, multihash(algo, digest). Errors when the digest length is wrong for `algo`.
pub fn checksum_cid(algo: DigestAlgo, digest: &[u8]) -> Result<Cid, CidError> {
    todo!()
}

/// Rebuilds a legacy dag-pb leaf block from the file bytes it wraps.
pub fn pb_leaf_block(file_bytes: &[u8]) -> Vec<u8> {
    todo!()
}

/// True when `bytes` hash to the multihash inside `cid` (sha2-256 or sha2-512); false for any other hash function.
pub fn block_matches_cid(cid: &Cid, bytes: &[u8]) -> bool {
    todo!()
}

/// The largest block IPFS peers accept (2 MiB); whole-file checksum blocks are only made for files up to this size.
pub const MAX_BLOCK_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CidError {
    #[error("a {algo:?} digest must be {expected} bytes, got {actual}")]
    DigestLength { algo: DigestAlgo, expected: usize, actual: usize },
}
