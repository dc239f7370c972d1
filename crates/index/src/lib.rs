//! The artifact index (a transactional embedded DB, crash-safe) and the zero-copy block store: a block is read
//! from the cache file on demand and its hash verified before it is returned.
//! (API contract for the other crates; the implementation is owned by this crate.)
//!
//! Layout (redb, one file; schema 5):
//! - `artifact_records`: artifact id → [`ArtifactRecord`] in the compact binary encoding of `record.rs`, keyed by
//!   a bijective mix of the id ([`ScatteredId`]) so that leaves fill to ≈ 70 % rather than 50 %. Schema 5 writes
//!   format 6: LEB128 integers, a checksum CID equal to the root and a registry digest equal to the checksum CID's
//!   stored by reference, the ecosystem, profile and checksum algorithm as one-byte codes, and the path's copies of
//!   the name, version, origin and checksum digest as references; formats 2 to 5 and schema 1's JSON are still
//!   read. (Schema 4 and older:
//!   table `artifacts`, keyed by the id itself; moved here on open.)
//! - `path_ids`: 64-bit hash of the path bytes (SHA-256, first 8 bytes) → artifact ids at paths with that hash (one
//!   unless two paths collide; the record's path decides). The path itself is stored once, in the record. Schema 3
//!   and older kept a `paths` table (path bytes → id): it is moved into `path_ids` in the transaction that opens
//!   such an index, so a crash before that commit leaves the old table and schema untouched.
//! - `blocks`: multimap CID bytes → encoded location (artifact, kind, offset, len; the offset is relative to the
//!   artifact's content range, which is the whole file except for pip's pre-23.3 inline bodies). Two artifacts may
//!   hold the same CID; each keeps its own location, so removing one never removes the other's. A whole-file
//!   checksum block with the same CID and range as one of the artifact's raw leaves (a single-chunk sha256 file:
//!   the leaf IS the checksum block) is stored once, as the leaf (schema 4).
//! - `artifact_blocks`: multimap artifact id → CID bytes (what to withdraw / delete when the artifact goes), except
//!   the root and checksum CIDs, which the record names (schema 4; older indexes have rows for them too, and both
//!   are read: [`Index::block_cids_of`] and removal take the union)
//! - `interior`: CID bytes → encoded interior node; kept while at least one interior location refers to it
//! - `ecosystem_totals`: ecosystem → (artifact count, artifact bytes), kept in step with `artifact_records` by every
//!   write so the status never decodes every record (filled from the records when an older index lacks it)
//! - `meta`: `schema_version`, `next_id`
//!
//! Size on disk (issue 6 goal: ≤ 0.5 % of the seeded bytes; docs/benchmarks.md, "Index size"): per artifact the
//! rows above are ≈ 250 bytes, but redb's B-tree leaves are not full (a leaf splits at its middle; with random keys
//! leaves average ≈ 70 %, with growing keys the left half is never filled again: hence [`ScatteredId`]), its
//! copy-on-write commits leave freed pages behind, and its file grows by doubling. [`Index::compact_if_grown`]
//! (called by the engine when a scan is done) moves the used pages to the front and gives the rest back; it is
//! crash-safe (redb's ordinary two-phase commits, only moving pages).

mod location;
mod record;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::File;
use std::path::{Path, PathBuf};

use cid::Cid;
use pkgseed_unixfs::{BlockKind, PlannedBlock, MAX_BLOCK_BYTES};
use redb::{
    Database, MultimapTableDefinition, ReadableMultimapTable, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};
use sha2::Digest;

use crate::location::{LocKind, Location};

pub type ArtifactId = u64;

/// What the index remembers about one seeded artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactRecord {
    pub id: ArtifactId,
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub origin: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// File identity used to skip rehashing after a restart.
    pub mtime_ns: i128,
    pub inode: u64,
    /// Root CID (string form) under the profile it was indexed with.
    pub root_cid: String,
    pub profile: String,
    pub checksum_cid: Option<String>,
    /// `algo:hex`
    pub registry_checksum: String,
    /// Where the artifact's bytes sit inside the file when they are not the whole file (pip before 23.3 keeps a
    /// response body inline in its cache entry); `None` = the whole file. Block locations are relative to its start.
    /// Records written before it existed decode as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_range: Option<ContentRange>,
}

/// A byte range of a file that holds an artifact's bytes (its offset in the file and its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentRange {
    pub offset: u64,
    pub len: u64,
}

impl ArtifactRecord {
    /// Where the artifact's bytes start in its file (0 for a whole-file artifact).
    pub fn content_offset(&self) -> u64 {
        self.content_range.map_or(0, |range| range.offset)
    }

    /// The artifact's length in bytes (the file's size for a whole-file artifact).
    pub fn content_len(&self) -> u64 {
        self.content_range
            .map_or(self.size_bytes, |range| range.len)
    }

    /// The file identity recorded when the artifact was indexed.
    pub fn stamp(&self) -> FileStamp {
        FileStamp {
            size_bytes: self.size_bytes,
            mtime_ns: self.mtime_ns,
            inode: self.inode,
        }
    }
}

/// The file identity the index compares to decide whether a file must be rehashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size_bytes: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(metadata: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size_bytes: metadata.len(),
            mtime_ns: mtime_ns(metadata),
            inode: inode(metadata),
        }
    }

    /// The stamp of the file at `path` (following symlinks).
    pub fn of_path(path: &Path) -> std::io::Result<FileStamp> {
        Ok(FileStamp::of(&std::fs::metadata(path)?))
    }
}

#[cfg(unix)]
fn mtime_ns(metadata: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    // `mtime` is seconds (possibly negative), `mtime_nsec` is always in 0..1e9.
    i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec())
}

#[cfg(not(unix))]
fn mtime_ns(metadata: &std::fs::Metadata) -> i128 {
    match metadata.modified() {
        Ok(time) => match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        },
        Err(_) => 0,
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    metadata.ino()
}

#[cfg(not(unix))]
fn inode(_metadata: &std::fs::Metadata) -> u64 {
    0
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(String),
    #[error("index I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The caller handed the index something inconsistent (e.g. a block range outside the file).
    #[error("invalid artifact for the index: {0}")]
    Invalid(String),
}

/// Why a block could not be served from its file.
#[derive(Debug, thiserror::Error)]
pub enum BlockReadError {
    #[error("artifact {artifact} changed on disk: {reason}")]
    Stale {
        artifact: ArtifactId,
        reason: String,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The schema this build writes and understands. Schema 5 keys the artifact table by [`ScatteredId`] (table
/// `artifact_records`) and writes record format 6 (ecosystem, profile and checksum algorithm as codes, the path
/// referring to the name, version, origin and checksum digest it contains); schema 4 (smaller on disk) hashed the
/// path table's keys, wrote record format 4, and left out the block rows its records already name; schema 3 added
/// records whose artifact is a byte range of its file (record format 3); schema 2 (binary records, all whole files)
/// and schema 1 (JSON records) are read too.
/// An older index is marked 5 on open, in one transaction with its upgrade: its `artifacts` table moved into
/// `artifact_records` (each record re-encoded) and its `paths` table moved to `path_ids`; its block rows stay as
/// they are and are read as written. An older build refuses the file instead of misreading it.
pub const SCHEMA_VERSION: u64 = 5;
const OLDER_READABLE_SCHEMAS: [u64; 4] = [1, 2, 3, 4];

/// Artifact id → record, keyed in [`ScatteredId`] order (schema 5).
const ARTIFACTS: TableDefinition<ScatteredId, &[u8]> = TableDefinition::new("artifact_records");
/// Schema 4 and older: the same, keyed in id order. Moved into [`ARTIFACTS`] when such an index is opened.
const LEGACY_ARTIFACTS: TableDefinition<u64, &[u8]> = TableDefinition::new("artifacts");
/// Schema 3 and older: path bytes → artifact id. Moved into [`PATH_IDS`] when such an index is opened.
const PATHS: TableDefinition<&[u8], u64> = TableDefinition::new("paths");
/// A 64-bit hash of the path bytes → the ids of the artifacts at paths with that hash, u64 LE each (one, unless
/// two paths collide); the record's path decides which one a path names.
const PATH_IDS: TableDefinition<u64, &[u8]> = TableDefinition::new("path_ids");
const BLOCKS: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new("blocks");
const ARTIFACT_BLOCKS: MultimapTableDefinition<u64, &[u8]> =
    MultimapTableDefinition::new("artifact_blocks");
const INTERIOR: TableDefinition<&[u8], &[u8]> = TableDefinition::new("interior");
const ECOSYSTEM_TOTALS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("ecosystem_totals");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The bytes a CID's digest follows, for each form [`Index::multihashes_with_digest_prefix`] looks at: CIDv0
/// (sha2-256 only), then CIDv1 raw and dag-pb over sha2-256 and sha2-512 (version, codec, hash code, length).
const CID_PREFIXES_BY_FORM: [&[u8]; 5] = [
    &[0x12, 0x20],
    &[0x01, 0x55, 0x12, 0x20],
    &[0x01, 0x70, 0x12, 0x20],
    &[0x01, 0x55, 0x13, 0x40],
    &[0x01, 0x70, 0x13, 0x40],
];

const META_SCHEMA: &str = "schema_version";
const META_NEXT_ID: &str = "next_id";

/// redb's page cache. It fills during a scan's writes and stays: 14.8 MB of the idle heap at 100k artifacts with
/// 16 MiB (heaptrack). Lookups that miss it read from the OS page cache, which keeps the file anyway.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The owner's hard link to an artifact's file, by root CID ([`Index::account_own_links`]).
type OwnLinkOf = Box<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// The key of the artifact table: an artifact id, stored and ordered as a bijective 64-bit mix of it, so that
/// artifacts written one after another land all over the table instead of at its end.
///
/// Why: redb splits a full B-tree leaf at its middle. With ids in order every insert goes to the last leaf, so
/// each split leaves a half-full leaf behind that nothing is inserted into again: the table was twice the size of
/// its records (49 MB for 25 MB at 100k artifacts). Inserts spread at random fill leaves to about 70 % (a B-tree
/// under random inserts). Every use of the table is by id, or a full walk in table order; none needs id order.
#[derive(Debug)]
struct ScatteredId;

impl ScatteredId {
    /// splitmix64's finaliser: each step is invertible, so distinct ids never share a key.
    const fn mix(id: u64) -> u64 {
        let mut x = id;
        x ^= x >> 32;
        x = x.wrapping_mul(MIX_MULTIPLIER_1);
        x ^= x >> 29;
        x = x.wrapping_mul(MIX_MULTIPLIER_2);
        x ^ (x >> 32)
    }

    /// The inverse of [`ScatteredId::mix`], step by step in reverse.
    const fn unmix(key: u64) -> u64 {
        let mut x = key ^ (key >> 32);
        x = x.wrapping_mul(MIX_INVERSE_2);
        x ^= (x >> 29) ^ (x >> 58);
        x = x.wrapping_mul(MIX_INVERSE_1);
        x ^ (x >> 32)
    }
}

const MIX_MULTIPLIER_1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX_MULTIPLIER_2: u64 = 0x94d0_49bb_1331_11eb;
/// Their inverses modulo 2^64, computed once, at build time.
const MIX_INVERSE_1: u64 = modular_inverse(MIX_MULTIPLIER_1);
const MIX_INVERSE_2: u64 = modular_inverse(MIX_MULTIPLIER_2);

/// The inverse of an odd number modulo 2^64 (Newton's iteration doubles the correct low bits each round).
const fn modular_inverse(odd: u64) -> u64 {
    let mut inverse = odd;
    let mut round = 0;
    while round < 6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        round += 1;
    }
    inverse
}

impl redb::Value for ScatteredId {
    type SelfType<'a> = ArtifactId;
    type AsBytes<'a> = [u8; 8];

    fn fixed_width() -> Option<usize> {
        Some(8)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> ArtifactId
    where
        Self: 'a,
    {
        ScatteredId::unmix(u64::from_be_bytes(
            data.try_into().expect("redb passes fixed_width bytes"),
        ))
    }

    fn as_bytes<'a, 'b: 'a>(id: &'a ArtifactId) -> [u8; 8]
    where
        Self: 'b,
    {
        ScatteredId::mix(*id).to_be_bytes()
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("pkgseed::ScatteredId")
    }
}

impl redb::Key for ScatteredId {
    fn compare(data1: &[u8], data2: &[u8]) -> std::cmp::Ordering {
        // Big-endian mixed ids: byte order is key order.
        data1.cmp(data2)
    }
}

fn db_err(e: impl Display) -> IndexError {
    IndexError::Db(e.to_string())
}

fn path_key(path: &Path) -> &[u8] {
    // On unix these are exactly the path's bytes; elsewhere the platform's encoding, stable for one build.
    path.as_os_str().as_encoded_bytes()
}

fn encode_record(record: &ArtifactRecord) -> Result<Vec<u8>, IndexError> {
    record::encode(record)
}

fn decode_record(id: ArtifactId, bytes: &[u8]) -> Result<ArtifactRecord, IndexError> {
    record::decode(id, bytes)
}

fn decode_location(bytes: &[u8]) -> Result<Location, IndexError> {
    Location::decode(bytes)
        .ok_or_else(|| IndexError::Db(format!("corrupt block location ({} bytes)", bytes.len())))
}

/// Checks that a block map is something the index can serve: the content range inside the file, and every leaf and
/// whole-file range inside the content.
fn validate_blocks(record: &ArtifactRecord, blocks: &[PlannedBlock]) -> Result<(), IndexError> {
    let content_end = record.content_offset().checked_add(record.content_len());
    if content_end.is_none_or(|end| end > record.size_bytes) {
        return Err(IndexError::Invalid(format!(
            "content {}+{} is outside the file of {} bytes ({})",
            record.content_offset(),
            record.content_len(),
            record.size_bytes,
            record.path.display()
        )));
    }
    for block in blocks {
        if matches!(block.kind, BlockKind::Interior(_)) {
            continue;
        }
        let end = block.offset.checked_add(block.len);
        if end.is_none_or(|end| end > record.content_len()) {
            return Err(IndexError::Invalid(format!(
                "block {} covers {}+{} outside the artifact's {} bytes ({})",
                block.cid,
                block.offset,
                block.len,
                record.content_len(),
                record.path.display()
            )));
        }
        if block.len > MAX_BLOCK_BYTES {
            return Err(IndexError::Invalid(format!(
                "block {} is {} bytes, over the {MAX_BLOCK_BYTES}-byte block limit",
                block.cid, block.len
            )));
        }
    }
    Ok(())
}

/// Where one candidate for a block comes from, captured inside a read transaction and served after it ends.
enum Candidate {
    Interior {
        artifact: ArtifactId,
        bytes: Vec<u8>,
    },
    File {
        artifact: ArtifactId,
        path: PathBuf,
        /// The owner's own hard link to the file, accounted for by the link-count rule.
        own_link: Option<PathBuf>,
        stamp: FileStamp,
        /// The artifact's bytes in the file; the location is relative to its start.
        content: ContentRange,
        location: Location,
    },
}

pub struct Index {
    /// Every transaction begins under the read lock, released as soon as it has begun; only
    /// [`Index::compact_if_grown`] takes the write lock (redb's compaction needs the database to itself).
    db: std::sync::RwLock<Database>,
    path: PathBuf,
    /// While set, writes commit with eventual durability (a bulk scan); [`Index::flush`] makes them durable.
    bulk_writes: std::sync::atomic::AtomicBool,
    /// The file's length after the last [`Index::compact_if_grown`] (0 before the first).
    compacted_file_len: std::sync::atomic::AtomicU64,
    /// Where the owner keeps its own hard link to an artifact's file, by root CID (pkgseed's store): a link there
    /// is accounted for by the hard-link rule at every read ([`pkgseed_unixfs::check_confined`]).
    own_link_of: std::sync::OnceLock<OwnLinkOf>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let mut builder = Database::builder();
        builder
            .set_cache_size(CACHE_BYTES)
            .create_with_file_format_v3(true);
        let corrupt = |what: &dyn Display| {
            IndexError::Db(format!(
                "cannot open the index {}: it is corrupt or not a pkgseed index ({what}); move it away to rebuild",
                path.display()
            ))
        };
        // redb asserts on some damaged files (e.g. a truncated one) instead of returning an error.
        let opened =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(path)))
                .map_err(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "the database library panicked".into());
                    corrupt(&what)
                })?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => IndexError::Db(format!(
                "the index {} is already open (is another pkgseed running?)",
                path.display()
            )),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if !matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                IndexError::Io(io)
            }
            other => corrupt(&other),
        })?;
        let index = Index {
            db: std::sync::RwLock::new(db),
            path: path.to_path_buf(),
            bulk_writes: std::sync::atomic::AtomicBool::new(false),
            compacted_file_len: std::sync::atomic::AtomicU64::new(0),
            own_link_of: std::sync::OnceLock::new(),
        };
        index.init_schema()?;
        Ok(index)
    }

    /// Tells where the owner keeps its own hard link to an artifact's file, by root CID (`None`: no link for that
    /// CID): such a link is accounted for when a read checks the file's link count. Set once; later calls are
    /// ignored.
    pub fn account_own_links(
        &self,
        own_link_of: impl Fn(&str) -> Option<PathBuf> + Send + Sync + 'static,
    ) {
        let _ = self.own_link_of.set(Box::new(own_link_of));
    }

    /// Creates the tables on first use and refuses a schema this build does not understand.
    fn init_schema(&self) -> Result<(), IndexError> {
        let txn = self.database().begin_write().map_err(db_err)?;
        let mut changed = false;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.schema_error(e))?;
            let version = meta.get(META_SCHEMA).map_err(db_err)?.map(|v| v.value());
            match version {
                Some(SCHEMA_VERSION) => {}
                Some(older) if OLDER_READABLE_SCHEMAS.contains(&older) => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(db_err)?;
                    changed = true;
                }
                Some(other) => {
                    return Err(IndexError::Db(format!(
                        "the index {} has schema version {other}, this build understands version {SCHEMA_VERSION}; \
                         move it away to rebuild",
                        self.path.display()
                    )));
                }
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(db_err)?;
                    meta.insert(META_NEXT_ID, 1).map_err(db_err)?;
                    changed = true;
                }
            }
            txn.open_table(ARTIFACTS)
                .map_err(|e| self.schema_error(e))?;
            txn.open_table(PATH_IDS).map_err(|e| self.schema_error(e))?;
            txn.open_multimap_table(BLOCKS)
                .map_err(|e| self.schema_error(e))?;
            txn.open_multimap_table(ARTIFACT_BLOCKS)
                .map_err(|e| self.schema_error(e))?;
            txn.open_table(INTERIOR).map_err(|e| self.schema_error(e))?;
        }
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(db_err)?
            .map(|table| table.name().to_string())
            .collect();
        if tables.iter().any(|name| name == LEGACY_ARTIFACTS.name()) {
            // Schema 4 and older kept the records in id order; move them to the scattered table, re-encoded, in
            // this same transaction (before anything below reads the records).
            move_records_to_scattered_table(&txn)?;
            changed = true;
        }
        if tables.iter().any(|name| name == PATHS.name()) {
            // Schema 3 and older kept every path whole as a key; move them to the hashed table, in this same
            // transaction (a crash before its commit leaves the old table and schema as they were).
            move_paths_to_path_ids(&txn)?;
            changed = true;
        }
        let has_totals = tables.iter().any(|name| name == ECOSYSTEM_TOTALS.name());
        if !has_totals {
            // An index written before the totals table: count once, then every write keeps it in step.
            fill_ecosystem_totals(&txn)?;
            changed = true;
        }
        if changed {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(())
    }

    fn schema_error(&self, e: redb::TableError) -> IndexError {
        IndexError::Db(format!(
            "the file {} is not a pkgseed index of schema version {SCHEMA_VERSION} ({e}); move it away to rebuild",
            self.path.display()
        ))
    }

    /// Bulk mode (a first scan): each write still commits atomically, but without waiting for the disk, so a crash
    /// may lose the last writes (never tear them): those files are simply hashed again at the next start. Turning
    /// bulk mode off makes everything written so far durable.
    ///
    /// (`Durability::None` for most bulk commits was measured and rejected: more instructions per commit and a 201-
    /// artifact index grew from 3 MB to 17 MB, because in-memory commits do not let freed pages be reused.)
    pub fn set_bulk_writes(&self, bulk: bool) -> Result<(), IndexError> {
        self.bulk_writes
            .store(bulk, std::sync::atomic::Ordering::SeqCst);
        if !bulk {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every committed write durable.
    pub fn flush(&self) -> Result<(), IndexError> {
        let mut txn = self.database().begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::Immediate);
        txn.commit().map_err(db_err)
    }

    /// The database, for beginning one transaction (the guard must be dropped once it has begun, never held
    /// while a transaction of this thread is open: [`Index::compact_if_grown`] waits for every guard).
    fn database(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, IndexError> {
        self.database().begin_read().map_err(db_err)
    }

    /// Gives the file's free pages back when it has grown since it was last compacted (or opened): redb's
    /// copy-on-write commits leave freed pages behind and its file grows by doubling, so after a scan of many
    /// batches the file is often two to three times what its tables use. Compaction moves the used pages to the
    /// front and truncates the file. Returns whether it ran (the file had grown).
    ///
    /// Every read and write waits while it runs (docs/benchmarks.md has the times); call it when a scan is done,
    /// not per write. Crash-safe: redb compacts in a series of ordinary two-phase-commit transactions that only
    /// move pages, so a crash leaves the last committed state with every artifact in it (the next open repairs
    /// redb's allocator state if needed).
    pub fn compact_if_grown(&self) -> Result<bool, IndexError> {
        use std::sync::atomic::Ordering;
        let mut db = self
            .db
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.file_len()? <= self.compacted_file_len.load(Ordering::SeqCst) {
            return Ok(false);
        }
        // Read transactions begun before the lock was taken end within one block read; wait for them (bounded).
        let mut attempts = 0;
        loop {
            match db.compact() {
                Ok(_) => break,
                Err(redb::CompactionError::TransactionInProgress) if attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(other) => return Err(db_err(other)),
            }
        }
        drop(db);
        self.compacted_file_len
            .store(self.file_len()?, Ordering::SeqCst);
        Ok(true)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, IndexError> {
        let mut txn = self.database().begin_write().map_err(db_err)?;
        if self.bulk_writes.load(std::sync::atomic::Ordering::SeqCst) {
            txn.set_durability(redb::Durability::Eventual);
        }
        Ok(txn)
    }

    /// The DB file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces (same path) an artifact and its blocks in one transaction; returns its id.
    ///
    /// The `id` in `record` is ignored: every put gets a fresh id (ids are never reused), so an id held from before
    /// a replacement no longer resolves. Leaf and whole-file ranges (relative to the content range) must lie inside the
    /// artifact's content, and the content inside `record.size_bytes`.
    pub fn put_artifact(
        &self,
        record: ArtifactRecord,
        blocks: &[PlannedBlock],
    ) -> Result<ArtifactId, IndexError> {
        validate_blocks(&record, blocks)?;
        let txn = self.begin_write()?;
        let id = put_in(&txn, record, blocks)?;
        txn.commit().map_err(db_err)?;
        Ok(id)
    }

    /// [`Index::put_artifact`] for several artifacts in ONE transaction (a scan's batch: one commit instead of one
    /// per artifact, the commit being most of a put's cost). The outer error means nothing was written; an inner
    /// error is an artifact refused as invalid, the others are written. A later entry for the same path replaces
    /// an earlier one.
    pub fn put_artifacts(
        &self,
        batch: Vec<(ArtifactRecord, Vec<PlannedBlock>)>,
    ) -> Result<Vec<Result<ArtifactId, IndexError>>, IndexError> {
        let txn = self.begin_write()?;
        let mut ids = Vec::with_capacity(batch.len());
        for (record, blocks) in batch {
            ids.push(match validate_blocks(&record, &blocks) {
                Ok(()) => Ok(put_in(&txn, record, &blocks)?),
                Err(invalid) => Err(invalid),
            });
        }
        txn.commit().map_err(db_err)?;
        Ok(ids)
    }

    /// Removes an artifact, its path entry and its block locations in one transaction; returns its record.
    /// Blocks that another artifact also holds stay served by that artifact.
    pub fn remove_artifact(&self, id: ArtifactId) -> Result<Option<ArtifactRecord>, IndexError> {
        let txn = self.begin_write()?;
        let record = remove_in(&txn, id)?;
        if record.is_some() {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(record)
    }

    /// Moves artifact `id` to another path holding the same file (same stamp: a hard link), keeping its id and
    /// blocks, in one transaction; returns the updated record, or `None` for an unknown id. Refuses a path another
    /// artifact is indexed at.
    pub fn move_artifact(
        &self,
        id: ArtifactId,
        new_path: &Path,
    ) -> Result<Option<ArtifactRecord>, IndexError> {
        let txn = self.begin_write()?;
        let moved = {
            let mut artifacts = txn.open_table(ARTIFACTS).map_err(db_err)?;
            let found = artifacts
                .get(id)
                .map_err(db_err)?
                .map(|v| decode_record(id, v.value()));
            match found.transpose()? {
                None => None,
                Some(mut record) => {
                    let mut paths = txn.open_table(PATH_IDS).map_err(db_err)?;
                    let taken = id_at_path(&paths, &artifacts, new_path)?;
                    if taken.is_some_and(|other| other != id) {
                        return Err(IndexError::Invalid(format!(
                            "{} is already indexed as another artifact",
                            new_path.display()
                        )));
                    }
                    remove_path_of(&mut paths, &record.path, id)?;
                    add_path(&mut paths, new_path, id)?;
                    record.path = new_path.to_path_buf();
                    let encoded = encode_record(&record)?;
                    artifacts.insert(id, encoded.as_slice()).map_err(db_err)?;
                    Some(record)
                }
            }
        };
        if moved.is_some() {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(moved)
    }

    pub fn artifact(&self, id: ArtifactId) -> Result<Option<ArtifactRecord>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let found = table.get(id).map_err(db_err)?;
        found.map(|v| decode_record(id, v.value())).transpose()
    }

    pub fn artifact_by_path(&self, path: &Path) -> Result<Option<ArtifactRecord>, IndexError> {
        let txn = self.begin_read()?;
        let paths = txn.open_table(PATH_IDS).map_err(db_err)?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let Some(id) = id_at_path(&paths, &table, path)? else {
            return Ok(None);
        };
        let found = table.get(id).map_err(db_err)?;
        found.map(|v| decode_record(id, v.value())).transpose()
    }

    /// Every artifact, in id order.
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, IndexError> {
        let mut all = self.artifacts_after(None, usize::MAX)?;
        all.sort_unstable_by_key(|record| record.id);
        Ok(all)
    }

    /// Up to `limit` artifacts that come after the artifact `after` in the table's order (from the first with
    /// `None`): the index read a page at a time, the next page starting after the last artifact returned. The
    /// table's order is fixed but is not id order ([`ScatteredId`]).
    pub fn artifacts_after(
        &self,
        after: Option<ArtifactId>,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let range = match after {
            None => table.range::<u64>(..),
            Some(id) => table.range((std::ops::Bound::Excluded(id), std::ops::Bound::Unbounded)),
        }
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(limit.min(table.len().map_err(db_err)? as usize));
        for entry in range.take(limit) {
            let (id, bytes) = entry.map_err(db_err)?;
            out.push(decode_record(id.value(), bytes.value())?);
        }
        Ok(out)
    }

    /// Every indexed path and its artifact id, in path byte order, read from the records without decoding their
    /// other fields: what a scan needs to find artifacts whose file is gone.
    pub fn indexed_paths(&self) -> Result<Vec<(PathBuf, ArtifactId)>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let mut out = Vec::with_capacity(table.len().map_err(db_err)? as usize);
        for entry in table.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            out.push((record::decode_path(id.value(), bytes.value())?, id.value()));
        }
        out.sort_by(|(a, _), (b, _)| path_key(a).cmp(path_key(b)));
        Ok(out)
    }

    /// Number of artifacts.
    pub fn artifact_count(&self) -> Result<u64, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    /// Per ecosystem: (artifact count, total file bytes). Reads the totals table (one small read, whatever the
    /// number of artifacts): the status asks for this on every poll.
    pub fn count_by_ecosystem(&self) -> Result<BTreeMap<String, (u64, u64)>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ECOSYSTEM_TOTALS).map_err(db_err)?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(db_err)? {
            let (ecosystem, totals) = entry.map_err(db_err)?;
            out.insert(ecosystem.value().to_string(), totals.value());
        }
        Ok(out)
    }

    /// The distinct CIDs an artifact's blocks are stored under (leaves, interior nodes, root, checksum CID), in
    /// byte order. Empty for an unknown id. Use it to withdraw announcements before removing or replacing.
    pub fn block_cids_of(&self, id: ArtifactId) -> Result<Vec<Cid>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
        let mut keys = Vec::new();
        for value in table.get(id).map_err(db_err)? {
            keys.push(value.map_err(db_err)?.value().to_vec());
        }
        // The root and checksum CIDs have no row of their own (schema 4): they are named by the record.
        let record = txn
            .open_table(ARTIFACTS)
            .map_err(db_err)?
            .get(id)
            .map_err(db_err)?;
        if let Some(record) = record.map(|v| decode_record(id, v.value())).transpose()? {
            let blocks = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
            for key in record_cid_keys(&record) {
                let mut held = false;
                for value in blocks.get(key.as_slice()).map_err(db_err)? {
                    held |= decode_location(value.map_err(db_err)?.value())?.artifact == id;
                }
                if held {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys.iter()
            .map(|key| {
                Cid::try_from(key.as_slice())
                    .map_err(|e| IndexError::Db(format!("corrupt CID in index: {e}")))
            })
            .collect()
    }

    /// The artifacts that hold `cid`.
    pub fn artifacts_with_block(&self, cid: &Cid) -> Result<Vec<ArtifactId>, IndexError> {
        let mut ids: Vec<ArtifactId> = self
            .locations(cid)?
            .into_iter()
            .map(|l| l.artifact)
            .collect();
        ids.dedup();
        Ok(ids)
    }

    pub fn has_block(&self, cid: &Cid) -> Result<bool, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
        let mut values = table.get(cid.to_bytes().as_slice()).map_err(db_err)?;
        Ok(values.next().is_some())
    }

    /// The distinct multihashes of the blocks held whose digest starts with `digest_prefix`, among the CID forms
    /// this crate's callers write: CIDv0, and CIDv1 raw or dag-pb, over sha2-256 or sha2-512 (the reprovide
    /// schedule keeps a key's first 8 digest bytes and looks the key up here). A few short range reads; never
    /// waits: `None` while the file is being compacted ([`Index::compact_if_grown`]), as the caller runs on the
    /// network's task.
    pub fn multihashes_with_digest_prefix(
        &self,
        digest_prefix: &[u8],
    ) -> Result<Option<Vec<cid::multihash::Multihash<64>>>, IndexError> {
        let txn = match self.db.try_read() {
            Ok(db) => db.begin_read().map_err(db_err)?,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
            Err(std::sync::TryLockError::Poisoned(db)) => {
                db.into_inner().begin_read().map_err(db_err)?
            }
        };
        let table = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
        let mut out = Vec::new();
        for cid_prefix in CID_PREFIXES_BY_FORM {
            let start = [cid_prefix, digest_prefix].concat();
            for row in table.range(start.as_slice()..).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                let key = key.value();
                if !key.starts_with(&start) {
                    break;
                }
                let cid = Cid::try_from(key)
                    .map_err(|e| IndexError::Db(format!("corrupt CID in index: {e}")))?;
                if !out.contains(cid.hash()) {
                    out.push(*cid.hash());
                }
            }
        }
        Ok(Some(out))
    }

    fn locations(&self, cid: &Cid) -> Result<Vec<Location>, IndexError> {
        let txn = self.begin_read()?;
        let table = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
        let mut out = Vec::new();
        for value in table.get(cid.to_bytes().as_slice()).map_err(db_err)? {
            out.push(decode_location(value.map_err(db_err)?.value())?);
        }
        Ok(out)
    }

    /// Everything needed to serve `cid`, read in one short read transaction (no file I/O inside it).
    fn candidates(&self, cid: &Cid) -> Result<Vec<Candidate>, IndexError> {
        let key = cid.to_bytes();
        let txn = self.begin_read()?;
        let blocks = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
        let artifacts = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let interior = txn.open_table(INTERIOR).map_err(db_err)?;
        let mut out = Vec::new();
        for value in blocks.get(key.as_slice()).map_err(db_err)? {
            let location = decode_location(value.map_err(db_err)?.value())?;
            if location.kind == LocKind::Interior {
                let bytes = interior
                    .get(key.as_slice())
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec());
                let bytes = bytes.ok_or_else(|| {
                    IndexError::Db(format!("interior node {cid} has no stored bytes"))
                })?;
                out.push(Candidate::Interior {
                    artifact: location.artifact,
                    bytes,
                });
            } else {
                let record = artifacts.get(location.artifact).map_err(db_err)?;
                let record = record
                    .map(|v| decode_record(location.artifact, v.value()))
                    .transpose()?
                    .ok_or_else(|| {
                        IndexError::Db(format!(
                            "block {cid} refers to missing artifact {}",
                            location.artifact
                        ))
                    })?;
                out.push(Candidate::File {
                    artifact: record.id,
                    stamp: record.stamp(),
                    content: ContentRange {
                        offset: record.content_offset(),
                        len: record.content_len(),
                    },
                    own_link: self.own_link(&record.root_cid),
                    path: record.path,
                    location,
                });
            }
        }
        Ok(out)
    }

    /// The owner's hard link for an artifact with this root CID, if it keeps one.
    fn own_link(&self, root_cid: &str) -> Option<PathBuf> {
        self.own_link_of
            .get()
            .and_then(|own_link_of| own_link_of(root_cid))
    }

    /// Zero-copy read: locate, read from the cache file, rebuild if needed, verify the hash. `Ok(None)` when the
    /// CID is not indexed. A file that no longer matches gives `Stale` (the caller withdraws that artifact).
    ///
    /// When several artifacts hold the CID, the first that yields verified bytes wins; if none does, the first
    /// failure is returned.
    pub fn read_block(&self, cid: &Cid) -> Result<Option<bytes::Bytes>, BlockReadError> {
        Ok(self.read_block_located(cid)?.map(|(_, bytes)| bytes))
    }

    /// [`Index::read_block`], also telling which artifact the verified bytes came from (for its last-served time).
    pub fn read_block_located(
        &self,
        cid: &Cid,
    ) -> Result<Option<(ArtifactId, bytes::Bytes)>, BlockReadError> {
        let candidates = self.candidates(cid)?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut first_error = None;
        for candidate in candidates {
            let (artifact, bytes) = match candidate {
                Candidate::Interior { artifact, bytes } => (artifact, Ok(bytes)),
                Candidate::File {
                    artifact,
                    path,
                    own_link,
                    stamp,
                    content,
                    location,
                } => (
                    artifact,
                    read_file_block(artifact, &path, own_link, stamp, content, &location),
                ),
            };
            let outcome = bytes.and_then(|bytes| {
                if pkgseed_unixfs::block_matches_cid(cid, &bytes) {
                    Ok(bytes)
                } else {
                    Err(BlockReadError::Stale {
                        artifact,
                        reason: format!("bytes no longer hash to {cid}"),
                    })
                }
            });
            match outcome {
                Ok(bytes) => return Ok(Some((artifact, bytes::Bytes::from(bytes)))),
                Err(e) => {
                    tracing::debug!(%cid, artifact, error = %e, "block location failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("at least one candidate failed"))
    }

    /// Bytes the index occupies on disk: what the file system allocated for the file. redb grows its file by
    /// doubling its length, and the part never written since is a hole that takes no disk (a 100k-artifact index
    /// measured 66 MB long and 44.6 MB on disk). Where the allocation is not known, the file's length.
    pub fn disk_bytes(&self) -> Result<u64, IndexError> {
        let metadata = std::fs::metadata(&self.path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(metadata.blocks() * 512)
        }
        #[cfg(not(unix))]
        Ok(metadata.len())
    }

    /// The file's length, holes included: what [`Index::compact_if_grown`] watches.
    fn file_len(&self) -> Result<u64, IndexError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

/// Writes one artifact inside `txn` (replacing the one at its path); its blocks are already validated.
fn put_in(
    txn: &WriteTransaction,
    mut record: ArtifactRecord,
    blocks: &[PlannedBlock],
) -> Result<ArtifactId, IndexError> {
    let old = id_at_path(
        &txn.open_table(PATH_IDS).map_err(db_err)?,
        &txn.open_table(ARTIFACTS).map_err(db_err)?,
        &record.path,
    )?;
    if let Some(old) = old {
        remove_in(txn, old)?;
    }

    let mut meta = txn.open_table(META).map_err(db_err)?;
    let id = meta
        .get(META_NEXT_ID)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(1);
    let next = id
        .checked_add(1)
        .ok_or_else(|| IndexError::Db("artifact ids exhausted".into()))?;
    meta.insert(META_NEXT_ID, next).map_err(db_err)?;

    record.id = id;
    let encoded = encode_record(&record)?;
    txn.open_table(ARTIFACTS)
        .map_err(db_err)?
        .insert(id, encoded.as_slice())
        .map_err(db_err)?;
    add_path(
        &mut txn.open_table(PATH_IDS).map_err(db_err)?,
        &record.path,
        id,
    )?;
    add_to_ecosystem_totals(txn, &record, true)?;

    let named_by_record = record_cid_keys(&record);
    let mut by_cid = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
    let mut by_artifact = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
    let mut interior = txn.open_table(INTERIOR).map_err(db_err)?;
    for block in blocks {
        if same_bytes_as_a_raw_leaf(block, blocks) {
            continue;
        }
        let cid = block.cid.to_bytes();
        let kind = LocKind::of(&block.kind);
        let (offset, len) = if kind == LocKind::Interior {
            (0, 0)
        } else {
            (block.offset, block.len)
        };
        let location = Location {
            artifact: id,
            kind,
            offset,
            len,
        };
        by_cid
            .insert(cid.as_slice(), location.encode().as_slice())
            .map_err(db_err)?;
        if !named_by_record.contains(&cid) {
            by_artifact.insert(id, cid.as_slice()).map_err(db_err)?;
        }
        if let BlockKind::Interior(bytes) = &block.kind {
            interior
                .insert(cid.as_slice(), bytes.as_slice())
                .map_err(db_err)?;
        }
    }
    Ok(id)
}

/// The block-table keys of the CIDs an artifact's record names (its root and checksum CID): `put_in` writes no
/// `artifact_blocks` row for them.
fn record_cid_keys(record: &ArtifactRecord) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        Some(record.root_cid.as_str()),
        record.checksum_cid.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|text| text.parse::<Cid>().ok())
    .map(|cid| cid.to_bytes())
    .collect();
    keys.dedup();
    keys
}

/// A whole-file checksum block whose CID, offset and length are those of a raw leaf of the same artifact (a
/// single-chunk file hashed with sha256): both serve the same bytes, so only the leaf's location is stored.
fn same_bytes_as_a_raw_leaf(block: &PlannedBlock, blocks: &[PlannedBlock]) -> bool {
    matches!(block.kind, BlockKind::WholeFile(_))
        && blocks.iter().any(|other| {
            matches!(other.kind, BlockKind::RawLeaf)
                && other.cid == block.cid
                && other.offset == block.offset
                && other.len == block.len
        })
}

/// The [`PATH_IDS`] key of a path: the first 8 bytes of the SHA-256 of its bytes (stable across builds).
fn path_hash(path: &Path) -> u64 {
    let digest = sha2::Sha256::digest(path_key(path));
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The ids stored under a path's hash.
fn ids_at_hash(
    paths: &impl ReadableTable<u64, &'static [u8]>,
    hash: u64,
) -> Result<Vec<ArtifactId>, IndexError> {
    let Some(value) = paths.get(hash).map_err(db_err)? else {
        return Ok(Vec::new());
    };
    let bytes = value.value();
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(IndexError::Db(format!(
            "corrupt path entry ({} bytes)",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|id| u64::from_le_bytes(id.try_into().expect("8 bytes")))
        .collect())
}

fn put_ids_at_hash(
    paths: &mut redb::Table<u64, &[u8]>,
    hash: u64,
    ids: &[ArtifactId],
) -> Result<(), IndexError> {
    if ids.is_empty() {
        paths.remove(hash).map_err(db_err)?;
    } else {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        paths.insert(hash, bytes.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// The artifact indexed at `path`: among the ids under its hash, the one whose record has this path.
fn id_at_path(
    paths: &impl ReadableTable<u64, &'static [u8]>,
    artifacts: &impl ReadableTable<ScatteredId, &'static [u8]>,
    path: &Path,
) -> Result<Option<ArtifactId>, IndexError> {
    for id in ids_at_hash(paths, path_hash(path))? {
        if let Some(bytes) = artifacts.get(id).map_err(db_err)? {
            if record::decode_path(id, bytes.value())? == path {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// Adds the path entry `path → id` (the caller has removed any other artifact at `path`).
fn add_path(
    paths: &mut redb::Table<u64, &[u8]>,
    path: &Path,
    id: ArtifactId,
) -> Result<(), IndexError> {
    edit_ids_at_path(paths, path, |ids| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    })
}

/// Removes the path entry `path → id`, if there is one.
fn remove_path_of(
    paths: &mut redb::Table<u64, &[u8]>,
    path: &Path,
    id: ArtifactId,
) -> Result<(), IndexError> {
    edit_ids_at_path(paths, path, |ids| ids.retain(|other| *other != id))
}

/// Applies `edit` to the ids under the path's hash and stores them if they changed.
fn edit_ids_at_path(
    paths: &mut redb::Table<u64, &[u8]>,
    path: &Path,
    edit: impl FnOnce(&mut Vec<ArtifactId>),
) -> Result<(), IndexError> {
    let hash = path_hash(path);
    let before = ids_at_hash(paths, hash)?;
    let mut ids = before.clone();
    edit(&mut ids);
    if ids != before {
        put_ids_at_hash(paths, hash, &ids)?;
    }
    Ok(())
}

/// Moves the records of a schema-4-or-older `artifacts` table (keyed in id order) into [`ARTIFACTS`], each in the
/// current record format, and deletes it, inside `txn`. A record that does not decode is moved as it is: reading it
/// reports it as corrupt, as before.
fn move_records_to_scattered_table(txn: &WriteTransaction) -> Result<(), IndexError> {
    {
        let legacy = txn.open_table(LEGACY_ARTIFACTS).map_err(db_err)?;
        let mut records = txn.open_table(ARTIFACTS).map_err(db_err)?;
        for entry in legacy.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            let (id, bytes) = (id.value(), bytes.value());
            let reencoded = decode_record(id, bytes).and_then(|record| encode_record(&record));
            let stored = reencoded.as_deref().unwrap_or(bytes);
            records.insert(id, stored).map_err(db_err)?;
        }
    }
    txn.delete_table(LEGACY_ARTIFACTS).map_err(db_err)?;
    Ok(())
}

/// Moves a schema-3 `paths` table (path bytes → id) into [`PATH_IDS`] and deletes it, inside `txn`.
fn move_paths_to_path_ids(txn: &WriteTransaction) -> Result<(), IndexError> {
    let mut entries = Vec::new();
    {
        let old = txn.open_table(PATHS).map_err(db_err)?;
        for entry in old.iter().map_err(db_err)? {
            let (path, id) = entry.map_err(db_err)?;
            let path = record::path_from_bytes(path.value())
                .map_err(|what| IndexError::Db(format!("corrupt path key: {what}")))?;
            entries.push((path, id.value()));
        }
    }
    {
        let mut paths = txn.open_table(PATH_IDS).map_err(db_err)?;
        for (path, id) in &entries {
            add_path(&mut paths, path, *id)?;
        }
    }
    txn.delete_table(PATHS).map_err(db_err)?;
    Ok(())
}

/// Adds (or, with `add` false, takes away) one artifact to its ecosystem's totals, inside `txn`.
fn add_to_ecosystem_totals(
    txn: &WriteTransaction,
    record: &ArtifactRecord,
    add: bool,
) -> Result<(), IndexError> {
    let mut totals = txn.open_table(ECOSYSTEM_TOTALS).map_err(db_err)?;
    let (count, bytes) = totals
        .get(record.ecosystem.as_str())
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or((0, 0));
    let (count, bytes) = if add {
        (count + 1, bytes + record.content_len())
    } else {
        (
            count.saturating_sub(1),
            bytes.saturating_sub(record.content_len()),
        )
    };
    if count == 0 {
        totals.remove(record.ecosystem.as_str()).map_err(db_err)?;
    } else {
        totals
            .insert(record.ecosystem.as_str(), (count, bytes))
            .map_err(db_err)?;
    }
    Ok(())
}

/// Rebuilds the totals table from every artifact record, inside `txn`.
fn fill_ecosystem_totals(txn: &WriteTransaction) -> Result<(), IndexError> {
    let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    {
        let artifacts = txn.open_table(ARTIFACTS).map_err(db_err)?;
        for entry in artifacts.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            let record = decode_record(id.value(), bytes.value())?;
            let content_len = record.content_len();
            let sum = sums.entry(record.ecosystem).or_default();
            sum.0 += 1;
            sum.1 += content_len;
        }
    }
    let mut totals = txn.open_table(ECOSYSTEM_TOTALS).map_err(db_err)?;
    for (ecosystem, sum) in &sums {
        totals.insert(ecosystem.as_str(), *sum).map_err(db_err)?;
    }
    Ok(())
}

/// Removes artifact `id` and everything only it refers to, inside `txn`.
fn remove_in(txn: &WriteTransaction, id: ArtifactId) -> Result<Option<ArtifactRecord>, IndexError> {
    let record = {
        let mut artifacts = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let removed = artifacts.remove(id).map_err(db_err)?;
        match removed {
            Some(bytes) => decode_record(id, bytes.value())?,
            None => return Ok(None),
        }
    };
    add_to_ecosystem_totals(txn, &record, false)?;

    remove_path_of(
        &mut txn.open_table(PATH_IDS).map_err(db_err)?,
        &record.path,
        id,
    )?;

    let mut by_artifact = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
    let mut cids = Vec::new();
    for value in by_artifact.remove_all(id).map_err(db_err)? {
        cids.push(value.map_err(db_err)?.value().to_vec());
    }
    // Schema 4 keeps no row for the CIDs the record names; removing an absent location is a no-op.
    let named_by_record = record_cid_keys(&record);
    cids.extend(named_by_record.iter().cloned());
    cids.sort();
    cids.dedup();

    let mut by_cid = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
    let mut interior = txn.open_table(INTERIOR).map_err(db_err)?;
    for cid in cids {
        let mut ours = Vec::new();
        let mut other_interior = false;
        for value in by_cid.get(cid.as_slice()).map_err(db_err)? {
            let value = value.map_err(db_err)?;
            let location = decode_location(value.value())?;
            if location.artifact == id {
                ours.push(value.value().to_vec());
            } else if location.kind == LocKind::Interior {
                other_interior = true;
            }
        }
        for value in &ours {
            by_cid
                .remove(cid.as_slice(), value.as_slice())
                .map_err(db_err)?;
        }
        if ours.is_empty() && named_by_record.contains(&cid) {
            // Named by the record but not held by this artifact: nothing of it is ours to remove.
            continue;
        }
        if !other_interior {
            interior.remove(cid.as_slice()).map_err(db_err)?;
        }
    }
    Ok(Some(record))
}

/// Opens the artifact's file, checks it is still the file that was indexed, and reads the block's range, which is
/// relative to the artifact's `content` range of the file (rebuilding a dag-pb leaf). The caller verifies the hash.
fn read_file_block(
    artifact: ArtifactId,
    path: &Path,
    own_link: Option<PathBuf>,
    then: FileStamp,
    content: ContentRange,
    location: &Location,
) -> Result<Vec<u8>, BlockReadError> {
    let stale = |reason: String| BlockReadError::Stale { artifact, reason };
    let io = |what: &str, e: std::io::Error| {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | NotADirectory | PermissionDenied | UnexpectedEof | IsADirectory => {
                stale(format!("{what} {}: {e}", path.display()))
            }
            _ => BlockReadError::Index(IndexError::Io(e)),
        }
    };
    let file = open_confined(path).map_err(|e| io("cannot open", e))?;
    let metadata = file.metadata().map_err(|e| io("cannot stat", e))?;
    // A FIFO, device, socket or directory put in the file's place, a hard link we do not account for, an enormous
    // sparse file: never read from it (the same rules the indexer applied before hashing).
    if let Err(reason) = pkgseed_unixfs::check_confined(&metadata, || own_link) {
        return Err(stale(format!("{} is refused: {reason}", path.display())));
    }
    let now = FileStamp::of(&metadata);
    if now != then {
        return Err(stale(format!(
            "{} is no longer the indexed file (size {} → {}, mtime_ns {} → {}, inode {} → {})",
            path.display(),
            then.size_bytes,
            now.size_bytes,
            then.mtime_ns,
            now.mtime_ns,
            then.inode,
            now.inode
        )));
    }
    let content_in_file = content
        .offset
        .checked_add(content.len)
        .is_some_and(|end| end <= now.size_bytes);
    let in_content = location
        .offset
        .checked_add(location.len)
        .is_some_and(|end| end <= content.len);
    if !content_in_file || !in_content || location.len > MAX_BLOCK_BYTES {
        return Err(stale(format!(
            "range {}+{} of the content {}+{} is outside {} ({} bytes)",
            location.offset,
            location.len,
            content.offset,
            content.len,
            path.display(),
            now.size_bytes
        )));
    }
    let mut buf = vec![0u8; location.len as usize];
    // Cannot overflow: both ends were checked against the file size above.
    read_exact_at(&file, &mut buf, content.offset + location.offset)
        .map_err(|e| io("cannot read", e))?;
    match location.kind {
        LocKind::PbLeaf => Ok(pkgseed_unixfs::pb_leaf_block(&buf)),
        LocKind::RawLeaf | LocKind::WholeFile(_) => Ok(buf),
        LocKind::Interior => unreachable!("interior nodes are served from the index"),
    }
}

/// Opens `path` for reading without following a symlink at its last component (`O_NOFOLLOW`: a symlink swapped
/// in after indexing fails with `ELOOP`) and without blocking (`O_NONBLOCK`: opening a FIFO swapped in for the file
/// returns at once instead of waiting for a writer). The caller then checks, on the opened handle, that it is a
/// regular file with the indexed stamp (size, mtime, inode), so a path swapped after the check cannot be read.
#[cfg(unix)]
fn open_confined(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it is now a symlink (never followed)",
                )
            } else {
                e
            }
        })
}

#[cfg(not(unix))]
fn open_confined(path: &Path) -> std::io::Result<File> {
    // Elsewhere the stamp check on the opened handle (size, mtime, file index) is the guard.
    File::open(path)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(test)]
mod tests;
