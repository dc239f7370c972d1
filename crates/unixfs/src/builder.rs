//! The streaming DAG builder: fixed-size chunking, leaf hashing and the reference importer's `balanced` layout,
//! reduced level by level as chunks arrive so only one chunk and the open interior levels are held in memory.
//!
//! Layout semantics (ipfs-unixfs-importer `layout/balanced.js` + `dag-builder/file.js`): the leaves are cut into
//! batches of `max_links`, each batch becomes one parent node, and the list of parents is batched again until one
//! node is left. A batch of one is still wrapped in a parent (e.g. the 1025th leaf of a v1 file gets its own parent
//! with one link); only a file of exactly one chunk is its own root.

use std::collections::HashSet;

use cid::Cid;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::protobuf::{encode_interior_node, pb_leaf_framing, ChildLink};
use crate::{
    sha256_multihash, BlockKind, ExtraDigests, FileDag, PlannedBlock, Profile, CODEC_DAG_PB,
    CODEC_RAW,
};

/// How leaves are encoded and interior nodes addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafEncoding {
    /// Raw leaves under CIDv1, dag-pb interior nodes under CIDv1.
    RawCidV1,
    /// dag-pb UnixFS leaves and interior nodes, all under CIDv0.
    PbCidV0,
}

/// Whole-file digests, computed by the builder or (for large files) by a helper thread beside it.
pub(crate) struct WholeFileHasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
    sha1: Option<Sha1>,
}

pub(crate) struct WholeFileDigests {
    pub sha256: [u8; 32],
    pub sha512: Option<[u8; 64]>,
    pub sha1: Option<[u8; 20]>,
}

impl WholeFileHasher {
    pub(crate) fn new(extra: ExtraDigests) -> WholeFileHasher {
        WholeFileHasher {
            sha256: Sha256::new(),
            sha512: extra.sha512.then(Sha512::new),
            sha1: extra.sha1.then(Sha1::new),
        }
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.update_extra(bytes);
    }
    /// The optional digests only (sha256 is fed separately by the builder).
    pub(crate) fn update_extra(&mut self, bytes: &[u8]) {
        if let Some(sha512) = &mut self.sha512 {
            sha512.update(bytes);
        }
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(bytes);
        }
    }
    pub(crate) fn finish(self) -> WholeFileDigests {
        WholeFileDigests {
            sha256: self.sha256.finalize().into(),
            sha512: self.sha512.map(|sha512| sha512.finalize().into()),
            sha1: self.sha1.map(|sha1| sha1.finalize().into()),
        }
    }
}

/// One level of the tree: links not yet gathered into a parent, and how many links this level ever had.
#[derive(Default)]
struct Level {
    pending_links: Vec<ChildLink>,
    links_ever_made: u64,
}

pub(crate) struct BalancedBuilder {
    profile: Profile,
    leaf_encoding: LeafEncoding,
    chunk_size_bytes: u64,
    max_links_per_node: usize,
    /// The open chunk of a raw-leaf profile, hashed as bytes arrive (no copy).
    raw_leaf_hasher: Sha256,
    /// The open chunk of a dag-pb-leaf profile: the leaf's framing depends on the chunk's final length, so its bytes
    /// are buffered (one chunk at most; the buffer is reused).
    pb_chunk_bytes: Vec<u8>,
    open_chunk_offset: u64,
    open_chunk_len_bytes: u64,
    /// `None` when the caller hashes the whole file elsewhere and passes the digests to `finish`.
    whole_file_hasher: Option<WholeFileHasher>,
    levels: Vec<Level>,
    blocks: Vec<PlannedBlock>,
    block_cids_seen: HashSet<Cid>,
}

impl BalancedBuilder {
    pub(crate) fn new(
        profile: Profile,
        chunk_size_bytes: u64,
        max_links_per_node: usize,
        whole_file_hasher: Option<WholeFileHasher>,
    ) -> BalancedBuilder {
        assert!(chunk_size_bytes > 0, "chunk size must be positive");
        assert!(
            max_links_per_node >= 2,
            "a balanced layout needs at least 2 links per node"
        );
        let leaf_encoding = match profile {
            Profile::UnixfsV1_2025 => LeafEncoding::RawCidV1,
            Profile::UnixfsV0_2015 => LeafEncoding::PbCidV0,
        };
        BalancedBuilder {
            profile,
            leaf_encoding,
            chunk_size_bytes,
            max_links_per_node,
            raw_leaf_hasher: Sha256::new(),
            pb_chunk_bytes: Vec::new(),
            open_chunk_offset: 0,
            open_chunk_len_bytes: 0,
            whole_file_hasher,
            levels: vec![Level::default()],
            blocks: Vec::new(),
            block_cids_seen: HashSet::new(),
        }
    }

    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        if let Some(hasher) = self.whole_file_hasher.as_mut() {
            hasher.update_extra(bytes);
        }
        while !bytes.is_empty() {
            let room_bytes = self.chunk_size_bytes - self.open_chunk_len_bytes;
            let take_bytes = (bytes.len() as u64).min(room_bytes) as usize;
            let (taken, rest) = bytes.split_at(take_bytes);
            match self.leaf_encoding {
                LeafEncoding::RawCidV1 => {
                    self.raw_leaf_hasher.update(taken);
                    // The first raw leaf's hash state *is* the whole-file state so far: it is copied when that
                    // leaf closes, which spares hashing the first chunk twice (all of a file ≤ one chunk).
                    if let (Some(hasher), true) =
                        (&mut self.whole_file_hasher, self.open_chunk_offset > 0)
                    {
                        hasher.sha256.update(taken);
                    }
                }
                LeafEncoding::PbCidV0 => {
                    self.pb_chunk_bytes.extend_from_slice(taken);
                    if let Some(hasher) = &mut self.whole_file_hasher {
                        hasher.sha256.update(taken);
                    }
                }
            }
            self.open_chunk_len_bytes += take_bytes as u64;
            bytes = rest;
            if self.open_chunk_len_bytes == self.chunk_size_bytes {
                self.close_chunk();
            }
        }
    }

    /// Turns the open chunk into a leaf and links it into level 0.
    fn close_chunk(&mut self) {
        let offset = self.open_chunk_offset;
        let file_bytes = self.open_chunk_len_bytes;
        let (cid, kind, tsize_bytes) = match self.leaf_encoding {
            LeafEncoding::RawCidV1 => {
                if let (Some(hasher), 0) = (&mut self.whole_file_hasher, offset) {
                    hasher.sha256 = self.raw_leaf_hasher.clone();
                }
                let leaf_digest = self.raw_leaf_hasher.finalize_reset();
                let cid = Cid::new_v1(CODEC_RAW, sha256_multihash(&leaf_digest));
                (cid, BlockKind::RawLeaf, file_bytes)
            }
            LeafEncoding::PbCidV0 => {
                let (prefix, suffix) = pb_leaf_framing(file_bytes);
                let mut leaf_hasher = Sha256::new();
                leaf_hasher.update(&prefix);
                leaf_hasher.update(&self.pb_chunk_bytes);
                leaf_hasher.update(&suffix);
                let cid = Cid::new_v0(sha256_multihash(&leaf_hasher.finalize()))
                    .expect("a sha2-256 multihash is a valid CIDv0");
                let block_len_bytes =
                    (prefix.len() + self.pb_chunk_bytes.len() + suffix.len()) as u64;
                self.pb_chunk_bytes.clear();
                (cid, BlockKind::PbLeaf, block_len_bytes)
            }
        };
        self.record_block(PlannedBlock {
            cid,
            kind,
            offset,
            len: file_bytes,
        });
        self.open_chunk_offset += file_bytes;
        self.open_chunk_len_bytes = 0;
        self.push_link(
            0,
            ChildLink {
                cid,
                tsize_bytes,
                file_bytes,
            },
        );
    }

    fn record_block(&mut self, block: PlannedBlock) {
        if self.block_cids_seen.insert(block.cid) {
            self.blocks.push(block);
        }
    }

    /// Adds a link to `level`; a full level is gathered into a parent at once (the same batches the reference cuts).
    fn push_link(&mut self, level_index: usize, link: ChildLink) {
        let level = &mut self.levels[level_index];
        level.pending_links.push(link);
        level.links_ever_made += 1;
        if level.pending_links.len() == self.max_links_per_node {
            self.reduce_pending(level_index);
        }
    }

    /// Gathers the pending links of `level_index` into one interior node, linked into the level above.
    fn reduce_pending(&mut self, level_index: usize) {
        let children = std::mem::take(&mut self.levels[level_index].pending_links);
        let node_bytes = encode_interior_node(&children);
        let multihash = sha256_multihash(&Sha256::digest(&node_bytes));
        let cid = match self.leaf_encoding {
            LeafEncoding::RawCidV1 => Cid::new_v1(CODEC_DAG_PB, multihash),
            LeafEncoding::PbCidV0 => {
                Cid::new_v0(multihash).expect("a sha2-256 multihash is a valid CIDv0")
            }
        };
        let link = ChildLink {
            cid,
            tsize_bytes: node_bytes.len() as u64
                + children.iter().map(|child| child.tsize_bytes).sum::<u64>(),
            file_bytes: children.iter().map(|child| child.file_bytes).sum(),
        };
        self.record_block(PlannedBlock {
            cid,
            kind: BlockKind::Interior(node_bytes),
            offset: 0,
            len: 0,
        });
        if self.levels.len() == level_index + 1 {
            self.levels.push(Level::default());
        }
        self.push_link(level_index + 1, link);
    }

    /// Closes the DAG. `digests_from_elsewhere` must be given exactly when the builder was made without a
    /// whole-file hasher.
    pub(crate) fn finish(mut self, digests_from_elsewhere: Option<WholeFileDigests>) -> FileDag {
        // The reference chunker yields the remainder, or one empty chunk for an empty file.
        if self.open_chunk_len_bytes > 0 || self.levels[0].links_ever_made == 0 {
            self.close_chunk();
        }
        let mut level_index = 0;
        let root = loop {
            let is_top_level = level_index + 1 == self.levels.len();
            let level = &self.levels[level_index];
            if is_top_level && level.links_ever_made == 1 {
                break level.pending_links[0].cid;
            }
            if !level.pending_links.is_empty() {
                self.reduce_pending(level_index);
            }
            level_index += 1;
        };
        let digests = match (self.whole_file_hasher, digests_from_elsewhere) {
            (Some(hasher), None) => hasher.finish(),
            (None, Some(digests)) => digests,
            _ => unreachable!("whole-file digests come from exactly one place"),
        };
        FileDag {
            profile: self.profile,
            root,
            size_bytes: self.open_chunk_offset,
            sha256: digests.sha256,
            sha512: digests.sha512,
            sha1: digests.sha1,
            blocks: self.blocks,
        }
    }
}
