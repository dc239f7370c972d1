//! The artifact index (a transactional embedded DB, crash-safe) and the zero-copy block store: a block is read
//! from the cache file on demand and its hash verified before it is returned.
//! (API contract for the other crates; the implementation is owned by this crate.)
//!
//! Layout (redb, one file):
//! - `artifacts`: artifact id → [`ArtifactRecord`] in the compact binary encoding of `record.rs` (schema 1 wrote
//!   JSON; both are read)
//! - `paths`: path bytes → artifact id (one artifact per path)
//! - `blocks`: multimap CID bytes → encoded location (artifact, kind, offset, len; the offset is relative to the
//!   artifact's content range, which is the whole file except for pip's pre-23.3 inline bodies). Two artifacts may
//!   hold the same CID; each keeps its own location, so removing one never removes the other's.
//! - `artifact_blocks`: multimap artifact id → CID bytes (what to withdraw / delete when the artifact goes)
//! - `interior`: CID bytes → encoded interior node; kept while at least one interior location refers to it
//! - `ecosystem_totals`: ecosystem → (artifact count, artifact bytes), kept in step with `artifacts` by every write so
//!   the status never decodes every record (filled from `artifacts` when an older index lacks it)
//! - `meta`: `schema_version`, `next_id`

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

/// The schema this build writes and understands. Schema 3 added records whose artifact is a byte range of its file
/// (record format 3); schema 2 (binary records, all whole files) and schema 1 (JSON records) are read too and marked
/// 3 on open: their records stay readable as they are (content = the whole file), so an older build refuses the
/// file instead of misreading a range record.
pub const SCHEMA_VERSION: u64 = 3;
const OLDER_READABLE_SCHEMAS: [u64; 2] = [1, 2];

const ARTIFACTS: TableDefinition<u64, &[u8]> = TableDefinition::new("artifacts");
const PATHS: TableDefinition<&[u8], u64> = TableDefinition::new("paths");
const BLOCKS: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new("blocks");
const ARTIFACT_BLOCKS: MultimapTableDefinition<u64, &[u8]> =
    MultimapTableDefinition::new("artifact_blocks");
const INTERIOR: TableDefinition<&[u8], &[u8]> = TableDefinition::new("interior");
const ECOSYSTEM_TOTALS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("ecosystem_totals");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema_version";
const META_NEXT_ID: &str = "next_id";

/// redb's page cache. It fills during a scan's writes and stays: 14.8 MB of the idle heap at 100k artifacts with
/// 16 MiB (heaptrack). Lookups that miss it read from the OS page cache, which keeps the file anyway.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The owner's hard link to an artifact's file, by root CID ([`Index::account_own_links`]).
type OwnLinkOf = Box<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

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
    db: Database,
    path: PathBuf,
    /// While set, writes commit with eventual durability (a bulk scan); [`Index::flush`] makes them durable.
    bulk_writes: std::sync::atomic::AtomicBool,
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
            db,
            path: path.to_path_buf(),
            bulk_writes: std::sync::atomic::AtomicBool::new(false),
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
        let txn = self.db.begin_write().map_err(db_err)?;
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
            txn.open_table(PATHS).map_err(|e| self.schema_error(e))?;
            txn.open_multimap_table(BLOCKS)
                .map_err(|e| self.schema_error(e))?;
            txn.open_multimap_table(ARTIFACT_BLOCKS)
                .map_err(|e| self.schema_error(e))?;
            txn.open_table(INTERIOR).map_err(|e| self.schema_error(e))?;
        }
        let has_totals = txn
            .list_tables()
            .map_err(db_err)?
            .any(|table| table.name() == ECOSYSTEM_TOTALS.name());
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
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::Immediate);
        txn.commit().map_err(db_err)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, IndexError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
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
                    let mut paths = txn.open_table(PATHS).map_err(db_err)?;
                    let taken = paths
                        .get(path_key(new_path))
                        .map_err(db_err)?
                        .map(|v| v.value());
                    if taken.is_some_and(|other| other != id) {
                        return Err(IndexError::Invalid(format!(
                            "{} is already indexed as another artifact",
                            new_path.display()
                        )));
                    }
                    remove_path_of(&mut paths, &record.path, id)?;
                    paths.insert(path_key(new_path), id).map_err(db_err)?;
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
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let found = table.get(id).map_err(db_err)?;
        found.map(|v| decode_record(id, v.value())).transpose()
    }

    pub fn artifact_by_path(&self, path: &Path) -> Result<Option<ArtifactRecord>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let id = txn
            .open_table(PATHS)
            .map_err(db_err)?
            .get(path_key(path))
            .map_err(db_err)?
            .map(|v| v.value());
        let Some(id) = id else { return Ok(None) };
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let found = table.get(id).map_err(db_err)?;
        found.map(|v| decode_record(id, v.value())).transpose()
    }

    /// Every artifact, in id order.
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        let mut out = Vec::with_capacity(table.len().map_err(db_err)? as usize);
        for entry in table.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            out.push(decode_record(id.value(), bytes.value())?);
        }
        Ok(out)
    }

    /// Every indexed path and its artifact id, in path byte order, read from the path table alone (no record is
    /// decoded): what a scan needs to find artifacts whose file is gone.
    pub fn indexed_paths(&self) -> Result<Vec<(PathBuf, ArtifactId)>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PATHS).map_err(db_err)?;
        let mut out = Vec::with_capacity(table.len().map_err(db_err)? as usize);
        for entry in table.iter().map_err(db_err)? {
            let (path, id) = entry.map_err(db_err)?;
            let path = record::path_from_bytes(path.value())
                .map_err(|what| IndexError::Db(format!("corrupt path key: {what}")))?;
            out.push((path, id.value()));
        }
        Ok(out)
    }

    /// Number of artifacts.
    pub fn artifact_count(&self) -> Result<u64, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ARTIFACTS).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    /// Per ecosystem: (artifact count, total file bytes). Reads the totals table (one small read, whatever the
    /// number of artifacts): the status asks for this on every poll.
    pub fn count_by_ecosystem(&self) -> Result<BTreeMap<String, (u64, u64)>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
        let mut out = Vec::new();
        for value in table.get(id).map_err(db_err)? {
            let value = value.map_err(db_err)?;
            let cid = Cid::try_from(value.value())
                .map_err(|e| IndexError::Db(format!("corrupt CID in index: {e}")))?;
            out.push(cid);
        }
        Ok(out)
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
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
        let mut values = table.get(cid.to_bytes().as_slice()).map_err(db_err)?;
        Ok(values.next().is_some())
    }

    fn locations(&self, cid: &Cid) -> Result<Vec<Location>, IndexError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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
        let txn = self.db.begin_read().map_err(db_err)?;
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

    /// Bytes the index occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64, IndexError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

/// Writes one artifact inside `txn` (replacing the one at its path); its blocks are already validated.
fn put_in(
    txn: &WriteTransaction,
    mut record: ArtifactRecord,
    blocks: &[PlannedBlock],
) -> Result<ArtifactId, IndexError> {
    let old = txn
        .open_table(PATHS)
        .map_err(db_err)?
        .get(path_key(&record.path))
        .map_err(db_err)?
        .map(|v| v.value());
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
    txn.open_table(PATHS)
        .map_err(db_err)?
        .insert(path_key(&record.path), id)
        .map_err(db_err)?;
    add_to_ecosystem_totals(txn, &record, true)?;

    let mut by_cid = txn.open_multimap_table(BLOCKS).map_err(db_err)?;
    let mut by_artifact = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
    let mut interior = txn.open_table(INTERIOR).map_err(db_err)?;
    for block in blocks {
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
        by_artifact.insert(id, cid.as_slice()).map_err(db_err)?;
        if let BlockKind::Interior(bytes) = &block.kind {
            interior
                .insert(cid.as_slice(), bytes.as_slice())
                .map_err(db_err)?;
        }
    }
    Ok(id)
}

/// Removes the path entry `path → id`, if it still names artifact `id`.
fn remove_path_of(
    paths: &mut redb::Table<&[u8], u64>,
    path: &Path,
    id: ArtifactId,
) -> Result<(), IndexError> {
    let points_here = paths
        .get(path_key(path))
        .map_err(db_err)?
        .map(|v| v.value())
        == Some(id);
    if points_here {
        paths.remove(path_key(path)).map_err(db_err)?;
    }
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
        &mut txn.open_table(PATHS).map_err(db_err)?,
        &record.path,
        id,
    )?;

    let mut by_artifact = txn.open_multimap_table(ARTIFACT_BLOCKS).map_err(db_err)?;
    let mut cids = Vec::new();
    for value in by_artifact.remove_all(id).map_err(db_err)? {
        cids.push(value.map_err(db_err)?.value().to_vec());
    }

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
