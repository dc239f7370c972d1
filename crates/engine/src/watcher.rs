//! Watches the cache roots with notify and hands settled paths to the indexer. Events are debounced per path:
//! cargo writes a `.crate` in place, so a path is handed over once it has been quiet for [`QUIET_MS`]. A root that
//! does not exist yet is retried every [`MISSING_ROOT_RETRY_SECS`]; when the OS refuses a watch (inotify limits),
//! that root falls back to periodic rescans.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Shared, Work};

/// How long a path must be quiet before it is indexed. Cargo writes a crate in a burst of writes; 150 ms of
/// silence is long after the last write of a burst and keeps "written → served" well under a second.
const QUIET_MS: u64 = 150;
/// A missing root (cargo never ran yet) is looked for this often; no work at all while every root is watched.
const MISSING_ROOT_RETRY_SECS: u64 = 30;
/// A root that could not be watched (inotify limits) is rescanned this often instead.
const UNWATCHABLE_RESCAN_SECS: u64 = 300;

pub(crate) async fn run(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let (event_tx, mut event_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = match notify::recommended_watcher(
        move |result: notify::Result<notify::Event>| {
            if let Ok(event) = result {
                if matches!(
                    event.kind,
                    notify::EventKind::Access(notify::event::AccessKind::Open(_))
                ) {
                    return;
                }
                for path in event.paths {
                    let _ = event_tx.send(path);
                }
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(%err, "cannot start the file watcher; falling back to periodic rescans");
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

    let mut watched: Vec<PathBuf> = Vec::new();
    let mut unwatched: Vec<PathBuf> = Vec::new();
    let mut unwatchable = false;
    arm_watches(
        &shared,
        &mut watcher,
        &mut watched,
        &mut unwatched,
        &mut unwatchable,
    );

    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let quiet = Duration::from_millis(QUIET_MS);
    let mut retry_at = Instant::now() + Duration::from_secs(MISSING_ROOT_RETRY_SECS);
    let mut rescan_at = Instant::now() + Duration::from_secs(UNWATCHABLE_RESCAN_SECS);
    loop {
        // Sleep until the earliest pending path settles, or the next root retry; nothing else wakes us at idle.
        let mut wake = if unwatched.is_empty() {
            None
        } else {
            Some(retry_at)
        };
        if unwatchable {
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
                arm_watches(&shared, &mut watcher, &mut watched, &mut unwatched, &mut unwatchable);
                continue;
            }
            path = event_rx.recv() => match path {
                Some(path) => { pending.insert(path, Instant::now()); }
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
            if path.is_dir() {
                // A new dir (a new registry's cache dir): the files in it may predate the watch.
                let _ = shared.work.send(Work::Scan);
            } else {
                let _ = shared.work.send(Work::Path(path));
            }
        }
        if !unwatched.is_empty() && now >= retry_at {
            let before = unwatched.len();
            unwatched.retain(|root| {
                let armed = watcher.watch(root, RecursiveMode::Recursive).is_ok();
                if armed {
                    watched.push(root.clone());
                }
                !armed
            });
            if unwatched.len() < before {
                let _ = shared.work.send(Work::Scan);
            }
            retry_at = now + Duration::from_secs(MISSING_ROOT_RETRY_SECS);
        }
        if unwatchable && now >= rescan_at {
            let _ = shared.work.send(Work::Scan);
            rescan_at = now + Duration::from_secs(UNWATCHABLE_RESCAN_SECS);
        }
    }
}

/// Watches the current sources' roots and drops watches on roots no source has any more.
fn arm_watches(
    shared: &Shared,
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Vec<PathBuf>,
    unwatched: &mut Vec<PathBuf>,
    unwatchable: &mut bool,
) {
    let roots: Vec<PathBuf> = shared.sources().iter().flat_map(|s| s.roots()).collect();
    for root in watched.iter().filter(|root| !roots.contains(root)) {
        let _ = watcher.unwatch(root);
    }
    watched.retain(|root| roots.contains(root));
    unwatched.clear();
    *unwatchable = false;
    for root in roots {
        if watched.contains(&root) {
            continue;
        }
        match watcher.watch(&root, RecursiveMode::Recursive) {
            Ok(()) => {
                tracing::info!(root = %root.display(), "watching");
                watched.push(root);
            }
            Err(err) => {
                if root.exists() {
                    tracing::warn!(root = %root.display(), %err, "cannot watch; rescanning periodically");
                    *unwatchable = true;
                }
                unwatched.push(root);
            }
        }
    }
    let fallback: Vec<String> = unwatched
        .iter()
        .filter(|r| r.exists())
        .map(|r| r.display().to_string())
        .collect();
    *shared.rescan_only_roots.lock().unwrap() = fallback;
}
