//! What happens to one path: ask its source what it is, apply the provenance gate, and for a public artifact read
//! it ONCE to get both the registry checksum check and the UnixFS DAG, then record its block map in the index and
//! queue its root and checksum CIDs for announcement. Also full scans and withdrawals. An artifact that is a byte
//! range of its file (pip's pre-23.3 inline bodies) is read, hashed and recorded as that range only. A path that
//! breaks the confinement rules (docs/reliability.md) is refused before any source or hash reads it, and the reason
//! is logged once per path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use pkgseed_index::{ArtifactId, ArtifactRecord, ContentRange, FileStamp};
use pkgseed_sources::{
    ArtifactIdentity, ByteRange, CacheSource, ChecksumAlgo, NotAnArtifact, Provenance,
};
use pkgseed_unixfs::{BlockKind, DigestAlgo, PlannedBlock, MAX_BLOCK_BYTES};

use crate::engine::{announced_cids, Shared};
use crate::found::FoundFile;
use crate::status::EngineEvent;
use crate::write_batch::PendingArtifact;

/// What processing one path did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Indexed and queued for announcement; `hashed_bytes` is 0 when the index already had it unchanged.
    Seeded { hashed_bytes: u64 },
    /// Recognised but not seeded (private, unknown, partial, corrupt, changed while read).
    NotSeeded(String),
    /// Refused by the confinement rules (outside the cache root, not a regular file, a hard link pkgseed does not
    /// account for, an enormous sparse file): not read at all.
    Refused(String),
    /// Not a path any source knows.
    Ignored,
    /// The file is gone.
    Gone,
}

/// Confinement refusals already logged, per path with its reason: each is logged once at warn (a rescan or another
/// event on the same path logs nothing new), again only when the reason changes; forgotten when the path is looked
/// at and not refused.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog(Mutex<HashMap<PathBuf, String>>);

impl RefusalLog {
    fn note(&self, path: &Path, reason: &str) {
        let mut logged = self.0.lock().unwrap();
        if logged.get(path).map(String::as_str) != Some(reason) {
            tracing::warn!(path = %path.display(), %reason, "refused: not read, not seeded");
            logged.insert(path.to_path_buf(), reason.to_string());
        }
    }

    fn forget(&self, path: &Path) {
        self.0.lock().unwrap().remove(path);
    }
}

pub(crate) fn process_path(shared: &Shared, path: &Path) -> Outcome {
    let outcome = look_at_path(shared, path);
    if !matches!(outcome, Outcome::Refused(_)) {
        shared.refusals.forget(path);
    }
    outcome
}

/// Refuses `path` for confinement: withdrawn if it was indexed, logged once.
fn refuse(shared: &Shared, path: &Path, reason: String) -> Outcome {
    shared.found.lock().unwrap().remove(path);
    withdraw_path(shared, path, &reason);
    shared.refusals.note(path, &reason);
    Outcome::Refused(reason)
}

/// pkgseed's own hard link to the file at `path`, if it keeps one: the store entry of the artifact indexed there.
fn own_link(shared: &Shared, path: &Path) -> Option<PathBuf> {
    let record = shared.index.artifact_by_path(path).ok()??;
    shared.artifact_store.entry_path(&record.root_cid)
}

fn look_at_path(shared: &Shared, path: &Path) -> Outcome {
    let sources = shared.sources();
    let Some(source) = sources.iter().find(|s| s.is_candidate(path)) else {
        // A sidecar some clients write after the artifact (NuGet's .nupkg.metadata, conda's repodata_record.json,
        // npm's tmp files and index): the artifacts it concerns are looked at again, and the source may ask to be
        // handed the path again later (npm spaces its looks at index-v5).
        for source in sources.iter() {
            for artifact in source.artifacts_for_sidecar(path) {
                let _ = shared.work.send(crate::engine::Work::Path(artifact));
            }
            if let Some(after) = source.look_again_in(path) {
                let at = std::time::Instant::now() + after;
                let _ = shared
                    .work
                    .send(crate::engine::Work::PathAt(path.to_path_buf(), at));
            }
        }
        return Outcome::Ignored;
    };
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return gone(shared, path),
        Err(err) => {
            withdraw_path(shared, path, "unreadable");
            return Outcome::NotSeeded(format!("cannot stat: {err}"));
        }
        // Before any source reads it (some read the artifact to describe it) and before it is hashed.
        Ok(metadata) => {
            if let Err(reason) =
                pkgseed_unixfs::check_confined(&metadata, || own_link(shared, path))
            {
                return refuse(shared, path, reason.to_string());
            }
        }
    }
    let (identity, range) = match source.describe_in_file(path) {
        Ok(described) => described,
        Err(reason @ NotAnArtifact::Confinement(_)) => {
            return refuse(shared, path, reason.to_string());
        }
        Err(_) if is_deleted(path) => return gone(shared, path),
        Err(reason) => {
            shared.found.lock().unwrap().remove(path);
            withdraw_path(shared, path, &reason.to_string());
            tracing::debug!(path = %path.display(), %reason, "not an artifact");
            return Outcome::NotSeeded(reason.to_string());
        }
    };
    let (provenance, evidence) = match &identity.provenance {
        Provenance::Public { evidence } => ("public", evidence.clone()),
        Provenance::Private { reason } => ("private", reason.clone()),
        Provenance::Unknown { reason } => ("unknown", reason.clone()),
    };
    shared.found.lock().unwrap().insert(
        path,
        FoundFile {
            ecosystem: identity.ecosystem,
            origin: identity.origin.clone(),
            provenance,
            evidence,
        },
    );
    if provenance != "public" {
        withdraw_path(shared, path, "not public");
        return Outcome::NotSeeded(format!("origin {} is {provenance}", identity.origin));
    }
    match index_public_artifact(shared, source.as_ref(), path, &identity, range) {
        Ok(outcome) => outcome,
        Err(_) if is_deleted(path) => gone(shared, path),
        Err(reason) => {
            withdraw_path(shared, path, &reason);
            tracing::info!(path = %path.display(), %reason, "not seeded");
            Outcome::NotSeeded(reason)
        }
    }
}

/// The file at `path` was deleted: its artifact stays served from pkgseed's store when the store keeps it, else it
/// is withdrawn. Also when the deletion raced a look at the file (a cache clean during a scan): the failed read is
/// then the deletion, not an unreadable file.
fn gone(shared: &Shared, path: &Path) -> Outcome {
    shared.found.lock().unwrap().remove(path);
    if let Ok(Some(record)) = shared.index.artifact_by_path(path) {
        if !crate::artifact_store::keep(shared, &record) {
            withdraw_record(shared, &record, "deleted");
        }
    }
    Outcome::Gone
}

fn is_deleted(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(err) if err.kind() == std::io::ErrorKind::NotFound)
}

fn index_public_artifact(
    shared: &Shared,
    _source: &dyn CacheSource,
    path: &Path,
    identity: &ArtifactIdentity,
    range: Option<ByteRange>,
) -> Result<Outcome, String> {
    let checksum = identity
        .checksum
        .as_ref()
        .ok_or("no registry checksum recorded")?;
    let profile = shared.config.lock().unwrap().profile();
    let metadata = std::fs::symlink_metadata(path).map_err(|err| format!("cannot stat: {err}"))?;
    if !metadata.file_type().is_file() {
        return Err("not a regular file".into());
    }
    let stamp = FileStamp::of(&metadata);
    let content_range = range.map(|range| ContentRange {
        offset: range.offset,
        len: range.len,
    });
    let content_len = content_range.map_or(stamp.size_bytes, |range| range.len);
    let existing = shared
        .index
        .artifact_by_path(path)
        .map_err(|err| err.to_string())?;
    if let Some(record) = &existing {
        if record.stamp() == stamp
            && record.profile == profile.name()
            && record.origin == identity.origin
            && record.registry_checksum == checksum.to_prefixed_hex()
            && record.content_range == content_range
        {
            crate::artifact_store::link(shared, record);
            return Ok(Outcome::Seeded { hashed_bytes: 0 });
        }
    }
    // The disk cap: while the index is at the cap, new artifacts are not indexed (docs/limits.md).
    let disk_cap = shared.config.lock().unwrap().limits.disk_bytes;
    if disk_cap > 0 && existing.is_none() && shared.index.disk_bytes().unwrap_or(0) >= disk_cap {
        return Err(format!(
            "disk cap reached ({disk_cap} bytes for pkgseed's index)"
        ));
    }

    let extra = pkgseed_unixfs::ExtraDigests {
        sha512: checksum.algo == ChecksumAlgo::Sha512,
        sha1: checksum.algo == ChecksumAlgo::Sha1,
    };
    // Only the artifact's own bytes are hashed: the whole file, or its range (block offsets are then relative to it).
    let dag = match range {
        None => pkgseed_unixfs::dag_of_file_with(path, profile, extra),
        Some(range) => {
            pkgseed_unixfs::dag_of_file_range_with(path, range.offset, range.len, profile, extra)
        }
    }
    .map_err(|err| format!("cannot read: {err}"))?;
    shared.files_hashed.fetch_add(1, Ordering::SeqCst);
    tracing::debug!(path = %path.display(), bytes = dag.size_bytes, "hashed");
    let after = std::fs::symlink_metadata(path)
        .map(|m| FileStamp::of(&m))
        .ok();
    if after != Some(stamp) || dag.size_bytes != content_len {
        // Written to while we read it: the watcher will bring it back when it settles.
        return Err("changed while being read".into());
    }
    // `block_digest` keys the checksum CID. sha1 and Go's h1: are not usable as block hashes (DESIGN §2): those
    // artifacts are keyed by the sha256 computed in this read.
    let (digest_algo, block_digest): (DigestAlgo, &[u8]) = match checksum.algo {
        ChecksumAlgo::Sha256 | ChecksumAlgo::Sha1 | ChecksumAlgo::GoH1 => {
            (DigestAlgo::Sha256, &dag.sha256)
        }
        ChecksumAlgo::Sha512 => (
            DigestAlgo::Sha512,
            dag.sha512.as_ref().map(|d| &d[..]).unwrap_or(&[]),
        ),
    };
    let matches = match checksum.algo {
        ChecksumAlgo::Sha256 | ChecksumAlgo::Sha512 => block_digest == checksum.digest.as_slice(),
        ChecksumAlgo::Sha1 => dag
            .sha1
            .as_ref()
            .is_some_and(|d| d[..] == checksum.digest[..]),
        // A hash of the zip's contents, not its bytes: the source verified it in `describe` by reading the zip (a
        // documented exception to the one read). A file replaced since then is a new filesystem event, which
        // describes (and so verifies) it again.
        ChecksumAlgo::GoH1 => true,
    };
    if !matches {
        return Err("bytes do not match the registry checksum (partial or corrupt)".into());
    }

    let mut blocks: Vec<PlannedBlock> = dag.blocks.clone();
    let checksum_cid = if dag.size_bytes <= MAX_BLOCK_BYTES {
        let cid = pkgseed_unixfs::checksum_cid(digest_algo, block_digest)
            .map_err(|err| err.to_string())?;
        blocks.push(PlannedBlock {
            cid,
            kind: BlockKind::WholeFile(digest_algo),
            offset: 0,
            len: dag.size_bytes,
        });
        Some(cid.to_string())
    } else {
        None
    };
    let record = ArtifactRecord {
        id: 0,
        ecosystem: identity.ecosystem.to_string(),
        name: identity.name.clone(),
        version: identity.version.clone(),
        origin: identity.origin.clone(),
        path: path.to_path_buf(),
        size_bytes: stamp.size_bytes,
        mtime_ns: stamp.mtime_ns,
        inode: stamp.inode,
        root_cid: dag.root.to_string(),
        profile: profile.name().to_string(),
        checksum_cid,
        registry_checksum: checksum.to_prefixed_hex(),
        content_range,
    };
    if let Some(old) = &existing {
        withdraw_record(shared, old, "replaced");
    }
    if shared.write_batch.is_enabled() {
        // A scan: written with others in one transaction (crate::write_batch), then served and announced.
        let pending = PendingArtifact { record, blocks };
        if shared
            .write_batch
            .add(pending, dag.size_bytes, std::time::Instant::now())
        {
            write_batch(shared);
        }
    } else {
        let id = shared
            .index
            .put_artifact(record.clone(), &blocks)
            .map_err(|err| err.to_string())?;
        now_seeded(shared, ArtifactRecord { id, ..record });
    }
    Ok(Outcome::Seeded {
        hashed_bytes: dag.size_bytes,
    })
}

/// Writes the scan's pending artifacts in one transaction, then serves and announces them.
pub(crate) fn write_batch(shared: &Shared) {
    let _writing = shared.write_batch.lock_writes();
    let pending = shared.write_batch.take();
    if pending.is_empty() {
        return;
    }
    let count = pending.len();
    let paths: Vec<PathBuf> = pending.iter().map(|p| p.record.path.clone()).collect();
    let (records, batch): (Vec<ArtifactRecord>, Vec<_>) = pending
        .into_iter()
        .map(|p| (p.record.clone(), (p.record, p.blocks)))
        .unzip();
    match shared.index.put_artifacts(batch) {
        Ok(ids) => {
            for (record, id) in records.into_iter().zip(ids) {
                match id {
                    Ok(id) => now_seeded(shared, ArtifactRecord { id, ..record }),
                    Err(err) => {
                        tracing::warn!(path = %record.path.display(), %err, "not seeded")
                    }
                }
            }
            tracing::debug!(count, "index batch written");
        }
        Err(err) => {
            // Nothing of the batch was written; the next scan (or a change to the file) tries again.
            tracing::error!(%err, count, "cannot write an index batch");
        }
    }
    shared.write_batch.written(&paths);
}

/// An artifact just written to the index: linked into the store, announced, reported.
fn now_seeded(shared: &Shared, record: ArtifactRecord) {
    crate::artifact_store::link(shared, &record);
    crate::artifact_store::enforce_cap_if_over(shared);
    shared.node.announce(announced_cids(&record));
    shared.emit(EngineEvent::ArtifactSeeded {
        ecosystem: record.ecosystem.clone(),
        name: record.name.clone(),
        version: record.version.clone(),
        cid: record.root_cid.clone(),
    });
    tracing::info!(name = %record.name, version = %record.version, cid = %record.root_cid, "seeding");
}

/// Removes the artifact indexed at `path`, if any.
fn withdraw_path(shared: &Shared, path: &Path, reason: &str) {
    if let Ok(Some(record)) = shared.index.artifact_by_path(path) {
        withdraw_record(shared, &record, reason);
    }
}

pub(crate) fn withdraw_record(shared: &Shared, record: &ArtifactRecord, reason: &str) {
    if let Err(err) = shared.index.remove_artifact(record.id) {
        tracing::error!(path = %record.path.display(), %err, "cannot withdraw");
        return;
    }
    crate::artifact_store::release(shared, record);
    // A key another artifact still serves (the same file in two places) stays announced.
    let gone: Vec<_> = announced_cids(record)
        .into_iter()
        .filter(|cid| !shared.index.has_block(cid).unwrap_or(false))
        .collect();
    shared.node.withdraw(gone);
    tracing::info!(path = %record.path.display(), reason, "withdrawn");
    shared.emit(EngineEvent::ArtifactWithdrawn {
        path: record.path.display().to_string(),
        reason: reason.into(),
    });
}

/// A block read found the file changed: withdraw now, then look at the path again (it may still be an artifact).
pub(crate) fn withdraw_stale(shared: &Shared, id: ArtifactId) {
    let Ok(Some(record)) = shared.index.artifact(id) else {
        return;
    };
    withdraw_record(shared, &record, "changed on disk");
    let _ = shared
        .work
        .send(crate::engine::Work::Path(record.path.clone()));
}

/// Lists every candidate file under the enabled sources' roots and withdraws indexed artifacts that are gone.
pub(crate) fn scan_roots(shared: &Shared) -> Vec<PathBuf> {
    let mut found = Vec::new();
    *shared.unseedable.lock().unwrap() =
        pkgseed_sources::detect_unseedable_caches(&shared.source_env);
    for source in &shared.sources() {
        for root in source.roots() {
            walk(&root, source.as_ref(), &mut found);
        }
    }
    // Only the path table is read here; a record is decoded only for an artifact that is gone.
    let present: HashSet<&PathBuf> = found.iter().collect();
    for (path, id) in shared.index.indexed_paths().unwrap_or_default() {
        if present.contains(&path) || shared.artifact_store.is_store_path(&path) {
            continue;
        }
        if let Ok(Some(record)) = shared.index.artifact(id) {
            if !crate::artifact_store::keep(shared, &record) {
                withdraw_record(shared, &record, "no longer in the cache");
            }
        }
    }
    // Artifacts kept in pkgseed's store are checked there; the store and the index are made to agree. Every record
    // is read only when the store is on or still holds files.
    if crate::artifact_store::in_use(shared) {
        let records = shared.index.artifacts().unwrap_or_default();
        crate::artifact_store::reconcile(shared, &records);
    }
    found
}

/// Depth-first walk that never follows symlinks; unreadable dirs are logged and skipped.
fn walk(dir: &Path, source: &dyn CacheSource, found: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %err, "cannot read cache dir");
            }
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&path, source, found),
            Ok(_) if source.is_candidate(&path) => found.push(path),
            _ => {}
        }
    }
}
