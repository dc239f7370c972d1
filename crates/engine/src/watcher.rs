//! Watches the cache roots with notify and hands settled paths to the indexer. Events are debounced per path:
//! cargo writes a `.crate` in place, so a path is handed over once it has been quiet for [`QUIET_MS`].
//!
//! Roots come and go: `npm cache clean --force` deletes `_cacache`, `rm -rf ~/.gradle/caches` deletes Gradle's, and a
//! gem dir appears the first time a gem is installed. A root that does not exist is watched through its nearest
//! existing ancestor (one non-recursive watch), so the moment it is created it is watched and scanned; a watched
//! root that is deleted or moved away goes back to that state (its entries are withdrawn by the scan that follows).
//! Missing roots are also retried every [`MISSING_ROOT_RETRY_SECS`] as a backstop. When the OS refuses a watch
//! (inotify limits), that root falls back to periodic rescans, and an overflowed event queue queues a full scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Shared, Work};

/// How long a path must be quiet before it is indexed. Cargo writes a crate in a burst of writes; 150 ms of
/// silence is long after the last write of a burst and keeps "written → served" well under a second.
const QUIET_MS: u64 = 150;
/// Before the first scan, queued events are dropped until none has come for this long ([`drain_until_quiet`]).
const DRAIN_QUIET_MS: u64 = 200;
/// ... or for at most this long.
const DRAIN_MAX_MS: u64 = 5_000;
/// A missing root is also looked for this often (its ancestor watch normally reports it at once); no work at all
/// while every root is watched.
const MISSING_ROOT_RETRY_SECS: u64 = 30;
/// A root that could not be watched (inotify limits) is rescanned this often instead.
const UNWATCHABLE_RESCAN_SECS: u64 = 300;

/// What notify's thread hands the event loop.
#[derive(Debug)]
enum Seen {
    Event(EventKind, PathBuf),
    /// The kernel dropped events (inotify queue overflow): only a full scan is exact again.
    Overflow,
}

fn start_watcher(tx: mpsc::UnboundedSender<Seen>) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if event.need_rescan() {
            let _ = tx.send(Seen::Overflow);
        }
        if matches!(event.kind, EventKind::Access(AccessKind::Open(_))) {
            return;
        }
        for path in event.paths {
            let _ = tx.send(Seen::Event(event.kind, path));
        }
    })
}

/// What one event means for the roots.
#[derive(Debug, Default, PartialEq, Eq)]
struct Classified {
    /// A root was armed or lost: a full scan indexes what it holds (or withdraws what it held).
    scan: bool,
    /// The path is under a watched root: debounce it and hand it to the indexer.
    under_root: bool,
}

/// The watches on the roots: recursive on each root that exists, non-recursive on the nearest existing ancestor of
/// each root that does not.
struct RootWatches<W: Watcher> {
    watcher: W,
    roots: Vec<PathBuf>,
    watched: Vec<PathBuf>,
    /// Roots not watched: missing, or refused by the OS.
    unwatched: Vec<PathBuf>,
    /// Non-recursive watches standing in for missing roots.
    ancestors: Vec<PathBuf>,
    /// Some existing root could not be watched (inotify limits): rescan periodically.
    unwatchable: bool,
}

impl<W: Watcher> RootWatches<W> {
    fn new(watcher: W) -> RootWatches<W> {
        RootWatches {
            watcher,
            roots: Vec::new(),
            watched: Vec::new(),
            unwatched: Vec::new(),
            ancestors: Vec::new(),
            unwatchable: false,
        }
    }

    /// Watches `roots` and drops the watches of roots no source has any more. True when a root was newly armed.
    fn set_roots(&mut self, roots: Vec<PathBuf>) -> bool {
        for root in self.watched.iter().filter(|root| !roots.contains(root)) {
            let _ = self.watcher.unwatch(root);
        }
        self.watched.retain(|root| roots.contains(root));
        self.unwatched = roots
            .iter()
            .filter(|root| !self.watched.contains(root))
            .cloned()
            .collect();
        self.roots = roots;
        self.arm_unwatched()
    }

    /// Tries every unwatched root again and re-targets the ancestor watches. True when a root was newly armed.
    fn arm_unwatched(&mut self) -> bool {
        let mut armed = false;
        self.unwatchable = false;
        let mut wanted_ancestors: Vec<PathBuf> = Vec::new();
        for root in std::mem::take(&mut self.unwatched) {
            // Bounded: each round either arms the root or finds an existing ancestor one level deeper.
            let mut outcome = None;
            for _ in 0..=root.components().count() {
                match self.watcher.watch(&root, RecursiveMode::Recursive) {
                    Ok(()) => {
                        tracing::info!(root = %root.display(), "watching");
                        outcome = Some(true);
                        break;
                    }
                    Err(err) if root.is_dir() => {
                        tracing::warn!(root = %root.display(), %err, "cannot watch; rescanning periodically");
                        self.unwatchable = true;
                        outcome = Some(false);
                        break;
                    }
                    Err(_) => {}
                }
                let Some(ancestor) = nearest_existing_ancestor(&root) else {
                    break;
                };
                let standing_in = self.watches_ancestor(&ancestor);
                // Created between the failed watch and the ancestor watch: try the root again.
                if next_component(&ancestor, &root).exists() {
                    continue;
                }
                if standing_in && !wanted_ancestors.contains(&ancestor) {
                    wanted_ancestors.push(ancestor);
                }
                break;
            }
            if outcome == Some(true) {
                armed = true;
                self.watched.push(root);
            } else {
                self.unwatched.push(root);
            }
        }
        self.retarget_ancestors(wanted_ancestors);
        armed
    }

    /// Adds a non-recursive watch on `ancestor` unless a watched root already covers it (recursive watches see
    /// creations below them). True when `ancestor` is watched either way.
    fn watches_ancestor(&mut self, ancestor: &Path) -> bool {
        if self.watched.iter().any(|root| ancestor.starts_with(root))
            || self.ancestors.iter().any(|a| a == ancestor)
        {
            return true;
        }
        match self.watcher.watch(ancestor, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.ancestors.push(ancestor.to_path_buf());
                true
            }
            Err(err) => {
                tracing::debug!(dir = %ancestor.display(), %err, "cannot watch a missing root's parent");
                false
            }
        }
    }

    fn retarget_ancestors(&mut self, wanted: Vec<PathBuf>) {
        let covered =
            |a: &Path, watched: &[PathBuf]| watched.iter().any(|root| a.starts_with(root));
        let mut kept = Vec::new();
        for ancestor in std::mem::take(&mut self.ancestors) {
            if wanted.contains(&ancestor) && !covered(&ancestor, &self.watched) {
                kept.push(ancestor);
            } else if !covered(&ancestor, &self.watched) {
                let _ = self.watcher.unwatch(&ancestor);
            }
        }
        self.ancestors = kept;
        for ancestor in wanted {
            self.watches_ancestor(&ancestor);
        }
    }

    /// A watched root was deleted or moved away: its watch is gone (or follows the moved dir); watch for its return.
    fn lose_root(&mut self, root: &Path) {
        let _ = self.watcher.unwatch(root);
        self.watched.retain(|r| r != root);
        if !self.unwatched.iter().any(|r| r == root) {
            self.unwatched.push(root.to_path_buf());
        }
        tracing::info!(root = %root.display(), "cache root removed; watching for it to come back");
    }

    fn classify(&mut self, kind: EventKind, path: &Path) -> Classified {
        let mut out = Classified::default();
        let removed = matches!(
            kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        if removed {
            let lost: Vec<PathBuf> = self
                .watched
                .iter()
                .filter(|root| root.starts_with(path))
                .cloned()
                .collect();
            for root in &lost {
                self.lose_root(root);
            }
            out.scan |= !lost.is_empty();
        }
        let on_the_way = self.unwatched.iter().any(|root| root.starts_with(path));
        if on_the_way || out.scan {
            out.scan |= self.arm_unwatched();
        }
        out.under_root = self.watched.iter().any(|root| path.starts_with(root));
        out
    }

    /// The roots that exist but could not be watched (shown in status).
    fn rescan_only_roots(&self) -> Vec<String> {
        self.unwatched
            .iter()
            .filter(|r| r.is_dir())
            .map(|r| r.display().to_string())
            .collect()
    }
}

/// The nearest ancestor of `root` that is an existing directory.
fn nearest_existing_ancestor(root: &Path) -> Option<PathBuf> {
    root.ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .map(Path::to_path_buf)
}

/// The child of `ancestor` on the way down to `root`.
fn next_component(ancestor: &Path, root: &Path) -> PathBuf {
    match root
        .strip_prefix(ancestor)
        .ok()
        .and_then(|rest| rest.components().next())
    {
        Some(first) => ancestor.join(first),
        None => root.to_path_buf(),
    }
}

/// Watches the sources' roots and turns file events into work. It also starts the engine's first scan, once the
/// roots are watched and the events that placing the watches caused are drained: a file written meanwhile is seen
/// by the scan or by its event. notify walks a recursive root to watch every directory (≈ 130k in a 100k-tarball
/// npm cache, seconds) and, with `IN_OPEN` in its kernel mask, each directory it opens queues an event that its
/// busy thread does not read: the kernel queue (16384 events) overflows. The scan that follows covers whatever was
/// lost, so that overflow is dropped instead of forcing a second full scan (seen at 100k npm artifacts: 26 s of
/// CPU right after the first scan). The scan starting after the watches also keeps its own opens from piling up
/// behind notify's walk.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let (event_tx, mut event_rx) = mpsc::unbounded_channel::<Seen>();
    let watcher = match start_watcher(event_tx) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(%err, "cannot start the file watcher; falling back to periodic rescans");
            let _ = shared.work.send(Work::Scan);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(Duration::from_secs(UNWATCHABLE_RESCAN_SECS)) => {
                        let _ = shared.work.send(Work::Scan);
                    }
                }
            }
        }
    };
    let mut watches = RootWatches::new(watcher);
    let roots_of = |shared: &Shared| -> Vec<PathBuf> {
        shared
            .sources()
            .iter()
            .flat_map(|s| s.watch_roots())
            .collect()
    };
    watches.set_roots(roots_of(&shared));
    publish_fallback(&shared, &watches);
    drain_until_quiet(&mut event_rx).await;
    let _ = shared.work.send(Work::Scan);

    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let quiet = Duration::from_millis(QUIET_MS);
    let mut retry_at = Instant::now() + Duration::from_secs(MISSING_ROOT_RETRY_SECS);
    let mut rescan_at = Instant::now() + Duration::from_secs(UNWATCHABLE_RESCAN_SECS);
    loop {
        // Sleep until the earliest pending path settles, or the next root retry; nothing else wakes us at idle.
        let mut wake = if watches.unwatched.is_empty() {
            None
        } else {
            Some(retry_at)
        };
        if watches.unwatchable {
            wake = Some(wake.map_or(rescan_at, |w| w.min(rescan_at)));
        }
        if let Some(earliest) = pending.values().min() {
            let settle = *earliest + quiet;
            wake = Some(wake.map_or(settle, |w| w.min(settle)));
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = shared.roots_changed.notified() => {
                watches.set_roots(roots_of(&shared));
                publish_fallback(&shared, &watches);
                continue;
            }
            seen = event_rx.recv() => match seen {
                Some(Seen::Event(kind, path)) => {
                    let classified = watches.classify(kind, &path);
                    if classified.scan {
                        publish_fallback(&shared, &watches);
                        let _ = shared.work.send(Work::Scan);
                    }
                    if classified.under_root {
                        pending.insert(path, Instant::now());
                    }
                }
                Some(Seen::Overflow) => {
                    tracing::warn!("file events were lost (queue overflow); rescanning");
                    let _ = shared.work.send(Work::Scan);
                }
                None => return,
            },
            _ = sleep => {}
        }
        let now = Instant::now();
        let settled: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, last)| now.duration_since(**last) >= quiet)
            .map(|(p, _)| p.clone())
            .collect();
        for path in settled {
            pending.remove(&path);
            if path.is_dir() && new_dir_needs_scan(&shared, &path) {
                // A new dir (a new registry's cache dir): the files in it may predate the watch.
                let _ = shared.work.send(Work::Scan);
            } else {
                let _ = shared.work.send(Work::Path(path));
            }
        }
        if !watches.unwatched.is_empty() && now >= retry_at {
            if watches.arm_unwatched() {
                let _ = shared.work.send(Work::Scan);
            }
            publish_fallback(&shared, &watches);
            retry_at = now + Duration::from_secs(MISSING_ROOT_RETRY_SECS);
        }
        if watches.unwatchable && now >= rescan_at {
            let _ = shared.work.send(Work::Scan);
            rescan_at = now + Duration::from_secs(UNWATCHABLE_RESCAN_SECS);
        }
    }
}

/// Whether the sources watching `dir` want every root scanned for it (a source may know a new directory of its
/// own holds nothing cached: npm's git clones in `_cacache/tmp`).
fn new_dir_needs_scan(shared: &Shared, dir: &Path) -> bool {
    shared
        .sources()
        .iter()
        .filter(|source| {
            source
                .watch_roots()
                .iter()
                .any(|root| dir.starts_with(root))
        })
        .all(|source| source.new_dir_needs_scan(dir))
}

/// Drops the events already queued, until none has come for [`DRAIN_QUIET_MS`] (at most [`DRAIN_MAX_MS`]): what
/// placing the watches caused, before a scan that covers it.
async fn drain_until_quiet(event_rx: &mut mpsc::UnboundedReceiver<Seen>) {
    let started = Instant::now();
    let mut dropped = 0u64;
    let mut overflowed = false;
    while started.elapsed() < Duration::from_millis(DRAIN_MAX_MS) {
        match tokio::time::timeout(Duration::from_millis(DRAIN_QUIET_MS), event_rx.recv()).await {
            Ok(Some(Seen::Overflow)) => overflowed = true,
            Ok(Some(Seen::Event(..))) => dropped += 1,
            Ok(None) | Err(_) => break,
        }
    }
    if dropped > 0 || overflowed {
        tracing::debug!(
            dropped,
            overflowed,
            "events from placing the watches dropped; the first scan covers them"
        );
    }
}

fn publish_fallback<W: Watcher>(shared: &Shared, watches: &RootWatches<W>) {
    *shared.rescan_only_roots.lock().unwrap() = watches.rescan_only_roots();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds every event to `watches` until `done` holds or 10 s pass; returns whether a scan was asked for and the
    /// paths reported under a root.
    fn pump<W: Watcher>(
        watches: &mut RootWatches<W>,
        rx: &mut mpsc::UnboundedReceiver<Seen>,
        done: impl Fn(&RootWatches<W>, bool, &[PathBuf]) -> bool,
    ) -> (bool, Vec<PathBuf>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut scan, mut under) = (false, Vec::new());
        while !done(watches, scan, &under) {
            assert!(
                Instant::now() < deadline,
                "timed out: watched {:?}, unwatched {:?}, ancestors {:?}, scan {scan}, under {under:?}",
                watches.watched,
                watches.unwatched,
                watches.ancestors
            );
            match rx.try_recv() {
                Ok(Seen::Event(kind, path)) => {
                    let c = watches.classify(kind, &path);
                    scan |= c.scan;
                    if c.under_root {
                        under.push(path);
                    }
                }
                Ok(Seen::Overflow) => scan = true,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        (scan, under)
    }

    #[test]
    fn missing_root_is_armed_when_created_and_rearmed_after_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("home/.npm/_cacache");
        let other = base.join("other-root");
        std::fs::create_dir_all(&other).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watches = RootWatches::new(start_watcher(tx).unwrap());

        assert!(
            watches.set_roots(vec![root.clone(), other.clone()]),
            "the existing root is armed"
        );
        assert_eq!(watches.watched, vec![other.clone()]);
        assert_eq!(watches.unwatched, vec![root.clone()]);
        assert_eq!(
            watches.ancestors,
            vec![base.clone()],
            "nearest existing ancestor"
        );
        assert!(
            watches.rescan_only_roots().is_empty(),
            "missing is not refused"
        );

        // Created in steps (like a client's `mkdir -p`): the ancestor watch follows it down, then the root is armed.
        std::fs::create_dir_all(&root).unwrap();
        let (scan, _) = pump(&mut watches, &mut rx, |w, _, _| w.unwatched.is_empty());
        assert!(scan, "arming a root asks for a scan");
        assert!(watches.ancestors.is_empty(), "{:?}", watches.ancestors);
        let file = root.join("index-v5");
        std::fs::write(&file, b"x").unwrap();
        let (_, under) = pump(&mut watches, &mut rx, |_, _, u| u.contains(&file));
        assert!(under.contains(&file));

        // `npm cache clean --force`: the root is deleted; its parent stands in for it.
        std::fs::remove_dir_all(&root).unwrap();
        let (scan, _) = pump(&mut watches, &mut rx, |w, _, _| !w.watched.contains(&root));
        assert!(scan, "losing a root asks for a scan (withdrawals)");
        assert_eq!(watches.unwatched, vec![root.clone()]);
        assert_eq!(watches.ancestors, vec![base.join("home/.npm")]);

        // Recreated: watched again, and new files in it are reported.
        std::fs::create_dir_all(root.join("content-v2")).unwrap();
        let (scan, _) = pump(&mut watches, &mut rx, |w, _, _| w.watched.contains(&root));
        assert!(scan);
        let file = root.join("content-v2/blob");
        std::fs::write(&file, b"y").unwrap();
        let (_, under) = pump(&mut watches, &mut rx, |_, _, u| u.contains(&file));
        assert!(under.contains(&file));

        // Moved away: the watch would follow the moved dir, so the root counts as gone.
        std::fs::rename(&root, base.join("home/.npm/_cacache.old")).unwrap();
        pump(&mut watches, &mut rx, |w, _, _| !w.watched.contains(&root));
        assert_eq!(watches.unwatched, vec![root.clone()]);
        // Events from the stand-in watch that are not on the way to a root are not handed over.
        assert_eq!(
            watches.classify(
                EventKind::Create(notify::event::CreateKind::File),
                &base.join("home/.npm/unrelated")
            ),
            Classified::default()
        );
        // The other root was never disturbed.
        assert_eq!(watches.watched, vec![other.clone()]);
        // Dropping a root from the set drops its stand-in watch too.
        assert!(!watches.set_roots(vec![other.clone()]));
        assert!(watches.ancestors.is_empty() && watches.unwatched.is_empty());
    }

    #[test]
    fn next_component_and_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("a/b/c");
        assert_eq!(nearest_existing_ancestor(&root), Some(base.clone()));
        assert_eq!(next_component(&base, &root), base.join("a"));
        assert_eq!(next_component(&root, &root), root);
    }
}
