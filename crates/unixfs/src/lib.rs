//! UnixFS file DAGs computed in one streaming pass: the root CID for a CID profile, the whole-file
//! digests (for registry checksums), and a block map that says where every block's bytes come from,
//! so blocks can later be rebuilt from the original file without storing a copy.
//!
//! The reference for every CID is the JS `ipfs-unixfs-importer` configured with the same profile.
//! (API contract for the other crates; the implementation is owned by this crate.)

mod builder;
mod confine;
mod file_reader;
mod protobuf;
#[cfg(test)]
mod tests;

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256, Sha512};

use crate::builder::{BalancedBuilder, WholeFileHasher};
pub use crate::confine::{check_confined, Unconfined, SPARSE_CHECK_MIN_BYTES};
pub use crate::file_reader::stop_digest_helper;
pub use crate::protobuf::push_varint;

/// Multicodec of a raw block.
pub const CODEC_RAW: u64 = 0x55;
/// Multicodec of a dag-pb block.
pub const CODEC_DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const MULTIHASH_SHA2_256: u64 = 0x12;
/// Multihash code of sha2-512.
pub const MULTIHASH_SHA2_512: u64 = 0x13;

/// How much `dag_of_file` reads per call on this thread alone (inputs of one chunk; a read buffer the input's size
/// plus one byte, so the end shows without a second pass; larger inputs go to `file_reader`).
pub(crate) const FILE_READ_BUFFER_BYTES: usize = 1024 * 1024;

pub(crate) fn sha256_multihash(digest: &[u8]) -> Multihash<64> {
    Multihash::wrap(MULTIHASH_SHA2_256, digest).expect("a 32-byte digest fits a 64-byte multihash")
}

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
        match self {
            Profile::UnixfsV1_2025 => "unixfs-v1-2025",
            Profile::UnixfsV0_2015 => "unixfs-v0-2015",
        }
    }
    /// The profile called `name` (see [`Profile::name`]), if any.
    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL
            .into_iter()
            .find(|profile| profile.name() == name)
    }
    pub fn chunk_size_bytes(self) -> u64 {
        match self {
            Profile::UnixfsV1_2025 => 1024 * 1024,
            Profile::UnixfsV0_2015 => 256 * 1024,
        }
    }
    pub fn max_links_per_node(self) -> usize {
        match self {
            Profile::UnixfsV1_2025 => 1024,
            Profile::UnixfsV0_2015 => 174,
        }
    }
    /// Every profile, the default first.
    pub const ALL: [Profile; 2] = [Profile::UnixfsV1_2025, Profile::UnixfsV0_2015];
}

/// Whole-file hash algorithms a registry may publish and a checksum CID may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgo {
    Sha256,
    Sha512,
}

impl DigestAlgo {
    /// The multihash code of this hash function.
    pub fn multihash_code(self) -> u64 {
        match self {
            DigestAlgo::Sha256 => MULTIHASH_SHA2_256,
            DigestAlgo::Sha512 => MULTIHASH_SHA2_512,
        }
    }
    pub fn digest_len_bytes(self) -> usize {
        match self {
            DigestAlgo::Sha256 => 32,
            DigestAlgo::Sha512 => 64,
        }
    }
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
    /// Present when requested in [`DagBuilder::new`] / [`ExtraDigests::sha512`].
    pub sha512: Option<[u8; 64]>,
    /// Present when requested with [`ExtraDigests::sha1`] (Maven's `.sha1`, Gradle's cache dir names).
    pub sha1: Option<[u8; 20]>,
    /// Every distinct block of the DAG (leaves and interior nodes), root included. A root that is a single raw leaf
    /// appears once. A chunk whose bytes repeat earlier in the file is listed once, at its first range (as the
    /// reference stores it once). An empty file is one empty leaf: the empty raw block
    /// (`bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku`) in v1-2025, the dag-pb leaf
    /// `QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH` in v0-2015. Checksum (`WholeFile`) blocks are not listed here.
    pub blocks: Vec<PlannedBlock>,
}

/// Whole-file digests computed besides sha256 (always computed), in the same pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraDigests {
    pub sha512: bool,
    pub sha1: bool,
}

impl ExtraDigests {
    /// Only sha512 when `also_sha512` (what the older `also_sha512: bool` arguments mean).
    pub fn sha512_if(also_sha512: bool) -> ExtraDigests {
        ExtraDigests {
            sha512: also_sha512,
            sha1: false,
        }
    }
}

/// Streaming builder: feed the file's bytes in any split with [`DagBuilder::update`], then [`DagBuilder::finish`].
/// Holds at most one chunk (only for dag-pb leaves; raw leaves are hashed as they arrive) plus the open interior
/// levels, never the whole file.
pub struct DagBuilder {
    inner: BalancedBuilder,
}

impl DagBuilder {
    pub fn new(profile: Profile, also_sha512: bool) -> DagBuilder {
        DagBuilder::with_extra_digests(profile, ExtraDigests::sha512_if(also_sha512))
    }
    /// A builder that also computes the whole-file digests `extra` asks for.
    pub fn with_extra_digests(profile: Profile, extra: ExtraDigests) -> DagBuilder {
        DagBuilder {
            inner: BalancedBuilder::new(
                profile,
                profile.chunk_size_bytes(),
                profile.max_links_per_node(),
                Some(WholeFileHasher::new(extra)),
            ),
        }
    }
    /// A builder with the profile's encoding but a different chunk size and link width, so tests can build deep
    /// trees from small inputs (and compare them with the reference configured the same way). Not a CID profile:
    /// never publish what it makes. Panics when `chunk_size_bytes` is 0 or `max_links_per_node` < 2.
    #[doc(hidden)]
    pub fn with_layout_for_tests(
        profile: Profile,
        chunk_size_bytes: u64,
        max_links_per_node: usize,
        also_sha512: bool,
    ) -> DagBuilder {
        DagBuilder {
            inner: BalancedBuilder::new(
                profile,
                chunk_size_bytes,
                max_links_per_node,
                Some(WholeFileHasher::new(ExtraDigests::sha512_if(also_sha512))),
            ),
        }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes)
    }
    pub fn finish(self) -> FileDag {
        self.inner.finish(None)
    }
}

impl std::io::Write for DagBuilder {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `path` once and builds its DAG.
pub fn dag_of_file(
    path: &std::path::Path,
    profile: Profile,
    also_sha512: bool,
) -> std::io::Result<FileDag> {
    dag_of_file_with(path, profile, ExtraDigests::sha512_if(also_sha512))
}

/// Reads `path` once and builds its DAG, with the extra whole-file digests `extra` asks for.
pub fn dag_of_file_with(
    path: &std::path::Path,
    profile: Profile,
    extra: ExtraDigests,
) -> std::io::Result<FileDag> {
    let file = open_regular_file(path)?;
    let file_len_bytes = file.metadata()?.len();
    dag_of_reader(file, file_len_bytes, profile, extra)
}

/// Reads the `len_bytes` bytes at `offset_bytes` of `path` once and builds their DAG: the artifact is that range
/// (pip before 23.3 keeps a response body inline in its cache entry), and every block offset in the result is
/// relative to the range's start. A range past the end of the file is an error; a file that shrinks while it is
/// read gives a DAG with a smaller `size_bytes` (the caller compares it with `len_bytes`).
pub fn dag_of_file_range_with(
    path: &std::path::Path,
    offset_bytes: u64,
    len_bytes: u64,
    profile: Profile,
    extra: ExtraDigests,
) -> std::io::Result<FileDag> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = open_regular_file(path)?;
    let file_len_bytes = file.metadata()?.len();
    if offset_bytes
        .checked_add(len_bytes)
        .is_none_or(|end| end > file_len_bytes)
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "range {offset_bytes}+{len_bytes} is outside {} ({file_len_bytes} bytes)",
                path.display()
            ),
        ));
    }
    file.seek(SeekFrom::Start(offset_bytes))?;
    dag_of_reader(file.take(len_bytes), len_bytes, profile, extra)
}

/// Builds the DAG of everything `input` yields (about `len_bytes`, which picks the read strategy).
fn dag_of_reader(
    mut input: impl std::io::Read,
    len_bytes: u64,
    profile: Profile,
    extra: ExtraDigests,
) -> std::io::Result<FileDag> {
    if file_reader::uses_helper(len_bytes, profile) {
        return file_reader::dag_with_helper_thread(input, profile, extra);
    }
    let mut builder = DagBuilder::with_extra_digests(profile, extra);
    let mut read_buffer = vec![0u8; FILE_READ_BUFFER_BYTES.min(len_bytes as usize + 1)];
    loop {
        let read_bytes = file_reader::read_some(&mut input, &mut read_buffer)?;
        if read_bytes == 0 {
            break;
        }
        builder.update(&read_buffer[..read_bytes]);
    }
    Ok(builder.finish())
}

/// Opens a regular file for reading, never through a symlink at the last component and never blocking (a FIFO
/// swapped in for the file would otherwise block the open until a writer appears), and checks the handle is a
/// regular file. Callers that checked the path with `symlink_metadata` first cannot be raced into reading
/// something else.
pub fn open_regular_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// The checksum CID: CIDv1, codec raw, multihash(algo, digest). Errors when the digest length is wrong for `algo`.
pub fn checksum_cid(algo: DigestAlgo, digest: &[u8]) -> Result<Cid, CidError> {
    if digest.len() != algo.digest_len_bytes() {
        return Err(CidError::DigestLength {
            algo,
            expected: algo.digest_len_bytes(),
            actual: digest.len(),
        });
    }
    let multihash = Multihash::wrap(algo.multihash_code(), digest)
        .expect("a sha2 digest fits a 64-byte multihash");
    Ok(Cid::new_v1(CODEC_RAW, multihash))
}

/// Rebuilds a legacy dag-pb leaf block from the file bytes it wraps.
pub fn pb_leaf_block(file_bytes: &[u8]) -> Vec<u8> {
    let (prefix, suffix) = protobuf::pb_leaf_framing(file_bytes.len() as u64);
    let mut block = Vec::with_capacity(prefix.len() + file_bytes.len() + suffix.len());
    block.extend_from_slice(&prefix);
    block.extend_from_slice(file_bytes);
    block.extend_from_slice(&suffix);
    block
}

/// The child CIDs of a dag-pb node in link order (what a DAG walk follows); an error for a malformed node.
pub fn dag_pb_links(block: &[u8]) -> Result<Vec<Cid>, String> {
    protobuf::dag_pb_links(block)
}

/// True when `bytes` hash to the multihash inside `cid` (sha2-256 or sha2-512); false for any other hash function.
pub fn block_matches_cid(cid: &Cid, bytes: &[u8]) -> bool {
    let expected_digest = cid.hash().digest();
    match cid.hash().code() {
        MULTIHASH_SHA2_256 => Sha256::digest(bytes).as_slice() == expected_digest,
        MULTIHASH_SHA2_512 => Sha512::digest(bytes).as_slice() == expected_digest,
        _ => false,
    }
}

/// The largest block IPFS peers accept (2 MiB); whole-file checksum blocks are only made for files up to this size.
pub const MAX_BLOCK_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CidError {
    #[error("a {algo:?} digest must be {expected} bytes, got {actual}")]
    DigestLength {
        algo: DigestAlgo,
        expected: usize,
        actual: usize,
    },
}
