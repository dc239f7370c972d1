//! pkgseed's own store of artifacts: `<data_dir>/store/<root CID>`, a hard link to every indexed public artifact
//! while `limits.keep_evicted_artifacts` is on. A link costs no disk while the package manager's file exists; when
//! the package manager deletes its copy, the artifact moves to the link (same inode, same stamp, same blocks) and
//! is still served, verified at every read as before. This module owns the links, what pkgseed's files cost on
//! disk, the last-served time of every artifact, eviction under the disk cap (least recently served first) and the
//! reconciliation of store and index after a crash. See docs/limits.md ("Disk cap and pkgseed's store").
//! A link is always to the whole cache file, so an artifact that is a byte range of its file (pip's pre-23.3 inline
//! bodies) keeps its range when it moves to the link, reads are of that range as before, and its cost is the whole
//! file's size (what the link keeps on disk).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pkgseed_index::{ArtifactId, ArtifactRecord, FileStamp};
use serde::{Deserialize, Serialize};

use crate::engine::Shared;
use crate::limits::{evict_to_fit, StoredArtifact};

/// The store's dir in the data dir.
pub const STORE_DIR: &str = "store";
/// Last-served times, written every few seconds when they changed and at shutdown.
pub const SERVED_FILE: &str = "served.json";

/// What the store holds and costs, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Bytes of store files whose original is gone (only pkgseed's link is left): what the store costs on disk.
    pub cost_bytes: u64,
    /// Store files that are the last link (their package manager deleted the original): served from the store.
    pub stored_artifacts: u64,
    /// Links in the store (most of them free: their original still exists).
    pub links: u64,
}

/// The last-served time of every artifact (milliseconds since the Unix epoch), persisted in [`SERVED_FILE`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct ServedLog {
    served_at_ms: HashMap<ArtifactId, u64>,
    /// Block bytes served per artifact, all time (kept with the times): the dashboard's "served most".
    #[serde(default)]
    bytes_served: HashMap<ArtifactId, u64>,
    #[serde(skip)]
    dirty: bool,
}

pub(crate) struct ArtifactStore {
    dir: PathBuf,
    served_path: PathBuf,
    served: Mutex<ServedLog>,
    /// The last reason a link could not be made (another filesystem, protected hard links), and how many failed.
    link_problem: Mutex<(Option<String>, u64)>,
    /// Artifacts evicted under the disk cap since start.
    evicted: AtomicU64,
    /// What the store cost at the last count, plus what moved in since: decides cheaply whether a pass is due.
    cost_estimate_bytes: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(unix)]
fn link_count(metadata: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    metadata.nlink()
}

#[cfg(not(unix))]
fn link_count(_metadata: &std::fs::Metadata) -> u64 {
    // No link count: count every store file as costing (never under-reports).
    1
}

impl ArtifactStore {
    /// The store in `data_dir` (the dir itself is made on the first link); loads the last-served times.
    pub(crate) fn open(data_dir: &Path) -> ArtifactStore {
        let served_path = data_dir.join(SERVED_FILE);
        let served = match std::fs::read(&served_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %served_path.display(), %err, "unreadable last-served times; starting afresh");
                ServedLog::default()
            }),
            Err(_) => ServedLog::default(),
        };
        ArtifactStore {
            dir: data_dir.join(STORE_DIR),
            served_path,
            served: Mutex::new(served),
            link_problem: Mutex::new((None, 0)),
            evicted: AtomicU64::new(0),
            cost_estimate_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store file for an artifact with this root CID; `None` for a CID that is not a plain file name.
    pub(crate) fn entry_path(&self, root_cid: &str) -> Option<PathBuf> {
        let plain = !root_cid.is_empty() && root_cid.bytes().all(|b| b.is_ascii_alphanumeric());
        plain.then(|| self.dir.join(root_cid))
    }

    pub(crate) fn is_store_path(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
    }

    /// Records that a block of `block_bytes` of artifact `id` was just served.
    pub(crate) fn note_served(&self, id: ArtifactId, block_bytes: u64) {
        let mut served = self.served.lock().unwrap();
        served.served_at_ms.insert(id, now_ms());
        *served.bytes_served.entry(id).or_default() += block_bytes;
        served.dirty = true;
    }

    /// The `limit` artifacts with the most block bytes served, most first: (id, bytes).
    pub(crate) fn most_served(&self, limit: usize) -> Vec<(ArtifactId, u64)> {
        let served = self.served.lock().unwrap();
        let mut ranked: Vec<(ArtifactId, u64)> = served
            .bytes_served
            .iter()
            .map(|(id, bytes)| (*id, *bytes))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }

    /// When artifact `id` was last served (ms since the epoch), 0 = never.
    pub(crate) fn last_served_ms(&self, id: ArtifactId) -> u64 {
        let served = self.served.lock().unwrap();
        served.served_at_ms.get(&id).copied().unwrap_or(0)
    }

    /// Writes the last-served times if they changed, keeping only artifacts in `live` when given.
    pub(crate) fn save_served(&self, live: Option<&HashSet<ArtifactId>>) {
        let text = {
            let mut served = self.served.lock().unwrap();
            if let Some(live) = live {
                let before = served.served_at_ms.len();
                served.served_at_ms.retain(|id, _| live.contains(id));
                served.bytes_served.retain(|id, _| live.contains(id));
                served.dirty |= served.served_at_ms.len() != before;
            }
            if !served.dirty {
                return;
            }
            served.dirty = false;
            serde_json::to_vec(&*served).unwrap_or_default()
        };
        if let Err(err) = crate::fs_util::write_atomically(&self.served_path, &text) {
            tracing::warn!(%err, "cannot save the last-served times");
            self.served.lock().unwrap().dirty = true;
        }
    }

    /// What the store holds and costs now: one stat per store file, no index read (status asks often).
    pub(crate) fn usage(&self) -> StoreUsage {
        let mut usage = StoreUsage::default();
        for (_, metadata) in self.files() {
            usage.links += 1;
            if link_count(&metadata) == 1 {
                usage.cost_bytes += metadata.len();
                usage.stored_artifacts += 1;
            }
        }
        self.cost_estimate_bytes
            .store(usage.cost_bytes, Ordering::SeqCst);
        usage
    }

    /// Every regular file in the store with its metadata.
    fn files(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                metadata
                    .file_type()
                    .is_file()
                    .then(|| (entry.path(), metadata))
            })
            .collect()
    }

    pub(crate) fn link_problem(&self) -> (Option<String>, u64) {
        self.link_problem.lock().unwrap().clone()
    }

    pub(crate) fn evicted_count(&self) -> u64 {
        self.evicted.load(Ordering::SeqCst)
    }

    fn note_link_failure(&self, message: String) {
        let mut problem = self.link_problem.lock().unwrap();
        problem.1 += 1;
        if problem.0.as_deref() != Some(message.as_str()) {
            tracing::warn!("{message}");
            problem.0 = Some(message);
        }
    }
}

/// Why a hard link could not be made, in words for status and the log. No copy is ever made instead.
fn link_failure_message(store_dir: &Path, original: &Path, err: &std::io::Error) -> String {
    #[cfg(unix)]
    {
        if err.raw_os_error() == Some(libc::EXDEV) {
            return format!(
                "pkgseed's store ({}) is on another filesystem than {}: artifacts there are not kept when their \
                 package manager deletes them (pkgseed never copies them)",
                store_dir.display(),
                original.display()
            );
        }
        if err.raw_os_error() == Some(libc::EPERM) {
            return format!(
                "the OS refuses a hard link to {} (fs.protected_hardlinks, or a filesystem without hard links): it \
                 is not kept when its package manager deletes it (pkgseed never copies it)",
                original.display()
            );
        }
    }
    format!(
        "cannot link {} into pkgseed's store {}: {err}; it is not kept when its package manager deletes it",
        original.display(),
        store_dir.display()
    )
}

fn enabled(shared: &Shared) -> bool {
    shared.config.lock().unwrap().limits.keep_evicted_artifacts
}

/// The store is on, or was on and still holds files to collect: a full scan must reconcile it with the index.
pub(crate) fn in_use(shared: &Shared) -> bool {
    enabled(shared) || !shared.artifact_store.files().is_empty()
}

/// Keeps a hard link to a just indexed (or confirmed) public artifact in the store. Never copies.
pub(crate) fn link(shared: &Shared, record: &ArtifactRecord) {
    let store = &shared.artifact_store;
    if !enabled(shared) || store.is_store_path(&record.path) {
        return;
    }
    let Some(entry) = store.entry_path(&record.root_cid) else {
        return;
    };
    if let Ok(existing) = std::fs::symlink_metadata(&entry) {
        if FileStamp::of(&existing).inode == record.inode {
            return;
        }
        match shared.index.artifact_by_path(&entry) {
            // The package manager has the same bytes again: serve its file, drop the store's copy.
            Ok(Some(stored)) => {
                crate::indexer::withdraw_record(
                    shared,
                    &stored,
                    "its package manager has it again",
                );
            }
            // A link to another original with the same bytes: it serves this one as well.
            Ok(None) if link_count(&existing) > 1 => return,
            Ok(None) => {}
            Err(err) => {
                tracing::error!(%err, "index");
                return;
            }
        }
        let _ = std::fs::remove_file(&entry);
    }
    if let Err(err) = crate::fs_util::create_private_dir(store.dir()) {
        store.note_link_failure(format!(
            "cannot create pkgseed's store {}: {err}",
            store.dir().display()
        ));
        return;
    }
    match std::fs::hard_link(&record.path, &entry) {
        Ok(()) => {
            // The path may have been replaced since it was hashed: keep the link only to the indexed file.
            let linked = std::fs::symlink_metadata(&entry).map(|m| FileStamp::of(&m));
            if linked.ok() != Some(record.stamp()) {
                let _ = std::fs::remove_file(&entry);
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => store.note_link_failure(link_failure_message(store.dir(), &record.path, &err)),
    }
}

/// The original of `record` is gone: when the store has its link, the artifact moves there and stays served (then
/// the disk cap is enforced). Returns false when it must be withdrawn instead.
pub(crate) fn keep(shared: &Shared, record: &ArtifactRecord) -> bool {
    let store = &shared.artifact_store;
    if !enabled(shared) || store.is_store_path(&record.path) {
        return false;
    }
    let Some(entry) = store.entry_path(&record.root_cid) else {
        return false;
    };
    let same_file = std::fs::symlink_metadata(&entry)
        .is_ok_and(|m| m.file_type().is_file() && FileStamp::of(&m) == record.stamp());
    if !same_file {
        return false;
    }
    match shared.index.move_artifact(record.id, &entry) {
        Ok(Some(_)) => {
            tracing::info!(path = %record.path.display(), name = %record.name, version = %record.version,
                "deleted by its package manager; kept in pkgseed's store");
            store
                .cost_estimate_bytes
                .fetch_add(record.size_bytes, Ordering::SeqCst);
            enforce_cap_if_over(shared);
            true
        }
        Ok(None) => false,
        Err(err) => {
            tracing::error!(path = %record.path.display(), %err, "cannot move to pkgseed's store");
            false
        }
    }
}

/// After `record` was withdrawn: removes its store file unless an artifact still needs it (one served from it, or
/// another original with the same bytes that it links to).
pub(crate) fn release(shared: &Shared, record: &ArtifactRecord) {
    let Some(entry) = shared.artifact_store.entry_path(&record.root_cid) else {
        return;
    };
    let Ok(metadata) = std::fs::symlink_metadata(&entry) else {
        return;
    };
    if matches!(shared.index.artifact_by_path(&entry), Ok(Some(_))) {
        return;
    }
    let still_held = record
        .root_cid
        .parse()
        .ok()
        .is_some_and(|cid| shared.index.has_block(&cid).unwrap_or(true));
    if still_held && link_count(&metadata) > 1 {
        return;
    }
    if let Err(err) = std::fs::remove_file(&entry) {
        tracing::warn!(path = %entry.display(), %err, "cannot remove from pkgseed's store");
    }
}

/// Which stored artifacts to evict so that `index_bytes` plus the rest of the store fits `cap_bytes`:
/// least recently served first, never served before served (oldest indexed first among them).
pub fn plan_eviction(stored: &[StoredArtifact], index_bytes: u64, cap_bytes: u64) -> Vec<u64> {
    evict_to_fit(stored, cap_bytes.saturating_sub(index_bytes))
}

/// Runs [`enforce_cap`] when the index and the store's estimated cost are over the cap (cheap otherwise: no dir
/// scan), after an artifact moved into the store or the index grew.
pub(crate) fn enforce_cap_if_over(shared: &Shared) {
    let cap = shared.config.lock().unwrap().limits.disk_bytes;
    if cap == 0 || !enabled(shared) {
        return;
    }
    let estimate = shared
        .artifact_store
        .cost_estimate_bytes
        .load(Ordering::SeqCst);
    if shared
        .index
        .disk_bytes()
        .unwrap_or(0)
        .saturating_add(estimate)
        > cap
    {
        enforce_cap(shared);
    }
}

/// The artifact a store file with one link serves: the one moved there, or one whose original was just deleted
/// and that the indexer has not moved yet (its record still names the original; same inode). Both are evictable.
fn owner(shared: &Shared, path: &Path, metadata: &std::fs::Metadata) -> Option<ArtifactRecord> {
    if let Ok(Some(record)) = shared.index.artifact_by_path(path) {
        return Some(record);
    }
    let root = path.file_name()?.to_str()?;
    let cid = root.parse().ok()?;
    let inode = FileStamp::of(metadata).inode;
    shared
        .index
        .artifacts_with_block(&cid)
        .ok()?
        .into_iter()
        .filter_map(|id| shared.index.artifact(id).ok().flatten())
        .find(|record| record.root_cid == root && record.inode == inode)
}

/// Evicts stored artifacts, least recently served first, until pkgseed's index and store fit the disk cap.
pub(crate) fn enforce_cap(shared: &Shared) {
    let cap = shared.config.lock().unwrap().limits.disk_bytes;
    if cap == 0 || !enabled(shared) {
        return;
    }
    let store = &shared.artifact_store;
    let mut stored = Vec::new();
    let mut records = HashMap::new();
    // Store files that cost disk but that no artifact owns (a crash's leftovers) are collected now.
    for (path, metadata) in store.files() {
        if link_count(&metadata) != 1 {
            continue;
        }
        match owner(shared, &path, &metadata) {
            Some(record) => {
                stored.push(StoredArtifact {
                    id: record.id,
                    size_bytes: metadata.len(),
                    last_served: store.last_served_ms(record.id),
                });
                records.insert(record.id, record);
            }
            None => {
                tracing::debug!(path = %path.display(), "collected from pkgseed's store");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let index_bytes = shared.index.disk_bytes().unwrap_or(0);
    let mut cost: u64 = stored.iter().map(|a| a.size_bytes).sum();
    for id in plan_eviction(&stored, index_bytes, cap) {
        if let Some(record) = records.get(&id) {
            tracing::info!(name = %record.name, version = %record.version,
                last_served_ms = store.last_served_ms(id), "evicted from pkgseed's store under the disk cap");
            crate::indexer::withdraw_record(shared, record, "evicted under the disk cap");
            store.evicted.fetch_add(1, Ordering::SeqCst);
            cost -= stored
                .iter()
                .find(|a| a.id == id)
                .map_or(0, |a| a.size_bytes);
        }
    }
    store.cost_estimate_bytes.store(cost, Ordering::SeqCst);
}

/// Brings store and index into agreement (at every full scan, so at startup and after a config change):
/// - store off: artifacts served from the store are withdrawn and the store is emptied;
/// - an artifact served from the store whose file is missing or changed is withdrawn; so is one whose origin is now
///   marked private (or seen private in the cache) or whose ecosystem is off;
/// - a store file no artifact has as its root is collected;
/// - then the disk cap is enforced and unused last-served times are dropped.
pub(crate) fn reconcile(shared: &Shared, records: &[ArtifactRecord]) {
    let store = &shared.artifact_store;
    let on = enabled(shared);
    let config = shared.config.lock().unwrap().clone();
    let private_in_cache: HashSet<String> = shared
        .found
        .lock()
        .unwrap()
        .values()
        .filter(|f| f.provenance != "public")
        .map(|f| f.origin.clone())
        .collect();
    let mut roots = HashSet::new();
    let mut live = HashSet::new();
    for record in records {
        if !store.is_store_path(&record.path) {
            roots.insert(record.root_cid.clone());
            live.insert(record.id);
            continue;
        }
        let file = std::fs::symlink_metadata(&record.path).ok();
        let reason = if !on {
            Some("pkgseed's store is off")
        } else if file
            .is_none_or(|m| !m.file_type().is_file() || FileStamp::of(&m) != record.stamp())
        {
            Some("missing from pkgseed's store")
        } else if config.origins.private.contains(&record.origin)
            || private_in_cache.contains(&record.origin)
        {
            Some("origin not public")
        } else if !config.ecosystem_enabled(&record.ecosystem) {
            Some("ecosystem turned off")
        } else {
            None
        };
        match reason {
            Some(reason) => crate::indexer::withdraw_record(shared, record, reason),
            None => {
                roots.insert(record.root_cid.clone());
                live.insert(record.id);
            }
        }
    }
    for (path, _) in store.files() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !on || !roots.contains(name) {
            tracing::debug!(path = %path.display(), "collected from pkgseed's store");
            let _ = std::fs::remove_file(&path);
        }
    }
    if on {
        enforce_cap(shared);
        store.usage();
    }
    store.save_served(Some(&live));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: u64, size_bytes: u64, last_served: u64) -> StoredArtifact {
        StoredArtifact {
            id,
            size_bytes,
            last_served,
        }
    }

    #[test]
    fn eviction_takes_least_recently_served_first_and_counts_the_index() {
        // 4, 2 and 6 were never served (evicted first, oldest indexed first); then 3 (served at 100), then 1 (200).
        let all = [
            stored(1, 100, 200),
            stored(2, 100, 0),
            stored(3, 100, 100),
            stored(4, 100, 0),
            stored(5, 100, 300),
            stored(6, 100, 0),
        ];
        // Cap 1000 with a 550-byte index leaves 450 for the store: 2 of 6 must go.
        assert_eq!(plan_eviction(&all, 550, 1000), vec![2, 4]);
        // A bigger index leaves less room: 250 → 4 go, the most recently served (1 and 5) stay.
        assert_eq!(plan_eviction(&all, 750, 1000), vec![2, 4, 6, 3]);
        // What stays always fits.
        for index in [0, 100, 333, 999] {
            let evicted = plan_eviction(&all, index, 1000);
            let kept: u64 = all
                .iter()
                .filter(|a| !evicted.contains(&a.id))
                .map(|a| a.size_bytes)
                .sum();
            assert!(index + kept <= 1000, "index {index}: kept {kept}");
        }
        // The index alone fills the cap: the whole store goes, still in order.
        assert_eq!(plan_eviction(&all, 1000, 1000), vec![2, 4, 6, 3, 1, 5]);
        assert_eq!(plan_eviction(&all, 5000, 1000).len(), 6);
        // Room for everything: nothing goes.
        assert!(plan_eviction(&all, 0, 600).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn usage_counts_only_files_whose_original_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let store = ArtifactStore::open(&data);
        std::fs::create_dir_all(store.dir()).unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        for (name, size) in [("a", 1000), ("b", 3000), ("c", 5000)] {
            let original = cache.join(name);
            std::fs::write(&original, vec![7u8; size]).unwrap();
            std::fs::hard_link(&original, store.entry_path(name).unwrap()).unwrap();
        }
        assert_eq!(
            store.usage(),
            StoreUsage {
                cost_bytes: 0,
                stored_artifacts: 0,
                links: 3
            },
            "links to existing originals are free"
        );
        std::fs::remove_file(cache.join("b")).unwrap();
        std::fs::remove_file(cache.join("c")).unwrap();
        assert_eq!(
            store.usage(),
            StoreUsage {
                cost_bytes: 8000,
                stored_artifacts: 2,
                links: 3
            }
        );
        assert_eq!(store.entry_path("../x"), None);
        assert!(store.is_store_path(&store.entry_path("a").unwrap()));
        assert!(!store.is_store_path(&cache.join("a")));
    }

    #[test]
    fn last_served_times_survive_a_restart_and_unknown_ids_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path());
        assert_eq!(store.last_served_ms(7), 0, "never served");
        store.note_served(7, 100);
        store.note_served(8, 100);
        let at = store.last_served_ms(7);
        assert!(at > 0);
        store.save_served(Some(&HashSet::from([7])));
        let again = ArtifactStore::open(dir.path());
        assert_eq!(again.last_served_ms(7), at);
        assert_eq!(again.last_served_ms(8), 0, "dropped: not live");
    }

    #[test]
    fn most_served_ranks_by_bytes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path());
        assert!(store.most_served(10).is_empty());
        store.note_served(1, 10);
        store.note_served(2, 300);
        store.note_served(3, 50);
        store.note_served(1, 500);
        assert_eq!(store.most_served(2), vec![(1, 510), (2, 300)]);
        store.save_served(Some(&HashSet::from([1, 3])));
        let again = ArtifactStore::open(dir.path());
        assert_eq!(
            again.most_served(10),
            vec![(1, 510), (3, 50)],
            "dropped: not live"
        );
    }
}
