//! The scan's write batch: during a scan, indexed artifacts are written to the index several per transaction (one
//! redb commit was most of the engine's per-artifact cost). A batch is written when it holds
//! [`BATCH_MAX_ARTIFACTS`] artifacts or [`BATCH_MAX_HASHED_BYTES`] hashed bytes, or is [`BATCH_MAX_AGE`] old, so an
//! artifact is served and queued for announcement soon after it was hashed, and a crash re-hashes at most one
//! batch. Between scans every artifact is written on its own, at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pkgseed_index::ArtifactRecord;
use pkgseed_unixfs::PlannedBlock;

pub const BATCH_MAX_ARTIFACTS: usize = 16;
pub(crate) const BATCH_MAX_HASHED_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const BATCH_MAX_AGE: Duration = Duration::from_millis(250);

/// An artifact hashed and checked, waiting for its batch to be written.
pub(crate) struct PendingArtifact {
    pub record: ArtifactRecord,
    pub blocks: Vec<PlannedBlock>,
}

#[derive(Default)]
pub(crate) struct WriteBatch {
    state: Mutex<BatchState>,
    /// Held while a taken batch is written, so a second writer waits for the first.
    writing: Mutex<()>,
}

#[derive(Default)]
struct BatchState {
    enabled: bool,
    entries: Vec<PendingArtifact>,
    /// Paths of the pending entries and of the batch being written.
    paths: HashSet<PathBuf>,
    /// Entries taken and not yet reported written.
    in_flight: usize,
    hashed_bytes: u64,
    /// When the oldest entry was added.
    oldest: Option<Instant>,
}

impl WriteBatch {
    /// On while a scan runs. Turning it off does not write what is pending: take it first.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.state.lock().unwrap().enabled = enabled;
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.state.lock().unwrap().enabled
    }

    /// Adds an artifact; `true` when the batch is full and should be written now.
    pub(crate) fn add(&self, artifact: PendingArtifact, hashed_bytes: u64, now: Instant) -> bool {
        let mut st = self.state.lock().unwrap();
        st.paths.insert(artifact.record.path.clone());
        st.entries.push(artifact);
        st.hashed_bytes += hashed_bytes;
        st.oldest.get_or_insert(now);
        st.entries.len() >= BATCH_MAX_ARTIFACTS || st.hashed_bytes >= BATCH_MAX_HASHED_BYTES
    }

    /// Whether an artifact at `path` waits in the batch or is being written (write the batch before looking at
    /// the path again: the index does not show it yet).
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.state.lock().unwrap().paths.contains(path)
    }

    /// Artifacts not in the index yet: pending, and being written.
    pub(crate) fn len(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.entries.len() + st.in_flight
    }

    /// Serialises writers: hold it from [`WriteBatch::take`] to [`WriteBatch::written`].
    pub(crate) fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap()
    }

    /// When the batch must be written at the latest; `None` when it is empty.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .oldest
            .map(|at| at + BATCH_MAX_AGE)
    }

    /// Empties the batch, returning what it held in the order it was added; its paths count as being written until
    /// [`WriteBatch::written`].
    pub(crate) fn take(&self) -> Vec<PendingArtifact> {
        let mut st = self.state.lock().unwrap();
        st.hashed_bytes = 0;
        st.oldest = None;
        let taken = std::mem::take(&mut st.entries);
        st.in_flight += taken.len();
        taken
    }

    /// A taken batch is in the index now (or failed for good).
    pub(crate) fn written(&self, paths: &[PathBuf]) {
        let mut st = self.state.lock().unwrap();
        for path in paths {
            st.paths.remove(path);
        }
        st.in_flight = st.in_flight.saturating_sub(paths.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str) -> PendingArtifact {
        PendingArtifact {
            record: ArtifactRecord {
                id: 0,
                ecosystem: "cargo".into(),
                name: name.into(),
                version: "1.0.0".into(),
                origin: "o".into(),
                path: PathBuf::from(format!("/cache/{name}.crate")),
                size_bytes: 1,
                mtime_ns: 0,
                inode: 0,
                root_cid: "r".into(),
                profile: "unixfs-v1-2025".into(),
                checksum_cid: None,
                registry_checksum: "sha256:00".into(),
                content_range: None,
            },
            blocks: Vec::new(),
        }
    }

    #[test]
    fn a_batch_is_full_by_count_or_bytes_and_due_by_age() {
        let batch = WriteBatch::default();
        let start = Instant::now();
        assert_eq!(batch.deadline(), None);
        for n in 0..BATCH_MAX_ARTIFACTS - 1 {
            assert!(!batch.add(
                pending(&format!("a{n}")),
                10,
                start + Duration::from_millis(n as u64)
            ));
        }
        assert_eq!(
            batch.deadline(),
            Some(start + BATCH_MAX_AGE),
            "the oldest entry sets it"
        );
        assert!(batch.contains(Path::new("/cache/a7.crate")));
        assert!(batch.add(pending("last"), 10, start), "full by count");
        let taken = batch.take();
        assert_eq!(taken.len(), BATCH_MAX_ARTIFACTS);
        assert_eq!(taken[0].record.name, "a0");
        assert_eq!(batch.deadline(), None);
        assert_eq!(batch.len(), BATCH_MAX_ARTIFACTS, "still not in the index");
        assert!(
            batch.contains(Path::new("/cache/a7.crate")),
            "still being written"
        );
        let paths: Vec<PathBuf> = taken.iter().map(|p| p.record.path.clone()).collect();
        batch.written(&paths);
        assert_eq!(batch.len(), 0);
        assert!(!batch.contains(Path::new("/cache/a7.crate")));
        assert!(!batch.add(pending("big"), BATCH_MAX_HASHED_BYTES - 1, start));
        assert!(batch.add(pending("bigger"), 1, start), "full by bytes");
    }
}
