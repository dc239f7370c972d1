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
//!   (`%LocalAppData%\npm-cache` on Windows). The scanned root is `<cache>` (it outlives
//!   `npm cache clean`); only `_cacache/tmp` is watched (`watch_roots` says why).

pub mod cacache;
pub mod registry;

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub use cacache::{bucket_line, bucket_lines, live_entries, parse_index_bucket, CacacheEntry};
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
/// After a lookup misses, `index-v5` is walked again for new entries at most this often (unless the lookup waits
/// for a young blob's entry).
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A walk after the first reads the buckets modified since the previous walk began, less this margin (file times
/// are coarser than the clock).
const WALK_MARGIN: Duration = Duration::from_secs(2);
/// cacache's buckets sit in `index-v5/<2>/<2>/`: directories at this depth below `index-v5` hold them.
const BUCKET_DIR_DEPTH: usize = 2;
/// Looks at `index-v5` (≈ 0.1 s each at 100k tarballs) begin at least this far apart while npm writes.
const LOOK_GAP: Duration = Duration::from_secs(1);

/// The npm cache (`<cache>/_cacache`).
pub struct NpmSource {
    cacache: PathBuf,
    policy: RegistryPolicy,
    index: Mutex<IndexView>,
    looks: Mutex<Looks>,
}

/// How the looks at `index-v5` that npm's writes ask for are spaced: the first at once (a new tarball is served in
/// well under a second), then at most one per [`LOOK_GAP`] while npm keeps writing (a large install does not keep a
/// core busy with back-to-back looks), and always one more a gap after a look a write asked for: cacache appends the
/// index line after it moves the blob, and an npm busy extracting can take longer than the watcher's quiet time.
#[derive(Default)]
struct Looks {
    /// When the last look began.
    last: Option<Instant>,
    /// npm wrote (a `tmp` path settled) since the last look began.
    wrote_since: bool,
    /// A look was put off, or a write asked for the last one: the engine is asked to come back
    /// (`look_again_in`).
    again: bool,
}

/// Which bucket files of `index-v5` name which content, and nothing more: the buckets a lookup needs are read again
/// at that lookup, so what it returns is what the files say now. ≈ 56 bytes per entry (≈ 5.6 MB at 100k tarballs;
/// keeping every parsed entry, twice, took ≈ 2.5 KB each: 284 MB idle at 100k). Built by reading every bucket at
/// the first lookup; then the buckets npm writes are taken in by the look a write in `tmp` asks for
/// (`artifacts_for_sidecar`), and a lookup that misses walks `index-v5` again (`entries_for` says when), reading
/// only the buckets changed since the last walk. A bucket already in the view is not added twice.
struct IndexView {
    /// (the first 8 bytes of a content's sha512, the bucket naming it: an index into `buckets`), sorted.
    by_content: Vec<(u64, u32)>,
    buckets: Vec<BucketName>,
    /// When the last walk began.
    walked_at: Option<SystemTime>,
    /// When the last walk ended (`None`: never walked).
    refreshed: Option<Instant>,
    /// When the last look at `index-v5` for a settled `tmp` path began (at first: when the source was made; what
    /// was cached before that is the first scan's). Apart from `walked_at`: a walk for a lookup takes buckets into
    /// the view but does not hand their blobs to the indexer, so it must not hide them from this look.
    swept_at: SystemTime,
}

/// A bucket file: cacache names it by the sha256 of its key, `index-v5/<2>/<2>/<60 hex>`, kept as the 32 bytes;
/// any other name is kept as its path.
#[derive(PartialEq, Eq)]
enum BucketName {
    Hashed([u8; 32]),
    Other(Box<Path>),
}

/// The first 8 bytes of a digest, as the view's key.
fn digest_prefix(digest: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    let len = digest.len().min(8);
    first[..len].copy_from_slice(&digest[..len]);
    u64::from_be_bytes(first)
}

impl NpmSource {
    /// `cache_dir` is npm's `cache` setting (the parent of `_cacache`).
    pub fn new(cache_dir: PathBuf, policy: RegistryPolicy) -> NpmSource {
        NpmSource {
            cacache: cache_dir.join("_cacache"),
            policy,
            index: Mutex::new(IndexView {
                by_content: Vec::new(),
                buckets: Vec::new(),
                walked_at: None,
                refreshed: None,
                swept_at: SystemTime::now(),
            }),
            looks: Mutex::new(Looks::default()),
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

    fn index_dir(&self) -> PathBuf {
        self.cacache.join("index-v5")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.cacache.join("tmp")
    }

    /// The content blobs of the tarball entries among a bucket's lines (removed ones included).
    fn tarball_blobs(&self, lines: &[(String, Option<CacacheEntry>)]) -> Vec<PathBuf> {
        lines
            .iter()
            .filter_map(|(_, entry)| entry.as_ref())
            .filter(|entry| {
                entry
                    .key
                    .strip_prefix(REQUEST_CACHE)
                    .is_some_and(|url| parse_tarball_url(url).is_some())
                    || entry.key.starts_with(PACOTE_TARBALL)
            })
            .filter_map(|entry| parse_sri_sha512(&entry.integrity))
            .map(|digest| {
                let hex = hex::encode(digest);
                self.cacache
                    .join("content-v2/sha512")
                    .join(&hex[..2])
                    .join(&hex[2..4])
                    .join(&hex[4..])
            })
            .collect()
    }

    /// How the view keeps the bucket at `path`.
    fn bucket_name(&self, path: &Path) -> BucketName {
        let hashed = path
            .strip_prefix(self.index_dir())
            .ok()
            .and_then(|rel| {
                let parts: Vec<&str> = rel
                    .iter()
                    .map(|part| part.to_str())
                    .collect::<Option<_>>()?;
                match parts.as_slice() {
                    [a, b, rest] if a.len() == 2 && b.len() == 2 && rest.len() == 60 => {
                        hex::decode(format!("{a}{b}{rest}")).ok()?.try_into().ok()
                    }
                    _ => None,
                }
            })
            // Only a name that prints back the same (lowercase hex) is kept as bytes.
            .filter(|bytes: &[u8; 32]| self.bucket_path(&BucketName::Hashed(*bytes)) == path);
        match hashed {
            Some(bytes) => BucketName::Hashed(bytes),
            None => BucketName::Other(path.into()),
        }
    }

    fn bucket_path(&self, name: &BucketName) -> PathBuf {
        match name {
            BucketName::Hashed(bytes) => {
                let hex = hex::encode(bytes);
                self.index_dir()
                    .join(&hex[..2])
                    .join(&hex[2..4])
                    .join(&hex[4..])
            }
            BucketName::Other(path) => path.to_path_buf(),
        }
    }

    /// The live entries of the bucket at `path` (none when it is gone, unreadable or too large).
    fn read_bucket(path: &Path) -> Vec<CacacheEntry> {
        parse_index_bucket(&Self::bucket_bytes(path))
    }

    /// The bucket file at `path` (empty when it is gone, unreadable or too large).
    fn bucket_bytes(path: &Path) -> Vec<u8> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_file() && meta.len() <= MAX_BUCKET_BYTES => {
                fs::read(path).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Walks `index-v5` and adds the contents named by the buckets modified since the last walk began (every
    /// bucket on the first walk).
    fn refresh(&self, view: &mut IndexView) {
        let began = SystemTime::now();
        let since = view.walked_at;
        self.take_in_buckets(view, since, |_| {});
        view.walked_at = Some(began);
        view.refreshed = Some(Instant::now());
    }

    /// Takes into the view every bucket [`NpmSource::walk_buckets`] finds changed since `since`, handing each
    /// bucket's lines (removed entries included) to `on_lines` first.
    fn take_in_buckets(
        &self,
        view: &mut IndexView,
        since: Option<SystemTime>,
        mut on_lines: impl FnMut(&[(String, Option<CacacheEntry>)]),
    ) {
        let sorted_len = view.by_content.len();
        self.walk_buckets(since, |path| {
            let lines = bucket_lines(&Self::bucket_bytes(path));
            on_lines(&lines);
            self.add_bucket(view, sorted_len, path, &live_entries(lines));
        });
        view.by_content.sort_unstable();
    }

    /// Calls `on_bucket` with every bucket file of `index-v5` created or modified since `since` (less
    /// [`WALK_MARGIN`]; every bucket when `None`). A bucket directory (`index-v5/<2>/<2>`) not modified since is
    /// not listed: a new bucket is a new file in it, which changes its time, so such a walk stats the 65536
    /// directories rather than every bucket (≈ 0.1 s instead of 1.3 s at 100k tarballs). A line appended to a
    /// bucket that already existed (the same URL fetched again) is taken in by the first walk after a restart.
    fn walk_buckets(&self, since: Option<SystemTime>, mut on_bucket: impl FnMut(&Path)) {
        let since = since.map(|at| {
            at.checked_sub(WALK_MARGIN)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        let unchanged = |entry: &fs::DirEntry| {
            since.is_some_and(|since| {
                let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
                modified.is_some_and(|modified| modified < since)
            })
        };
        let mut stack = vec![(self.index_dir(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if depth + 1 != BUCKET_DIR_DEPTH || !unchanged(&entry) {
                        stack.push((entry.path(), depth + 1));
                    }
                } else if kind.is_file() && !unchanged(&entry) {
                    on_bucket(&entry.path());
                }
            }
        }
    }

    /// Adds to the view the contents that the bucket at `path` (whose live entries are `entries`) names and the view
    /// does not yet tie to it. `by_content[..sorted_len]` is sorted; the pairs added are appended (the caller sorts).
    /// Whether any was added.
    fn add_bucket(
        &self,
        view: &mut IndexView,
        sorted_len: usize,
        path: &Path,
        entries: &[CacacheEntry],
    ) -> bool {
        let mut prefixes: Vec<u64> = entries
            .iter()
            .filter_map(|e| parse_sri_sha512(&e.integrity))
            .map(|digest| digest_prefix(&digest))
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        if prefixes.is_empty() {
            return false;
        }
        let name = self.bucket_name(path);
        let sorted = &view.by_content[..sorted_len];
        let mut known: Option<u32> = None;
        prefixes.retain(|&prefix| {
            let first = sorted.partition_point(|(p, _)| *p < prefix);
            let tied = sorted[first..]
                .iter()
                .take_while(|(p, _)| *p == prefix)
                .find(|(_, bucket)| view.buckets[*bucket as usize] == name);
            if let Some(&(_, bucket)) = tied {
                known = Some(bucket);
            }
            tied.is_none()
        });
        if prefixes.is_empty() {
            return false;
        }
        let bucket = match known {
            Some(bucket) => bucket,
            None => {
                let Ok(bucket) = u32::try_from(view.buckets.len()) else {
                    return false;
                };
                view.buckets.push(name);
                bucket
            }
        };
        view.by_content
            .extend(prefixes.into_iter().map(|prefix| (prefix, bucket)));
        true
    }

    /// The live entries, in the buckets the view names for `digest`, whose integrity is `digest`.
    fn entries_in_view(&self, view: &IndexView, digest: &[u8]) -> Vec<CacacheEntry> {
        let prefix = digest_prefix(digest);
        let first = view.by_content.partition_point(|(p, _)| *p < prefix);
        let mut read: Vec<PathBuf> = Vec::new();
        let mut found: Vec<CacacheEntry> = Vec::new();
        for &(_, bucket) in view.by_content[first..]
            .iter()
            .take_while(|(p, _)| *p == prefix)
        {
            let path = self.bucket_path(&view.buckets[bucket as usize]);
            if read.contains(&path) {
                continue;
            }
            for entry in Self::read_bucket(&path) {
                let names_it = parse_sri_sha512(&entry.integrity).is_some_and(|d| d == digest);
                if names_it && !found.contains(&entry) {
                    found.push(entry);
                }
            }
            read.push(path);
        }
        found
    }

    /// The index entries referring to the content whose sha512 is `digest`: the buckets the view names for it, read
    /// now. On a miss the view first takes in the buckets changed since the last walk: when the blob is newer than
    /// that walk (its entry cannot have been seen: a scan that raced npm's write), else at most every
    /// [`REFRESH_EVERY`]. A new tarball does not wait for a walk: the look its write in `tmp` asks for puts it in the
    /// view first (`artifacts_for_sidecar`).
    fn entries_for(&self, digest: &[u8], blob_mtime: Option<SystemTime>) -> Vec<CacacheEntry> {
        let mut view = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if view.refreshed.is_none() {
            self.refresh(&mut view);
        }
        let found = self.entries_in_view(&view, digest);
        if !found.is_empty() {
            return found;
        }
        let due = view.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
        let newer_than_walk = match (blob_mtime, view.walked_at) {
            (Some(modified), Some(walked)) => {
                modified
                    >= walked
                        .checked_sub(WALK_MARGIN)
                        .unwrap_or(SystemTime::UNIX_EPOCH)
            }
            _ => true,
        };
        if !due && !newer_than_walk {
            return found;
        }
        self.refresh(&mut view);
        self.entries_in_view(&view, digest)
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
        // The parent of `_cacache`: `npm cache clean --force` deletes `_cacache` itself (the scan that the loss of
        // the watched `tmp` starts then withdraws everything).
        match self.cacache.parent() {
            Some(parent) => vec![parent.to_path_buf()],
            None => vec![self.cacache.clone()],
        }
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.content_hex(path).is_some()
    }

    /// Only `_cacache/tmp` is watched: cacache writes every blob there first and moves it into place, then appends
    /// the index line that names it, so activity in `tmp` is what tells that npm cached something (a new tarball,
    /// a tarball fetched again). Watching `index-v5` took a watch on each of its 65536 directories at 100k tarballs
    /// (≈ 15 MB of notify's tables, as much kernel memory, and a large share of the user's `max_user_watches`);
    /// `content-v2` has as many. A settled `tmp` path asks for one look at `index-v5` (`artifacts_for_sidecar`).
    /// Not seen until the next scan: a blob or a bucket deleted by hand or by `npm cache clean <key>` (a block read
    /// that finds its file gone withdraws it first). `npm cache clean --force` deletes `_cacache`, and
    /// `npm cache verify` deletes `tmp`: the watcher sees its root go and rescans.
    fn watch_roots(&self) -> Vec<PathBuf> {
        vec![self.tmp_dir()]
    }

    /// A path in `tmp` settled (npm cached something): `index-v5` itself is returned, one work item for the
    /// indexer however many `tmp` files settle while it waits (and the looks are spaced: [`Looks`]). For
    /// `index-v5`, a look: the buckets in the bucket directories changed since the last look began (`walk_buckets`,
    /// ≈ 0.1 s at 100k tarballs) are taken into the view, and the blob of every tarball entry they have held is
    /// returned: a new tarball is seeded now, and a blob whose entry was removed is withdrawn (or
    /// found gone). Packuments are not returned.
    fn artifacts_for_sidecar(&self, path: &Path) -> Vec<PathBuf> {
        if path.parent() == Some(self.tmp_dir().as_path()) {
            self.looks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wrote_since = true;
            return vec![self.index_dir()];
        }
        if path != self.index_dir() {
            return Vec::new();
        }
        {
            let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
            if looks.last.is_some_and(|last| last.elapsed() < LOOK_GAP) {
                looks.again = true;
                return Vec::new();
            }
            looks.last = Some(Instant::now());
            looks.again = std::mem::take(&mut looks.wrote_since);
        }
        let mut view = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let began = SystemTime::now();
        let since = view.swept_at;
        let mut blobs: Vec<PathBuf> = Vec::new();
        self.take_in_buckets(&mut view, Some(since), |lines| {
            blobs.extend(self.tarball_blobs(lines));
        });
        view.swept_at = began;
        blobs.sort_unstable();
        blobs.dedup();
        blobs
    }

    /// `index-v5` again when a look was put off or a write asked for the last one: a gap after the last look.
    fn look_again_in(&self, path: &Path) -> Option<Duration> {
        if path != self.index_dir() {
            return None;
        }
        let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
        if !std::mem::take(&mut looks.again) {
            return None;
        }
        let since_last = looks.last.map_or(LOOK_GAP, |last| last.elapsed());
        Some(LOOK_GAP.saturating_sub(since_last))
    }

    /// A directory in `tmp` is a git clone pacote makes there (`cacache.tmp.withTmp`), not cached content: it
    /// asks for a look like a file there does, not for a scan of every root.
    fn new_dir_needs_scan(&self, dir: &Path) -> bool {
        !dir.starts_with(self.tmp_dir())
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let hex = self.content_hex(path).ok_or(NotAnArtifact::NotCandidate)?;
        let meta = crate::sidefile::check_artifact_file(&self.cacache, path)?;
        let digest = hex::decode(&hex).map_err(|_| NotAnArtifact::NotCandidate)?;
        let entries = self.entries_for(&digest, meta.modified().ok());
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
