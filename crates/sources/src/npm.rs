//! The npm cache source: content blobs `<cache>/_cacache/content-v2/sha512/<2>/<2>/<124 hex>` (named by their
//! sha512 integrity; cacache writes them under `tmp/` and moves them into place, so a blob at its final path is
//! complete), identified through the `index-v5` entries that refer to them.
//!
//! - Identity: an entry keyed `make-fetch-happen:request-cache:<tarball URL>` whose URL is
//!   `<registry>/<name>/-/<name>-<version>.tgz` gives name and version; the origin id is the registry base as found
//!   in that URL, `scheme://host[:port]/path-prefix/`. The checksum is the blob's sha512 integrity (64 raw bytes).
//! - Provenance: public when the origin is the default registry of the installed npm (or yarn), learned at run
//!   time with user and global config ignored, or an origin the user marked public; `@scope:registry` origins
//!   from the user's npm config are private; `pacote:tarball:file:` entries (local tarballs and dirs) are private
//!   with the origin id `file:`; anything else is unknown. A scoped tarball on a public registry gets the origin
//!   `<registry>@scope/` and is public only when the user marked that origin public, or every scope of the registry
//!   (`<registry>@*`) and the user's npm config holds no credentials for it (private packages on a public
//!   registry are scoped and fetched with credentials the cache does not record; see
//!   [`RegistryPolicy::tarball_provenance`]). An entry whose stored headers say the response was for one user
//!   (`cache-control: private`/`no-store`, an `authorization` request header, `vary: authorization`) is private
//!   whatever its registry. Packuments and other non-tarball content are not artifacts.
//! - Roots: `npm_config_cache` / `NPM_CONFIG_CACHE`, else `cache=` in the user's `.npmrc`, else `~/.npm`
//!   (`%LocalAppData%\npm-cache` on Windows); the watched root is `<cache>` (it outlives `npm cache clean`).

pub mod cacache;
pub mod registry;

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub use cacache::{bucket_line, parse_index_bucket, CacacheEntry};
pub use registry::{
    detect_default_registries, normalize_registry, parse_npmrc, parse_sri_sha512,
    parse_tarball_url, scope_wildcard_for, scope_wildcard_registry, RegistryPolicy, TarballUrl,
    SCOPE_WILDCARD,
};

use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, Provenance, RegistryChecksum,
    SourceEnv,
};

const REQUEST_CACHE: &str = "make-fetch-happen:request-cache:";
const LOCAL_TARBALL: &str = "pacote:tarball:file:";
const PACOTE_TARBALL: &str = "pacote:tarball:";
/// Largest bucket file read (a bucket holds one or a few keys; this bounds a hostile one).
const MAX_BUCKET_BYTES: u64 = 16 * 1024 * 1024;
/// The in-memory view of the index is refreshed at most this often while lookups hit.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// cacache moves a blob into place just before it appends the index entry: for a blob this young with no entry
/// yet, wait this long for the entry.
const YOUNG_BLOB: Duration = Duration::from_secs(10);
const ENTRY_WAIT: Duration = Duration::from_secs(2);

/// The npm cache (`<cache>/_cacache`).
pub struct NpmSource {
    cacache: PathBuf,
    policy: RegistryPolicy,
    index: Mutex<IndexView>,
}

#[derive(Default)]
struct IndexView {
    /// bucket path → (len, mtime, live entries)
    buckets: HashMap<PathBuf, (u64, Option<SystemTime>, Vec<CacacheEntry>)>,
    /// sha512 hex of the content → entries referring to it
    by_content: HashMap<String, Vec<CacacheEntry>>,
    refreshed: Option<Instant>,
}

impl NpmSource {
    /// `cache_dir` is npm's `cache` setting (the parent of `_cacache`).
    pub fn new(cache_dir: PathBuf, policy: RegistryPolicy) -> NpmSource {
        NpmSource {
            cacache: cache_dir.join("_cacache"),
            policy,
            index: Mutex::new(IndexView::default()),
        }
    }

    /// The sha512 hex a candidate path is named by.
    fn content_hex(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.cacache).ok()?;
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let [content, algo, a, b, rest] = parts.as_slice() else {
            return None;
        };
        let is_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        };
        (*content == "content-v2"
            && *algo == "sha512"
            && is_hex(a, 2)
            && is_hex(b, 2)
            && is_hex(rest, 124))
        .then(|| format!("{a}{b}{rest}"))
    }

    /// Re-reads the bucket files that changed since the last refresh.
    fn refresh(&self, view: &mut IndexView) {
        let mut seen: HashMap<PathBuf, (u64, Option<SystemTime>, Vec<CacacheEntry>)> =
            HashMap::new();
        let mut changed = false;
        let mut stack = vec![self.cacache.join("index-v5")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let stamp = (meta.len(), meta.modified().ok());
                if let Some(old) = view.buckets.remove(&path) {
                    if (old.0, old.1) == stamp {
                        seen.insert(path, old);
                        continue;
                    }
                }
                changed = true;
                let entries = if meta.len() > MAX_BUCKET_BYTES {
                    Vec::new()
                } else {
                    fs::read(&path)
                        .map(|b| parse_index_bucket(&b))
                        .unwrap_or_default()
                };
                seen.insert(path, (stamp.0, stamp.1, entries));
            }
        }
        changed |= !view.buckets.is_empty();
        view.buckets = seen;
        if changed || view.refreshed.is_none() {
            view.by_content.clear();
            for (_, _, entries) in view.buckets.values() {
                for e in entries {
                    if let Some(digest) = parse_sri_sha512(&e.integrity) {
                        view.by_content
                            .entry(hex::encode(digest))
                            .or_default()
                            .push(e.clone());
                    }
                }
            }
        }
        view.refreshed = Some(Instant::now());
    }

    /// The index entries referring to the content `hex`, refreshing the view when it is stale or misses.
    fn entries_for(&self, hex: &str, blob_mtime: Option<SystemTime>) -> Vec<CacacheEntry> {
        let young = blob_mtime
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < YOUNG_BLOB);
        let deadline = Instant::now() + if young { ENTRY_WAIT } else { Duration::ZERO };
        let mut first = true;
        loop {
            {
                let mut view = self.index.lock().unwrap_or_else(|e| e.into_inner());
                let stale = view.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
                if stale || !first || !view.by_content.contains_key(hex) {
                    self.refresh(&mut view);
                }
                if let Some(found) = view.by_content.get(hex) {
                    return found.clone();
                }
            }
            first = false;
            if Instant::now() >= deadline {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The identity npm's index gives a blob, from all the live entries that refer to it: a public tarball URL wins,
/// then a private one, then an unknown one; then a local (`pacote:tarball:file:`) entry; then a bare
/// `pacote:tarball:<spec>` entry (unknown origin). `None` when no entry names a tarball (a packument, say).
pub fn identity_from_entries(
    entries: &[CacacheEntry],
    digest: &[u8],
    policy: &RegistryPolicy,
) -> Option<ArtifactIdentity> {
    let checksum = RegistryChecksum {
        algo: ChecksumAlgo::Sha512,
        digest: digest.to_vec(),
    };
    let relevant: Vec<&CacacheEntry> = entries
        .iter()
        .filter(|e| parse_sri_sha512(&e.integrity).is_some_and(|d| d == digest))
        .collect();
    let mut urls: Vec<(TarballUrl, Provenance)> = relevant
        .iter()
        .filter_map(|e| {
            let t = parse_tarball_url(e.key.strip_prefix(REQUEST_CACHE)?)?;
            let (origin, provenance) = policy.tarball_provenance(&t);
            let provenance = match &e.private_evidence {
                Some(reason) => Provenance::Private {
                    reason: format!("{reason} (a response for one user)"),
                },
                None => provenance,
            };
            Some((TarballUrl { origin, ..t }, provenance))
        })
        .collect();
    let rank = |p: &Provenance| match p {
        Provenance::Public { .. } => 0,
        Provenance::Private { .. } => 1,
        Provenance::Unknown { .. } => 2,
    };
    urls.sort_by_key(|(_, p)| rank(p));
    if let Some((url, provenance)) = urls.into_iter().next() {
        return Some(ArtifactIdentity {
            ecosystem: "npm",
            name: url.name,
            version: url.version,
            origin: url.origin,
            checksum: Some(checksum),
            provenance,
        });
    }
    if let Some(local) = relevant
        .iter()
        .find_map(|e| e.key.strip_prefix(LOCAL_TARBALL))
    {
        let name = local
            .trim_end_matches(['/', '\\'])
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(local);
        return Some(ArtifactIdentity {
            ecosystem: "npm",
            name: name.to_owned(),
            version: String::new(),
            origin: "file:".into(),
            checksum: Some(checksum),
            provenance: Provenance::Private {
                reason: "a local tarball or directory (pacote:tarball:file:), never public".into(),
            },
        });
    }
    let spec = relevant
        .iter()
        .find_map(|e| e.key.strip_prefix(PACOTE_TARBALL))?;
    let (name, version) = match spec.get(1..).and_then(|s| s.rsplit_once('@')) {
        Some((n, v)) => (format!("{}{n}", &spec[..1]), v.to_owned()),
        None => (spec.to_owned(), String::new()),
    };
    Some(ArtifactIdentity {
        ecosystem: "npm",
        name,
        version,
        origin: "unknown".into(),
        checksum: Some(checksum),
        provenance: Provenance::Unknown {
            reason: "only a pacote:tarball spec entry refers to this content; its registry is not recorded".into(),
        },
    })
}

impl CacheSource for NpmSource {
    fn ecosystem(&self) -> &'static str {
        "npm"
    }

    fn roots(&self) -> Vec<PathBuf> {
        // The parent of `_cacache`: `npm cache clean --force` deletes `_cacache` itself, and a watch on its parent
        // sees it come back.
        match self.cacache.parent() {
            Some(parent) => vec![parent.to_path_buf()],
            None => vec![self.cacache.clone()],
        }
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.content_hex(path).is_some()
    }

    /// An index bucket: cacache moves the blob into place BEFORE it appends the index line, so a blob described
    /// while its line was still missing (longer than the short wait in `describe`) is looked at again when the
    /// line lands. Only tarball entries whose blob exists are returned (not packuments).
    fn artifacts_for_sidecar(&self, path: &Path) -> Vec<PathBuf> {
        if path.strip_prefix(self.cacache.join("index-v5")).is_err() {
            return Vec::new();
        }
        let readable = fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_file() && m.len() <= MAX_BUCKET_BYTES);
        let Some(bytes) = readable.then(|| fs::read(path).ok()).flatten() else {
            return Vec::new();
        };
        let mut blobs: Vec<PathBuf> = Vec::new();
        for entry in parse_index_bucket(&bytes) {
            let tarball = entry
                .key
                .strip_prefix(REQUEST_CACHE)
                .is_some_and(|url| parse_tarball_url(url).is_some())
                || entry.key.starts_with(PACOTE_TARBALL);
            let Some(digest) = parse_sri_sha512(&entry.integrity).filter(|_| tarball) else {
                continue;
            };
            let hex = hex::encode(digest);
            let blob = self
                .cacache
                .join("content-v2/sha512")
                .join(&hex[..2])
                .join(&hex[2..4])
                .join(&hex[4..]);
            if blob.is_file() && !blobs.contains(&blob) {
                blobs.push(blob);
            }
        }
        blobs
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let hex = self.content_hex(path).ok_or(NotAnArtifact::NotCandidate)?;
        let meta = crate::sidefile::check_artifact_file(&self.cacache, path)?;
        let digest = hex::decode(&hex).map_err(|_| NotAnArtifact::NotCandidate)?;
        let entries = self.entries_for(&hex, meta.modified().ok());
        if entries.is_empty() {
            return Err(NotAnArtifact::NoChecksum(format!(
                "{} (no npm index entry refers to it)",
                path.display()
            )));
        }
        identity_from_entries(&entries, &digest, &self.policy).ok_or(NotAnArtifact::NotCandidate)
    }
}

/// npm's `cache` dir: `npm_config_cache` / `NPM_CONFIG_CACHE`, else `cache=` in the user's npm config, else
/// `~/.npm` (`%LocalAppData%\npm-cache` on Windows).
pub(crate) fn npm_cache_dir(env: &SourceEnv) -> Option<PathBuf> {
    let expand_home = |p: &str| -> Option<PathBuf> {
        match p.strip_prefix("~/").or_else(|| p.strip_prefix("~\\")) {
            Some(rest) => env.home.as_ref().map(|h| h.join(rest)),
            None => Some(PathBuf::from(p)),
        }
    };
    if let Some(dir) = env
        .var("npm_config_cache")
        .or_else(|| env.var("NPM_CONFIG_CACHE"))
    {
        return expand_home(dir);
    }
    for (_, pairs) in registry::read_npmrc_files(env) {
        if let Some((_, dir)) = pairs
            .iter()
            .rev()
            .find(|(k, v)| k == "cache" && !v.is_empty())
        {
            return expand_home(dir);
        }
    }
    if cfg!(windows) {
        if let Some(local) = env.var("LOCALAPPDATA") {
            return Some(Path::new(local).join("npm-cache"));
        }
    }
    env.home.as_ref().map(|h| h.join(".npm"))
}

/// The registry policy for this machine: default registries learned from the installed clients (once per
/// process), scoped registries from the user's config, and the user's marks.
pub(crate) fn registry_policy(env: &SourceEnv, marks: &crate::OriginMarks) -> RegistryPolicy {
    static DEFAULTS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    RegistryPolicy {
        defaults: DEFAULTS
            .get_or_init(|| detect_default_registries(env))
            .clone(),
        scoped: registry::scoped_registries(env),
        credentialed: registry::credentialed_hosts(env),
        marks: marks.clone(),
    }
}

#[cfg(test)]
mod tests;
