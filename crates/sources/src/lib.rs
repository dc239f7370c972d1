//! Package-manager cache sources. A source knows one cache layout: its roots, which paths may be artifacts
//! (cheap, called on every filesystem event), and how to describe one (identity, registry checksum and
//! provenance evidence), or a typed reason why a path is not a seedable artifact.
//! (API contract for the other crates; the implementation is owned by this crate.)

use std::path::{Path, PathBuf};

pub mod apt;
mod cargo;
pub mod composer;
pub mod conda;
pub mod golang;
pub mod gradle;
pub mod maven;
pub mod npm;
pub mod nuget;
pub mod pip;
pub mod rubygems;
mod sidefile;
mod unseedable;
pub mod xmlmini;
pub mod yarn;
pub mod zipread;

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
    /// Maven's `.sha1` sidecars and Gradle's cache dir names. Not usable as a block hash: the engine keys the
    /// checksum CID by the sha256 it computes.
    Sha1,
    /// Go's `h1:` dirhash (the 32 bytes base64-decoded after `h1:`): a hash of the module zip's CONTENTS, not of
    /// its bytes. The source verifies it itself (reading the zip); the engine keys the checksum CID by sha256.
    GoH1,
}

impl ChecksumAlgo {
    /// The lowercase name used in prefixed strings (`sha256`, `sha512`, `sha1`, `h1`).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Sha256 => "sha256",
            ChecksumAlgo::Sha512 => "sha512",
            ChecksumAlgo::Sha1 => "sha1",
            ChecksumAlgo::GoH1 => "h1",
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
    /// `sha256:<lowercase hex>` (also `sha512:`, `sha1:`); Go's dirhash is written as Go writes it,
    /// `h1:<standard base64>`.
    pub fn to_prefixed_hex(&self) -> String {
        match self.algo {
            ChecksumAlgo::GoH1 => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&self.digest);
                format!("h1:{encoded}")
            }
            algo => format!("{}:{}", algo.name(), hex::encode(&self.digest)),
        }
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

/// Where an artifact's bytes sit inside its file when they are not the whole file (pip before 23.3 keeps a response
/// body inline in its cache entry): the offset of the first byte and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
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
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
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
pub const ECOSYSTEMS: &[&str] = &[
    "cargo", "npm", "yarn", "pip", "apt", "rubygems", "composer", "nuget", "conda", "maven",
    "gradle", "go",
];

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
    if enabled("npm") {
        if let Some(dir) = npm::npm_cache_dir(env) {
            sources.push(std::sync::Arc::new(npm::NpmSource::new(
                dir,
                npm::registry_policy(env, marks),
            )));
        }
    }
    if enabled("yarn") {
        let folders = yarn::yarn_cache_folders(env);
        if !folders.is_empty() {
            sources.push(std::sync::Arc::new(yarn::YarnSource::new(
                folders,
                npm::registry_policy(env, marks),
            )));
        }
    }
    if enabled("pip") {
        if let Some(config) = pip::pip_config(env) {
            sources.push(std::sync::Arc::new(pip::PipSource::new(
                config,
                marks.clone(),
            )));
        }
    }
    if enabled("apt") {
        if let Some(config) = apt::apt_config(env) {
            sources.push(std::sync::Arc::new(apt::AptSource::new(
                config,
                marks.clone(),
            )));
        }
    }
    if enabled("rubygems") {
        let ruby = rubygems::probe_ruby(env);
        let caches = rubygems::gem_caches(env, &ruby.gem_dirs);
        if let (false, Some(ci)) = (caches.is_empty(), rubygems::compact_index_dir(env)) {
            sources.push(std::sync::Arc::new(rubygems::RubyGemsSource::new(
                caches,
                ci,
                ruby.default_slug,
                marks.clone(),
            )));
        }
    }
    if enabled("composer") {
        let caches = composer::composer_cache_dirs(env);
        if !caches.is_empty() {
            let default_repo = composer::probe_default_repo_dir(env);
            sources.push(std::sync::Arc::new(composer::ComposerSource::new(
                caches,
                default_repo,
                marks.clone(),
            )));
        }
    }
    if enabled("nuget") {
        if let Some(root) = nuget::nuget_packages_root(env) {
            sources.push(std::sync::Arc::new(nuget::NugetSource::new(
                root,
                marks.clone(),
            )));
        }
    }
    if enabled("conda") {
        let dirs = conda::conda_pkgs_dirs(env);
        if !dirs.is_empty() {
            sources.push(std::sync::Arc::new(conda::CondaSource::new(
                dirs,
                marks.clone(),
            )));
        }
    }
    if enabled("maven") {
        if let Some((repo, settings)) = maven::detect_maven(env) {
            sources.push(std::sync::Arc::new(maven::MavenSource::new(
                repo,
                settings,
                marks.clone(),
            )));
        }
    }
    if enabled("gradle") {
        let central = maven::maven_home(env)
            .and_then(|h| maven::central_from_installation(&h))
            .map(|(_, url)| url);
        sources.push(std::sync::Arc::new(gradle::GradleSource::new(
            gradle::gradle_module_dirs(env),
            central,
            marks.clone(),
        )));
    }
    if enabled("go") {
        if let Some(modcache) = golang::go_modcache(env) {
            let settings = golang::GoSettings::detect(env);
            sources.push(std::sync::Arc::new(golang::GoSource::new(
                modcache,
                settings,
                marks.clone(),
            )));
        }
    }
    sources
}

/// Caches present on this machine that keep only extracted files (pnpm, yarn berry, uv, bun, pub, deno).
pub fn detect_unseedable_caches(env: &SourceEnv) -> Vec<UnseedableCache> {
    unseedable::detect(env)
}

/// One package manager's cache layout.
pub trait CacheSource: Send + Sync {
    fn ecosystem(&self) -> &'static str;
    /// Directories to scan (and, unless [`CacheSource::watch_roots`] says otherwise, to watch).
    fn roots(&self) -> Vec<PathBuf>;
    /// Directories to watch, recursively: every directory under them costs an inotify watch (kernel memory, the
    /// user's `max_user_watches`) and a path in notify's tables. A source narrows this to a part of its roots when
    /// the events there tell it everything it needs ([`CacheSource::artifacts_for_sidecar`] names the artifacts an
    /// event concerns); what is not watched is still scanned, and a block read that finds its file gone withdraws
    /// it. Default: the roots.
    fn watch_roots(&self) -> Vec<PathBuf> {
        self.roots()
    }
    /// Cheap path test, called for every filesystem event.
    fn is_candidate(&self, path: &Path) -> bool;
    /// Blocking: reads metadata files next to the artifact. Does not hash the artifact itself.
    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact>;
    /// [`CacheSource::describe`], and where the artifact's bytes are inside the file: `None` when the artifact is the
    /// whole file (every source but pip's pre-23.3 inline cache entries). The indexer hashes and serves only that
    /// range. Default: the whole file.
    fn describe_in_file(
        &self,
        path: &Path,
    ) -> Result<(ArtifactIdentity, Option<ByteRange>), NotAnArtifact> {
        Ok((self.describe(path)?, None))
    }
    /// A directory appeared under this source's watched roots and settled: whether its files may predate its watch,
    /// so every root must be scanned (the default); `false` hands the directory to
    /// [`CacheSource::artifacts_for_sidecar`] like a file.
    fn new_dir_needs_scan(&self, _dir: &Path) -> bool {
        true
    }
    /// Cheap: the artifact paths whose description depends on `path`, a sidecar the client writes AFTER the
    /// artifact (NuGet's `.nupkg.metadata`, conda's extracted `info/repodata_record.json`). The engine should
    /// re-process those paths when `path` settles. Default: none.
    fn artifacts_for_sidecar(&self, _path: &Path) -> Vec<PathBuf> {
        Vec::new()
    }
    /// After [`CacheSource::artifacts_for_sidecar`] for `path`: whether the engine should hand `path` to it again
    /// later, and in how long (a look that was put off, or one that should follow a write whose last part may land
    /// after it). Asked once per call of that method; the engine keeps one such request per path. Default: never.
    fn look_again_in(&self, _path: &Path) -> Option<std::time::Duration> {
        None
    }
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
        let sum = RegistryChecksum {
            algo: ChecksumAlgo::Sha1,
            digest: vec![0x0A; 20],
        };
        assert_eq!(sum.to_prefixed_hex(), format!("sha1:{}", "0a".repeat(20)));
        let sum = RegistryChecksum {
            algo: ChecksumAlgo::GoH1,
            digest: vec![0xFF; 32],
        };
        assert_eq!(
            sum.to_prefixed_hex(),
            "h1://////////////////////////////////////////8="
        );
    }
}
