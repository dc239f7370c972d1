//! The yarn v1 cache source: `<cache folder>/v6/npm-<name>-<version>-<hash>-integrity/node_modules/<name>/
//! .yarn-tarball.tgz` (yarn stages a package under `v6/.tmp/` and moves the whole dir into place), described by the
//! `.yarn-metadata.json` next to it: `remote.resolved` (the tarball URL, `#<sha1>` dropped) gives name, version
//! and origin id (`scheme://host[:port]/path-prefix/`, as for npm), `remote.integrity` the sha512 checksum;
//! `manifest.name`/`manifest.version` must agree with the URL. Provenance as for npm (see `npm.rs`); a
//! `remote.type` other than `tarball` (git, file, link) is never public.
//!
//! Roots: `YARN_CACHE_FOLDER`, else `$XDG_CACHE_HOME/yarn` or `~/.cache/yarn` (for root also
//! `/usr/local/share/.cache/yarn`), `~/Library/Caches/Yarn` on macOS, `%LOCALAPPDATA%\Yarn\Cache` on Windows.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::npm::{parse_sri_sha512, parse_tarball_url, RegistryPolicy};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, Provenance, RegistryChecksum,
    SourceEnv,
};

const TARBALL: &str = ".yarn-tarball.tgz";
const METADATA: &str = ".yarn-metadata.json";
const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;

/// What `.yarn-metadata.json` says about the tarball next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YarnMetadata {
    pub remote_type: Option<String>,
    pub resolved: Option<String>,
    pub integrity: Option<String>,
    pub manifest_name: Option<String>,
    pub manifest_version: Option<String>,
}

/// Parses `.yarn-metadata.json`. Errors on anything that is not a JSON object.
pub fn parse_yarn_metadata(bytes: &[u8]) -> Result<YarnMetadata, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let remote = value.get("remote").cloned().unwrap_or_default();
    let manifest = value.get("manifest").cloned().unwrap_or_default();
    Ok(YarnMetadata {
        remote_type: s(&remote, "type"),
        resolved: s(&remote, "resolved").or_else(|| s(&remote, "reference")),
        integrity: s(&remote, "integrity"),
        manifest_name: s(&manifest, "name"),
        manifest_version: s(&manifest, "version"),
    })
}

/// One yarn v1 cache folder (the parent of `v6`).
pub struct YarnSource {
    roots: Vec<PathBuf>,
    policy: RegistryPolicy,
}

impl YarnSource {
    pub fn new(roots: Vec<PathBuf>, policy: RegistryPolicy) -> YarnSource {
        YarnSource { roots, policy }
    }

    /// (root, relative path) of a candidate: `v<N>/<pkg dir>/node_modules/<name or @scope/name>/.yarn-tarball.tgz`.
    fn split_candidate<'p>(&self, path: &'p Path) -> Option<(&Path, &'p Path)> {
        self.roots.iter().find_map(|root| {
            let rel = path.strip_prefix(root).ok()?;
            let parts: Vec<&str> = rel
                .components()
                .map(|c| match c {
                    Component::Normal(s) => s.to_str(),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            let ok = match parts.as_slice() {
                [v, dir, "node_modules", name, TARBALL] => {
                    is_version_dir(v) && ok_dir(dir) && ok_part(name)
                }
                [v, dir, "node_modules", scope, name, TARBALL] => {
                    is_version_dir(v)
                        && ok_dir(dir)
                        && scope.starts_with('@')
                        && ok_part(scope)
                        && ok_part(name)
                }
                _ => false,
            };
            ok.then_some((root.as_path(), rel))
        })
    }
}

fn is_version_dir(v: &str) -> bool {
    v.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn ok_dir(dir: &str) -> bool {
    !dir.starts_with('.') && dir.starts_with("npm-")
}

fn ok_part(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".."
}

impl CacheSource for YarnSource {
    fn ecosystem(&self) -> &'static str {
        "yarn"
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.roots.clone()
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (root, _) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        let shown = || path.display().to_string();
        crate::sidefile::check_artifact_file(root, path)?;
        let meta_path = path.with_file_name(METADATA);
        let meta_info = fs::symlink_metadata(&meta_path).map_err(|_| {
            NotAnArtifact::NoChecksum(format!("{} (no {METADATA}: incomplete)", shown()))
        })?;
        if !meta_info.file_type().is_file() || meta_info.len() > MAX_METADATA_BYTES {
            return Err(NotAnArtifact::Confinement(meta_path.display().to_string()));
        }
        let bytes = fs::read(&meta_path)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", meta_path.display())))?;
        let metadata = parse_yarn_metadata(&bytes)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", meta_path.display())))?;
        describe_metadata(&metadata, &self.policy)
    }
}

/// The identity of a yarn v1 cache entry from its metadata.
pub fn describe_metadata(
    metadata: &YarnMetadata,
    policy: &RegistryPolicy,
) -> Result<ArtifactIdentity, NotAnArtifact> {
    let resolved = metadata
        .resolved
        .as_deref()
        .ok_or_else(|| NotAnArtifact::BadName("no remote.resolved in yarn metadata".into()))?;
    let url =
        parse_tarball_url(resolved).ok_or_else(|| NotAnArtifact::BadName(resolved.to_owned()))?;
    if let (Some(n), Some(v)) = (&metadata.manifest_name, &metadata.manifest_version) {
        if *n != url.name || *v != url.version {
            return Err(NotAnArtifact::BadName(format!(
                "manifest says {n}@{v}, tarball URL says {}@{}",
                url.name, url.version
            )));
        }
    }
    let what = format!("{}@{}", url.name, url.version);
    let digest = metadata
        .integrity
        .as_deref()
        .and_then(parse_sri_sha512)
        .ok_or_else(|| {
            NotAnArtifact::NoChecksum(format!("{what} (no sha512 integrity recorded)"))
        })?;
    let (origin, provenance) = policy.tarball_provenance(&url);
    let provenance = match metadata.remote_type.as_deref() {
        Some("tarball") | None => provenance,
        Some(other) => Provenance::Private {
            reason: format!("a {other} dependency, not a registry tarball"),
        },
    };
    Ok(ArtifactIdentity {
        ecosystem: "yarn",
        name: url.name,
        version: url.version,
        origin,
        checksum: Some(RegistryChecksum {
            algo: ChecksumAlgo::Sha512,
            digest,
        }),
        provenance,
    })
}

/// yarn v1's cache folders (the parents of `v6`) for this environment.
pub(crate) fn yarn_cache_folders(env: &SourceEnv) -> Vec<PathBuf> {
    if let Some(folder) = env.var("YARN_CACHE_FOLDER") {
        return vec![PathBuf::from(folder)];
    }
    let mut out = Vec::new();
    if cfg!(windows) {
        out.extend(
            env.var("LOCALAPPDATA")
                .map(|l| Path::new(l).join("Yarn").join("Cache")),
        );
    } else if cfg!(target_os = "macos") {
        out.extend(env.home.as_ref().map(|h| h.join("Library/Caches/Yarn")));
    } else {
        match env.var("XDG_CACHE_HOME") {
            Some(x) => out.push(Path::new(x).join("yarn")),
            None => out.extend(env.home.as_ref().map(|h| h.join(".cache/yarn"))),
        }
        // yarn uses /usr/local/share as the home of root.
        if env.home.as_deref() == Some(Path::new("/root")) {
            out.push(PathBuf::from("/usr/local/share/.cache/yarn"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
