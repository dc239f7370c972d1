//! The artifact index (a transactional embedded DB, crash-safe) and the zero-copy block store: a block is read
//! from the cache file on demand and its hash verified before it is returned.
//! (API contract for the other crates; the implementation is owned by this crate.)

use std::path::{Path, PathBuf};

use cid::Cid;
use pkgseed_unixfs::PlannedBlock;

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
        todo!()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(String),
    #[error("index I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a block could not be served from its file.
#[derive(Debug, thiserror::Error)]
pub enum BlockReadError {
    #[error("artifact {artifact} changed on disk: {reason}")]
    Stale { artifact: ArtifactId, reason: String },
    #[error(transparent)]
    Index(#[from] IndexError),
}

pub struct Index {
    _private: (),
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        todo!()
    }
    /// Inserts or replaces (same path) an artifact and its blocks in one transaction; returns its id.
    pub fn put_artifact(&self, record: ArtifactRecord, blocks: &[PlannedBlock]) -> Result<ArtifactId, IndexError> {
        todo!()
    }
    pub fn remove_artifact(&self, id: ArtifactId) -> Result<Option<ArtifactRecord>, IndexError> {
        todo!()
    }
    pub fn artifact_by_path(&self, path: &Path) -> Result<Option<ArtifactRecord>, IndexError> {
        todo!()
    }
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, IndexError> {
        todo!()
    }
    pub fn has_block(&self, cid: &Cid) -> Result<bool, IndexError> {
        todo!()
    }
    /// Zero-copy read: locate, read from the cache file, rebuild if needed, verify the hash. `Ok(None)` when the
    /// CID is not indexed. A file that no longer matches gives `Stale` (the caller withdraws that artifact).
    pub fn read_block(&self, cid: &Cid) -> Result<Option<bytes::Bytes>, BlockReadError> {
        todo!()
    }
    /// Bytes the index occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64, IndexError> {
        todo!()
    }
}
