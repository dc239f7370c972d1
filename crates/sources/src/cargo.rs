//! The cargo cache source: `.crate` files under `$CARGO_HOME/registry/cache/<index-dir>/`, their checksum from
//! cargo's index cache, and their provenance from the index dir name.

pub(crate) mod file_name;
pub(crate) mod index_cache;

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::sidefile::read_regular_file;
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum,
};
pub use file_name::{is_semver, split_crate_file_name};
use index_cache::{parse_index_cache, IndexCacheError};

/// Cargo's source-hash suffixes of the index dirs of the default (public) crates registry, with the evidence
/// shown to users. The hash is of the registry's source id: SipHash before cargo 1.85, rustc-stable-hash since.
pub const DEFAULT_REGISTRY_SUFFIXES: [(&str, &str); 4] = [
    (
        "1949cf8c6b5b557f",
        "cargo source hash suffix of the default registry (sparse protocol, cargo 1.85 and later)",
    ),
    (
        "6f17d22bba15001f",
        "cargo source hash suffix of the default registry (sparse protocol, cargo 1.68 to 1.84)",
    ),
    (
        "1ecc6299db9ec823",
        "cargo source hash suffix of the default registry (git index, cargo before 1.85)",
    ),
    (
        "25cdd57fae9f0462",
        "cargo source hash suffix of the default registry (git index, cargo 1.85 and later)",
    ),
];

/// Upper bound on an index cache file read into memory: far above any real index file, it bounds memory on a
/// corrupt or hostile one.
const MAX_INDEX_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The cargo cache (`$CARGO_HOME/registry`).
pub struct CargoSource {
    cargo_home: PathBuf,
    /// `<cargo_home>/registry/cache`, kept because `is_candidate` runs on every filesystem event.
    cache_root: PathBuf,
    marks: OriginMarks,
}

impl CargoSource {
    pub fn new(cargo_home: PathBuf, marks: OriginMarks) -> CargoSource {
        let cache_root = cargo_home.join("registry").join("cache");
        CargoSource {
            cargo_home,
            cache_root,
            marks,
        }
    }

    /// `(index dir, file name, file stem)` of a candidate path, by its components below the cache root.
    fn split_candidate<'p>(&self, path: &'p Path) -> Option<(&'p str, &'p str, &'p str)> {
        let rel = path.strip_prefix(&self.cache_root).ok()?;
        let mut parts = rel.components();
        let (Some(Component::Normal(dir)), Some(Component::Normal(file)), None) =
            (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (dir, file) = (dir.to_str()?, file.to_str()?);
        let stem = file.strip_suffix(".crate")?;
        (!stem.is_empty() && !stem.starts_with('.') && !dir.starts_with('.'))
            .then_some((dir, file, stem))
    }

    /// The structural decision for one index dir, with the user's marks applied (a private mark wins).
    fn provenance(&self, index_dir: &str) -> Provenance {
        if self.marks.private.iter().any(|m| m == index_dir) {
            return Provenance::Private {
                reason: "marked private by the user".into(),
            };
        }
        let hash = index_dir
            .rsplit_once('-')
            .filter(|(host, hash)| !host.is_empty() && is_source_hash(hash))
            .map(|(_, hash)| hash);
        if let Some((_, evidence)) = DEFAULT_REGISTRY_SUFFIXES
            .iter()
            .find(|(suffix, _)| Some(*suffix) == hash)
        {
            return Provenance::Public {
                evidence: (*evidence).into(),
            };
        }
        if self.marks.public.iter().any(|m| m == index_dir) {
            return Provenance::Public {
                evidence: "marked public by the user".into(),
            };
        }
        let reason = match hash {
            Some(_) => "alternative cargo registry (its source hash is not one of the default registry's)",
            None => "index dir name is not cargo's <host>-<16 hex> form; treated as an alternative registry",
        };
        Provenance::Private {
            reason: reason.into(),
        }
    }

    /// The registry's sha256 of `<name>-<version>.crate` from the index cache of `index_dir`.
    fn registry_checksum(
        &self,
        index_dir: &str,
        name: &str,
        version: &str,
    ) -> Result<Vec<u8>, NotAnArtifact> {
        let what = format!("{name} {version}");
        let cache_path = cargo_index_cache_path(&self.cargo_home, index_dir, name);
        let bytes = match read_regular_file(&cache_path, MAX_INDEX_CACHE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(NotAnArtifact::NoChecksum(format!(
                    "{what} (no index cache file {})",
                    cache_path.display()
                )))
            }
            Err(e) => {
                return Err(NotAnArtifact::Unreadable(format!(
                    "{}: {e}",
                    cache_path.display()
                )));
            }
        };
        let entries = parse_index_cache(&bytes).map_err(|e| match e {
            IndexCacheError::UnsupportedCacheVersion(_) => {
                NotAnArtifact::NoChecksum(format!("{what} ({e})"))
            }
            e => NotAnArtifact::Unreadable(format!("{}: {e}", cache_path.display())),
        })?;
        let corrupt = |detail: String| {
            NotAnArtifact::Unreadable(format!("{}: {detail}", cache_path.display()))
        };
        // Exact string match: cargo keys the cache and names the file by the same `Version` display, and build
        // metadata distinguishes versions here (index cache version 3 exists for exactly that).
        let Some(entry) = entries.iter().find(|e| e.version == version) else {
            return Err(NotAnArtifact::NoChecksum(what));
        };
        let record = entry
            .record()
            .map_err(|e| corrupt(format!("JSON line of {version}: {e}")))?;
        if record.vers != version || !record.name.eq_ignore_ascii_case(name) {
            return Err(corrupt(format!(
                "entry {version} describes {} {}",
                record.name, record.vers
            )));
        }
        let Some(cksum) = record.cksum else {
            return Err(NotAnArtifact::NoChecksum(what));
        };
        match hex::decode(&cksum) {
            Ok(digest) if digest.len() == 32 => Ok(digest),
            _ => Err(corrupt(format!(
                "cksum of {version} is not sha256 hex: {cksum:?}"
            ))),
        }
    }
}

impl CacheSource for CargoSource {
    fn ecosystem(&self) -> &'static str {
        "cargo"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.cache_root.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (index_dir, file, stem) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        let (name, version) =
            split_crate_file_name(stem).ok_or_else(|| NotAnArtifact::BadName(file.to_owned()))?;
        // Cargo writes a `.crate` in place after checking it in memory; 0 bytes (refused as empty) is an
        // interrupted download.
        crate::sidefile::check_artifact_file(&self.cache_root, path)?;
        let digest = self.registry_checksum(index_dir, name, version)?;
        Ok(ArtifactIdentity {
            ecosystem: "cargo",
            name: name.to_owned(),
            version: version.to_owned(),
            origin: index_dir.to_owned(),
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::Sha256,
                digest,
            }),
            provenance: self.provenance(index_dir),
        })
    }
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn default_cargo_home() -> Option<PathBuf> {
    cargo_home(&crate::SourceEnv::from_process())
}

/// `CARGO_HOME` from `env`, else `<home>/.cargo`.
pub(crate) fn cargo_home(env: &crate::SourceEnv) -> Option<PathBuf> {
    match env.var("CARGO_HOME") {
        // Cargo resolves a relative CARGO_HOME against the working directory.
        Some(home) => std::env::current_dir().ok().map(|cwd| cwd.join(home)),
        None => env.home.as_ref().map(|home| home.join(".cargo")),
    }
}

/// `<cargo_home>/registry/index/<index_dir>/.cache/<prefix>/<lowercased name>`, with cargo's prefix layout
/// (`make_dep_path`): `1/`, `2/`, `3/<first char>/`, else `<first two>/<next two>/`.
pub fn cargo_index_cache_path(cargo_home: &Path, index_dir: &str, name: &str) -> PathBuf {
    let name = name.to_lowercase();
    let mut path = cargo_home
        .join("registry")
        .join("index")
        .join(index_dir)
        .join(".cache");
    match name.len() {
        1 => path.push("1"),
        2 => path.push("2"),
        // `get` instead of slicing: a non-ASCII name must not panic (crate names are ASCII anyway).
        3 => path.extend(["3", name.get(..1).unwrap_or("")]),
        _ => path.extend([name.get(..2).unwrap_or(""), name.get(2..4).unwrap_or("")]),
    }
    path.push(&name);
    path
}

fn is_source_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests;
