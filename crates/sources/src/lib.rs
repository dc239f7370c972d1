//! Package-manager cache sources. A source knows one cache layout: its roots, which paths may be artifacts
//! (cheap, called on every filesystem event), and how to describe one (identity, registry checksum and
//! provenance evidence), or a typed reason why a path is not a seedable artifact.
//! (API contract for the other crates; the implementation is owned by this crate.)

use std::path::{Path, PathBuf};

mod cargo;

pub use cargo::index_cache::{parse_index_cache, IndexCacheEntry, IndexCacheError, IndexRecord};
pub use cargo::{
    cargo_index_cache_path, default_cargo_home, is_semver, split_crate_file_name, CargoSource,
    DEFAULT_REGISTRY_SUFFIXES,
};

/// Hash algorithms registries publish for whole artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgo {
    Sha256,
    Sha512,
}

impl ChecksumAlgo {
    /// The lowercase name used in prefixed hex strings (`sha256`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Sha256 => "sha256",
            ChecksumAlgo::Sha512 => "sha512",
        }
    }
}

/// A registry's checksum of an artifact, as recorded in the local cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryChecksum {
    pub algo: ChecksumAlgo,
    pub digest: Vec<u8>,
}

impl RegistryChecksum {
    /// `sha256:<lowercase hex>`
    pub fn to_prefixed_hex(&self) -> String {
        format!("{}:{}", self.algo.name(), hex::encode(&self.digest))
    }
}

/// Whether an artifact may be announced. Only `Public` is ever seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Public { evidence: String },
    Private { reason: String },
    Unknown { reason: String },
}

/// What a source says about one artifact file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactIdentity {
    pub ecosystem: &'static str,
    pub name: String,
    pub version: String,
    /// A stable id for the registry the artifact came from, shown to users so they can mark it public or
    /// private (for cargo: the index dir name under `registry/index/`).
    pub origin: String,
    pub checksum: Option<RegistryChecksum>,
    pub provenance: Provenance,
}

/// Why a path is not (yet) a seedable artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnArtifact {
    #[error("not an artifact path for this cache")]
    NotCandidate,
    #[error("empty file (an interrupted download)")]
    Empty,
    #[error("cannot parse name and version from {0}")]
    BadName(String),
    #[error("no registry checksum recorded for {0}")]
    NoChecksum(String),
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("outside the cache root or not a regular file: {0}")]
    Confinement(String),
}

/// The user's marks on origins, from the config file. A mark overrides the structural decision.
#[derive(Debug, Clone, Default)]
pub struct OriginMarks {
    pub public: Vec<String>,
    pub private: Vec<String>,
}

/// One package manager's cache layout.
pub trait CacheSource: Send + Sync {
    fn ecosystem(&self) -> &'static str;
    /// Directories to scan and watch.
    fn roots(&self) -> Vec<PathBuf>;
    /// Cheap path test, called for every filesystem event.
    fn is_candidate(&self, path: &Path) -> bool;
    /// Blocking: reads metadata files next to the artifact. Does not hash the artifact itself.
    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_hex_is_lowercase_with_algo_name() {
        let sum = RegistryChecksum {
            algo: ChecksumAlgo::Sha256,
            digest: vec![0x00, 0xAB, 0xff, 0x10],
        };
        assert_eq!(sum.to_prefixed_hex(), "sha256:00abff10");
        let sum = RegistryChecksum {
            algo: ChecksumAlgo::Sha512,
            digest: vec![0xDE, 0xAD],
        };
        assert_eq!(sum.to_prefixed_hex(), "sha512:dead");
    }
}
