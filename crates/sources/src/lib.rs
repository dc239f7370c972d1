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

/// What sources are built from: the process environment and home dir, captured once and injected, so tests can
/// point every source at a temp home.
#[derive(Debug, Clone, Default)]
pub struct SourceEnv {
    pub home: Option<PathBuf>,
    pub vars: std::collections::BTreeMap<String, String>,
}

impl SourceEnv {
    /// The real environment of this process.
    pub fn from_process() -> SourceEnv {
        SourceEnv {
            home: directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf()),
            vars: std::env::vars().collect(),
        }
    }
    /// A non-empty variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// A cache found on this machine whose original artifact bytes cannot be rebuilt (it keeps only extracted files):
/// listed in status as "found, not seedable", never seeded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnseedableCache {
    pub ecosystem: String,
    pub path: PathBuf,
    pub reason: String,
}

/// Every ecosystem pkgseed knows, in a stable order (config keys, status).
pub const ECOSYSTEMS: &[&str] = &["cargo"];

/// Builds the source of every enabled ecosystem whose cache location can be determined. ONE line per ecosystem.
pub fn detect_sources(
    env: &SourceEnv,
    marks: &OriginMarks,
    enabled: &dyn Fn(&str) -> bool,
) -> Vec<std::sync::Arc<dyn CacheSource>> {
    let mut sources: Vec<std::sync::Arc<dyn CacheSource>> = Vec::new();
    if enabled("cargo") {
        if let Some(home) = cargo::cargo_home(env) {
            sources.push(std::sync::Arc::new(CargoSource::new(home, marks.clone())));
        }
    }
    sources
}

/// Caches present on this machine that keep only extracted files (pnpm, yarn berry, uv, bun, pub, deno).
pub fn detect_unseedable_caches(_env: &SourceEnv) -> Vec<UnseedableCache> {
    Vec::new()
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
