//! The engine and its handle. One place wires the parts: the config, the cache sources, the index, the node and
//! the watcher. Index updates are serialised through one indexer task (it owns the work queue and runs each
//! file's blocking work off the async threads); everything else reads shared state.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use pkgseed_index::{ArtifactId, Index};
use pkgseed_node::{Cid, IdentityStorage, NetworkProfile, Node, NodeConfig};
use pkgseed_sources::{CacheSource, SourceEnv, UnseedableCache};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::Config;
use crate::dirs::EngineDirs;
use crate::found::FoundFiles;
use crate::indexer::{self, Outcome};
use crate::status::{
    ArtifactView, CacheStatus, EcosystemCounts, EngineEvent, OriginStatus, ScanProgress,
    ServedArtifact, Status,
};
use crate::{fs_util, watcher, EngineError};

/// How the engine is started. Overrides win over the config file (the CLI's flags).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub dirs: EngineDirs,
    pub network_override: Option<String>,
    pub listen_override: Vec<String>,
    /// The local gateway's `IP:port` instead of the config's (`--gateway-listen`); `""` turns it off.
    pub gateway_listen_override: Option<String>,
    /// The environment cache sources are found from (each package manager's own variables and the home dir).
    pub source_env: SourceEnv,
}

impl EngineOptions {
    pub fn from_env() -> Result<EngineOptions, EngineError> {
        Ok(EngineOptions {
            dirs: EngineDirs::from_env()?,
            network_override: None,
            listen_override: Vec::new(),
            gateway_listen_override: None,
            source_env: SourceEnv::from_process(),
        })
    }
}

/// Work for the indexer task.
#[derive(Debug)]
pub(crate) enum Work {
    /// A path an event or a scan found; it may be new, changed or gone.
    Path(PathBuf),
    /// A path to look at again, not before this time (its source asked: `CacheSource::look_again_in`). One per
    /// path is kept, the earliest.
    PathAt(PathBuf, std::time::Instant),
    /// A block read found this artifact's file changed: withdraw it, then look at the path again.
    Stale(ArtifactId),
    /// A full scan of every root.
    Scan,
    /// Marks the end of the paths queued by a scan.
    ScanDone { first: bool },
}

pub(crate) struct Shared {
    pub dirs: EngineDirs,
    pub config: Mutex<Config>,
    pub network: String,
    pub index: Arc<Index>,
    pub source_env: SourceEnv,
    pub sources: RwLock<Vec<Arc<dyn CacheSource>>>,
    /// Wakes the watcher to re-arm its watches after the set of sources changed.
    pub roots_changed: tokio::sync::Notify,
    pub unseedable: Mutex<Vec<UnseedableCache>>,
    /// Roots the OS refused to watch (inotify limits): rescanned periodically instead.
    pub rescan_only_roots: Mutex<Vec<String>>,
    /// Settings changed that only apply at the next start (network, listen addrs).
    pub restart_required: AtomicBool,
    pub node: Node,
    pub identity: IdentityStorage,
    /// The user's pause (the `paused` marker file); the node may also be paused for another reason, see `policy`.
    pub paused: AtomicBool,
    /// Caps in force, pause reasons, power state and the month's upload count (crate::limits).
    pub policy: Mutex<crate::limits::PolicyState>,
    pub clock: Arc<dyn crate::limits::Clock>,
    /// pkgseed's own store (hard links kept for artifacts their package manager deletes) and last-served times.
    pub artifact_store: Arc<crate::artifact_store::ArtifactStore>,
    pub files_hashed: AtomicU64,
    /// Artifacts of the running scan waiting to be written to the index together.
    pub write_batch: crate::write_batch::WriteBatch,
    pub first_scan_done: AtomicBool,
    pub scan: Mutex<ScanProgress>,
    pub found: Mutex<FoundFiles>,
    /// Paths refused for confinement, with the reason last logged (logged once per path and reason).
    pub refusals: indexer::RefusalLog,
    pub work: mpsc::UnboundedSender<Work>,
    pub events: broadcast::Sender<EngineEvent>,
}

impl Shared {
    /// The current sources (cheap: a vector of shared handles).
    pub(crate) fn sources(&self) -> Vec<Arc<dyn CacheSource>> {
        self.sources.read().unwrap().clone()
    }

    pub(crate) fn emit(&self, event: EngineEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }
}

/// The engine handle. Cheap to clone; every shell (CLI daemon, desktop app) drives the engine through it.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    gateway: Arc<crate::gateway::GatewayState>,
}

const PAUSE_STATE_FILE: &str = "paused";
/// The node's last-provided time per announced key (re-provides after a restart go by age).
const PROVIDE_HISTORY_FILE: &str = "provided";

impl Engine {
    /// Opens the index, starts the node, the indexer and the watcher, and queues the first scan.
    pub async fn start(options: EngineOptions) -> Result<Engine, EngineError> {
        let dirs = options.dirs.clone();
        fs_util::create_private_dir(&dirs.data_dir).map_err(|err| {
            EngineError::io(format!("cannot create {}: {err}", dirs.data_dir.display()))
        })?;
        std::fs::create_dir_all(&dirs.config_dir).map_err(|err| {
            EngineError::io(format!(
                "cannot create {}: {err}",
                dirs.config_dir.display()
            ))
        })?;
        let config = Config::load(&dirs.config_dir)?;
        let network = options
            .network_override
            .clone()
            .unwrap_or_else(|| config.network.clone());
        let network_profile = match network.as_str() {
            "public" => NetworkProfile::Public,
            "local" => NetworkProfile::Local,
            other => {
                return Err(EngineError::config(format!(
                    "unknown network {other:?}: use public or local"
                )))
            }
        };
        let listen_strings = if options.listen_override.is_empty() {
            config.listen_addrs.clone()
        } else {
            options.listen_override
        };
        let gateway_addr = crate::gateway::parse_gateway_listen_addr(
            options
                .gateway_listen_override
                .as_deref()
                .unwrap_or(&config.gateway_listen_addr),
        )
        .map_err(EngineError::config)?;
        let mut listen_addrs = Vec::new();
        for addr in &listen_strings {
            listen_addrs.push(addr.parse().map_err(|err| {
                EngineError::config(format!("--listen {addr:?} is not a multiaddr: {err}"))
            })?);
        }

        let index = Arc::new(Index::open(&dirs.index_path())?);
        let sources = crate::sources_from_config(&config, &options.source_env);
        let unseedable = pkgseed_sources::detect_unseedable_caches(&options.source_env);
        let (keypair, identity) = pkgseed_node::load_or_create_identity(&dirs.data_dir).await?;
        if let IdentityStorage::File { warning, .. } = &identity {
            tracing::warn!("{warning}");
        }

        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let artifact_store = Arc::new(crate::artifact_store::ArtifactStore::open(&dirs.data_dir));
        // Its links are the one kind of hard link a cache file may have besides its own name.
        let store_for_links = artifact_store.clone();
        index.account_own_links(move |root_cid| store_for_links.entry_path(root_cid));
        let store = Arc::new(crate::store::IndexBlockStore::new(
            index.clone(),
            work_tx.clone(),
            artifact_store.clone(),
        ));
        let node = Node::start(
            NodeConfig {
                network: network_profile,
                listen_addrs,
                keypair,
                key_book: Some(store.clone()),
            },
            store.clone(),
        )
        .await?;
        let paused = dirs.data_dir.join(PAUSE_STATE_FILE).exists();
        node.set_paused(paused);
        node.use_provide_history(dirs.data_dir.join(PROVIDE_HISTORY_FILE));
        let dirs_data_dir = dirs.data_dir.clone();

        let shared = Arc::new(Shared {
            dirs,
            config: Mutex::new(config),
            network,
            index,
            source_env: options.source_env,
            sources: RwLock::new(sources),
            roots_changed: tokio::sync::Notify::new(),
            unseedable: Mutex::new(unseedable),
            rescan_only_roots: Mutex::new(Vec::new()),
            restart_required: AtomicBool::new(false),
            node,
            identity,
            paused: AtomicBool::new(paused),
            policy: Mutex::new(crate::limits::PolicyState {
                month: crate::limits::MonthlyUsage::load(&dirs_data_dir),
                traffic: crate::traffic::TrafficTotals::load(&dirs_data_dir),
                ..Default::default()
            }),
            clock: Arc::new(crate::limits::SystemClock),
            artifact_store,
            files_hashed: AtomicU64::new(0),
            write_batch: Default::default(),
            first_scan_done: AtomicBool::new(false),
            scan: Mutex::new(ScanProgress::default()),
            found: Mutex::new(FoundFiles::default()),
            refusals: Default::default(),
            work: work_tx,
            events,
        });

        let (stop_tx, stop_rx) = oneshot::channel();
        let mut tasks = Vec::new();
        // Everything already indexed is served at once (blocks are read from the index on demand) and queued for
        // announcement off the start path; the scan then confirms it without rehashing.
        tasks.push(tokio::spawn(announce_indexed(shared.clone())));
        tasks.push(tokio::spawn(run_indexer(shared.clone(), work_rx)));
        tasks.push(tokio::spawn(watcher::run(shared.clone(), stop_rx)));
        // Caps, schedule, battery / metered and the monthly cap: applied now, then every tick.
        crate::limits::apply(&shared, shared.clock.now());
        tasks.push(tokio::spawn(crate::limits::run(
            shared.clone(),
            shared.clock.clone(),
        )));
        tasks.push(tokio::spawn(crate::limits::poll_power(
            shared.clone(),
            crate::power::system_monitor(),
        )));
        // The local gateway answers from the same store as bitswap. A port that is taken does not stop seeding.
        let gateway = Arc::new(crate::gateway::GatewayState::default());
        if let Some(addr) = gateway_addr {
            let node = shared.node.clone();
            let source = crate::gateway::GatewaySource {
                blocks: store,
                paused: Box::new(move || node.is_paused()),
            };
            match crate::gateway::start(addr, source, gateway.clone()).await {
                Ok((bound, task)) => {
                    tracing::info!(%bound, "local trustless gateway listening");
                    tasks.push(task);
                }
                Err(err) => {
                    tracing::warn!("the local gateway is off: {err}");
                    gateway.set_error(err);
                }
            }
        }
        // The first scan is started by the watcher once the roots are watched (crate::watcher::run).
        Ok(Engine {
            shared,
            stop: Arc::new(Mutex::new(Some(stop_tx))),
            tasks: Arc::new(Mutex::new(tasks)),
            gateway,
        })
    }

    pub async fn status(&self) -> Status {
        let shared = &self.shared;
        // Read before the counts: the first scan's artifacts are all in the index before the flag is set, so a
        // status saying it is done also counts all of them. (Read last, as it was, a scan finishing while this
        // ran gave `first_scan_done` with the counts of a few artifacts earlier: "997 of 1000" in a bench run.)
        let first_scan_done = shared.first_scan_done.load(Ordering::SeqCst);
        let node_stats = shared.node.stats().await;
        let ecosystems: BTreeMap<String, EcosystemCounts> = shared
            .index
            .count_by_ecosystem()
            .unwrap_or_default()
            .into_iter()
            .map(|(ecosystem, (artifacts, bytes))| {
                (ecosystem, EcosystemCounts { artifacts, bytes })
            })
            .collect();
        let mut origins: BTreeMap<(String, String), OriginStatus> = BTreeMap::new();
        for found in shared.found.lock().unwrap().values() {
            let entry = origins
                .entry((found.ecosystem.to_string(), found.origin.clone()))
                .or_insert_with(|| OriginStatus {
                    ecosystem: found.ecosystem.to_string(),
                    origin: found.origin.clone(),
                    provenance: found.provenance.to_string(),
                    evidence: found.evidence.clone(),
                    artifacts: 0,
                });
            entry.artifacts += found.files;
        }
        let policy = shared.policy.lock().unwrap().clone();
        let (uploaded, downloaded) = shared.node.traffic();
        let index_disk_bytes = shared.index.disk_bytes().unwrap_or(0);
        let store_usage = {
            let store = shared.artifact_store.clone();
            tokio::task::spawn_blocking(move || store.usage())
                .await
                .unwrap_or_default()
        };
        let (store_problem, store_link_failures) = shared.artifact_store.link_problem();
        let limits_status = {
            let config = shared.config.lock().unwrap();
            crate::status::LimitsStatus {
                pause_reasons: policy.reasons.iter().map(|r| r.to_string()).collect(),
                upload_bytes_per_sec: policy.upload_bytes_per_sec,
                download_bytes_per_sec: policy.download_bytes_per_sec,
                alt_limits_active: policy.alt_active,
                bytes_uploaded: uploaded,
                bytes_downloaded: downloaded,
                tcp_bytes_sent: node_stats.tcp_bytes_sent,
                tcp_bytes_received: node_stats.tcp_bytes_received,
                overhead_bytes_uploaded: node_stats.overhead_bytes_uploaded,
                overhead_bytes_downloaded: node_stats.overhead_bytes_downloaded,
                month: policy.month.month.clone(),
                month_uploaded_bytes: policy.month.uploaded_bytes,
                monthly_upload_cap_bytes: config.limits.monthly_upload_bytes,
                on_battery: policy.power.on_battery,
                battery_percent: policy.power.battery_percent,
                metered: policy.power.metered,
                disk_used_bytes: index_disk_bytes + store_usage.cost_bytes,
                disk_cap_bytes: config.limits.disk_bytes,
                index_bytes: index_disk_bytes,
                keep_evicted_artifacts: config.limits.keep_evicted_artifacts,
                store_bytes: store_usage.cost_bytes,
                store_artifacts: store_usage.stored_artifacts,
                store_links: store_usage.links,
                store_evicted: shared.artifact_store.evicted_count(),
                store_problem,
                store_link_failures,
                disk_cap_reached: config.limits.disk_bytes > 0
                    && index_disk_bytes >= config.limits.disk_bytes,
            }
        };
        let (identity_storage, identity_warning) = match &shared.identity {
            IdentityStorage::Keyring => ("keyring".to_string(), None),
            IdentityStorage::File { warning, .. } => ("file".to_string(), Some(warning.clone())),
        };
        Status {
            peer_id: shared.node.peer_id().to_string(),
            listen_addrs: shared
                .node
                .listen_addrs()
                .await
                .iter()
                .map(|a| a.to_string())
                .collect(),
            network: shared.network.clone(),
            paused: shared.node.is_paused(),
            pause_reason: policy.reasons.first().map(|r| r.to_string()),
            ecosystems,
            connected_peers: node_stats.connected_peers,
            blocks_served: node_stats.blocks_served,
            bytes_served: node_stats.bytes_served,
            files_hashed: shared.files_hashed.load(Ordering::SeqCst),
            index_writes_pending: shared.write_batch.len() as u64,
            announced_keys: node_stats.announced_keys,
            announce_queue_len: node_stats.announce_queue_len,
            first_scan_done,
            scan: shared.scan.lock().unwrap().clone(),
            origins: origins.into_values().collect(),
            identity_storage,
            identity_warning,
            index_disk_bytes,
            cid_profile: shared.config.lock().unwrap().cid_profile.clone(),
            caches: shared
                .sources()
                .iter()
                .flat_map(|source| {
                    source.roots().into_iter().map(|root| CacheStatus {
                        ecosystem: source.ecosystem().to_string(),
                        present: root.is_dir(),
                        path: root.display().to_string(),
                    })
                })
                .collect(),
            unseedable_caches: shared.unseedable.lock().unwrap().clone(),
            rescan_only_roots: shared.rescan_only_roots.lock().unwrap().clone(),
            restart_required: shared.restart_required.load(Ordering::SeqCst),
            limits: limits_status,
            gateway: self.gateway.status(),
            most_served: shared
                .artifact_store
                .most_served(10)
                .into_iter()
                .filter_map(|(id, bytes_served)| {
                    let record = shared.index.artifact(id).ok()??;
                    Some(ServedArtifact {
                        ecosystem: record.ecosystem,
                        name: record.name,
                        version: record.version,
                        bytes_served,
                    })
                })
                .collect(),
            traffic: policy.traffic,
            runtime_tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as u64,
        }
    }

    /// Every seeded artifact.
    pub fn artifacts(&self) -> Result<Vec<ArtifactView>, EngineError> {
        let mut views: Vec<ArtifactView> = self
            .shared
            .index
            .artifacts()?
            .iter()
            .map(ArtifactView::from)
            .collect();
        views.sort_by(|a, b| {
            (&a.ecosystem, &a.name, &a.version, &a.path).cmp(&(
                &b.ecosystem,
                &b.name,
                &b.version,
                &b.path,
            ))
        });
        Ok(views)
    }

    /// Pauses or resumes serving and announcing; the state survives a restart.
    pub fn set_paused(&self, paused: bool) -> Result<(), EngineError> {
        let marker = self.shared.dirs.data_dir.join(PAUSE_STATE_FILE);
        let result = if paused {
            fs_util::write_atomically(&marker, b"")
        } else {
            remove_if_exists(&marker)
        };
        result.map_err(|err| EngineError::io(format!("cannot record the pause state: {err}")))?;
        self.shared.paused.store(paused, Ordering::SeqCst);
        // The node pauses if the user or any other reason says so (crate::limits); the event fires on a change.
        crate::limits::apply(&self.shared, self.shared.clock.now());
        Ok(())
    }

    /// The settings in force.
    pub fn config(&self) -> Config {
        self.shared.config.lock().unwrap().clone()
    }

    /// Validates, saves atomically and applies new settings: origin marks, ecosystems and the CID profile apply at
    /// once (sources rebuilt, watches re-armed, a rescan queued); network and listen addrs at the next start.
    pub fn update_config(&self, new: Config) -> Result<(), EngineError> {
        new.validate().map_err(EngineError::config)?;
        new.save(&self.shared.dirs.config_dir)?;
        let old = std::mem::replace(&mut *self.shared.config.lock().unwrap(), new.clone());
        if old.limits != new.limits {
            // Caps and pause apply at once, without dropping connections.
            crate::limits::apply(&self.shared, self.shared.clock.now());
        }
        let (old_disk, new_disk) = (&old.limits, &new.limits);
        if (old_disk.keep_evicted_artifacts, old_disk.disk_bytes)
            != (new_disk.keep_evicted_artifacts, new_disk.disk_bytes)
        {
            // A scan links (or drops) the store and enforces the new cap (crate::artifact_store::reconcile).
            let _ = self.shared.work.send(Work::Scan);
        }
        if old.network != new.network
            || old.listen_addrs != new.listen_addrs
            || old.gateway_listen_addr != new.gateway_listen_addr
        {
            self.shared.restart_required.store(true, Ordering::SeqCst);
        }
        if old.origins != new.origins
            || old.ecosystems != new.ecosystems
            || old.cid_profile != new.cid_profile
        {
            *self.shared.sources.write().unwrap() =
                crate::sources_from_config(&new, &self.shared.source_env);
            self.shared.roots_changed.notify_one();
            let _ = self.shared.work.send(Work::Scan);
        }
        Ok(())
    }

    /// Queues a full scan of every cache root.
    pub fn rescan(&self) {
        let _ = self.shared.work.send(Work::Scan);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.shared.events.subscribe()
    }

    pub fn dirs(&self) -> &EngineDirs {
        &self.shared.dirs
    }

    /// Stops the watcher and the indexer, then the node.
    pub async fn shutdown(self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            task.abort();
        }
        // What a scan hashed is written and flushed, so the next start does not hash it again.
        write_pending(&self.shared).await;
        let index = self.shared.index.clone();
        if let Ok(Err(err)) =
            tokio::task::spawn_blocking(move || index.set_bulk_writes(false)).await
        {
            tracing::error!(%err, "cannot flush the index");
        }
        crate::limits::save_usage(&self.shared);
        self.shared.artifact_store.save_served(None);
        self.shared.node.clone().shutdown().await;
    }
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The keys announced for an artifact: its root CID and, when it has one, its checksum CID.
pub(crate) fn announced_cids(record: &pkgseed_index::ArtifactRecord) -> Vec<Cid> {
    std::iter::once(&record.root_cid)
        .chain(record.checksum_cid.as_ref())
        .filter_map(|text| text.parse().ok())
        .collect()
}

/// Records read at a time by [`announce_indexed`]: a 100k index read whole held ≈ 60 MB of records at once (its
/// peak set the restarted daemon's peak memory, and the freed heap stayed fragmented at idle).
const ANNOUNCE_PAGE_ARTIFACTS: usize = 1024;

/// Queues the keys of every artifact already in the index for announcement (the announcer hands them to the DHT
/// in bounded batches), reading the index a page of records at a time. Runs beside the start, so a large index
/// does not delay serving.
async fn announce_indexed(shared: Arc<Shared>) {
    let mut after = None;
    loop {
        let index = shared.index.clone();
        let page = tokio::task::spawn_blocking(move || {
            index.artifacts_after(after, ANNOUNCE_PAGE_ARTIFACTS)
        })
        .await;
        let records = match page {
            Ok(Ok(records)) => records,
            Ok(Err(err)) => return tracing::error!(%err, "cannot read the index to announce it"),
            Err(err) => return tracing::error!(%err, "cannot read the index to announce it"),
        };
        let Some(last) = records.last() else { return };
        after = Some(last.id);
        shared
            .node
            .announce(records.iter().flat_map(announced_cids).collect());
        if records.len() < ANNOUNCE_PAGE_ARTIFACTS {
            return;
        }
    }
}

/// The indexer task: a FIFO of unique work items, each run off the async threads.
async fn run_indexer(shared: Arc<Shared>, mut work_rx: mpsc::UnboundedReceiver<Work>) {
    let mut queue: VecDeque<Work> = VecDeque::new();
    let mut queued_paths: HashSet<PathBuf> = HashSet::new();
    let mut first_scan = true;
    // Scans (walk and hash) run on one background-priority thread (crate::priority); paths between scans and
    // block reads keep the normal blocking pool.
    let scan_worker = crate::priority::LowPriorityWorker::start()
        .map_err(
            |err| tracing::warn!(%err, "no background scan thread; scanning at normal priority"),
        )
        .ok();
    let mut scanning = false;
    let mut later: HashMap<PathBuf, std::time::Instant> = HashMap::new();
    loop {
        let now = std::time::Instant::now();
        let due: Vec<PathBuf> = later
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            later.remove(&path);
            enqueue(&mut queue, &mut queued_paths, &mut later, Work::Path(path));
        }
        if queue.is_empty() {
            // Nothing else to do: what a scan left pending is written before waiting, and a scan's queue (every
            // candidate path) gives its memory back.
            write_pending(&shared).await;
            queue.shrink_to_fit();
            queued_paths.shrink_to_fit();
            let next_later = later.values().min().copied();
            let wait_for_later = async {
                match next_later {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                work = work_rx.recv() => match work {
                    Some(work) => enqueue(&mut queue, &mut queued_paths, &mut later, work),
                    None => return,
                },
                _ = wait_for_later => continue,
            }
        }
        while let Ok(work) = work_rx.try_recv() {
            enqueue(&mut queue, &mut queued_paths, &mut later, work);
        }
        let Some(work) = queue.pop_front() else {
            continue;
        };
        match work {
            Work::Path(path) => {
                queued_paths.remove(&path);
                if shared.write_batch.contains(&path) {
                    // The index must show the pending artifact before its path is looked at again.
                    write_pending(&shared).await;
                }
                let shared_for_task = shared.clone();
                let worker = scan_worker.as_ref().filter(|_| scanning);
                let outcome = within_batch_deadline(
                    &shared,
                    crate::priority::run_blocking(worker, move || {
                        indexer::process_path(&shared_for_task, &path)
                    }),
                )
                .await;
                if let Some(outcome) = outcome {
                    note_scan_progress(&shared, &outcome);
                }
            }
            // `enqueue` keeps these aside in `later`; never queued.
            work @ Work::PathAt(..) => enqueue(&mut queue, &mut queued_paths, &mut later, work),
            Work::Stale(id) => {
                let shared_for_task = shared.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    indexer::withdraw_stale(&shared_for_task, id)
                })
                .await;
            }
            Work::Scan => {
                // A scan writes many artifacts: several per transaction (crate::write_batch), each transaction
                // atomic, and flushed to disk once, at the end.
                write_pending(&shared).await;
                if let Err(err) = shared.index.set_bulk_writes(true) {
                    tracing::error!(%err, "index");
                }
                scanning = true;
                shared.write_batch.set_enabled(true);
                let shared_for_task = shared.clone();
                let paths = crate::priority::run_blocking(scan_worker.as_ref(), move || {
                    indexer::scan_roots(&shared_for_task)
                })
                .await
                .unwrap_or_default();
                {
                    let mut scan = shared.scan.lock().unwrap();
                    *scan = ScanProgress {
                        files_done: 0,
                        files_total: paths.len() as u64,
                        bytes_hashed: 0,
                    };
                }
                for path in paths {
                    enqueue(&mut queue, &mut queued_paths, &mut later, Work::Path(path));
                }
                queue.push_back(Work::ScanDone { first: first_scan });
                first_scan = false;
            }
            Work::ScanDone { first } => {
                scanning = queue.iter().any(|w| matches!(w, Work::ScanDone { .. }));
                shared.write_batch.set_enabled(scanning);
                // Everything the scan hashed is in the index before it counts as done.
                write_pending(&shared).await;
                let index = shared.index.clone();
                if let Ok(Err(err)) =
                    tokio::task::spawn_blocking(move || index.set_bulk_writes(false)).await
                {
                    tracing::error!(%err, "cannot flush the index");
                }
                // A scan's many commits leave the file larger than its tables (redb: free pages, doubling
                // growth); give that back before the scan counts as done. Reads wait meanwhile.
                let index = shared.index.clone();
                let started = std::time::Instant::now();
                match tokio::task::spawn_blocking(move || index.compact_if_grown()).await {
                    Ok(Ok(true)) => tracing::debug!(
                        ms = started.elapsed().as_millis() as u64,
                        "index compacted"
                    ),
                    Ok(Ok(false)) | Err(_) => {}
                    Ok(Err(err)) => tracing::warn!(%err, "cannot compact the index"),
                }
                if first {
                    shared.first_scan_done.store(true, Ordering::SeqCst);
                    shared.emit(EngineEvent::FirstScanDone);
                }
                if !scanning {
                    // The scan thread's digest helper and read buffers are not needed until the next scan.
                    crate::priority::run_blocking(
                        scan_worker.as_ref(),
                        pkgseed_unixfs::stop_digest_helper,
                    )
                    .await;
                    pkgseed_node::release_freed_memory();
                }
                let progress = shared.scan.lock().unwrap().clone();
                shared.emit(EngineEvent::ScanProgress(progress));
            }
        }
    }
}

/// Writes the scan's pending artifacts now (off the async threads).
async fn write_pending(shared: &Arc<Shared>) {
    if shared.write_batch.len() == 0 {
        return;
    }
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || indexer::write_batch(&shared)).await;
}

/// Runs `work` (one path), writing the pending batch whenever it comes due meanwhile (a large file being hashed
/// does not hold back the artifacts hashed before it), and after `work` if it is due by then.
async fn within_batch_deadline<T>(
    shared: &Arc<Shared>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let out = loop {
        let Some(deadline) = shared.write_batch.deadline() else {
            break (&mut work).await;
        };
        tokio::select! {
            out = &mut work => break out,
            _ = tokio::time::sleep_until(deadline.into()) => write_pending(shared).await,
        }
    };
    if shared
        .write_batch
        .deadline()
        .is_some_and(|at| at <= std::time::Instant::now())
    {
        write_pending(shared).await;
    }
    out
}

fn enqueue(
    queue: &mut VecDeque<Work>,
    queued_paths: &mut HashSet<PathBuf>,
    later: &mut HashMap<PathBuf, std::time::Instant>,
    work: Work,
) {
    match work {
        Work::Path(path) if !queued_paths.insert(path.clone()) => {}
        Work::PathAt(path, at) => {
            let earliest = later.entry(path).or_insert(at);
            *earliest = (*earliest).min(at);
        }
        work => queue.push_back(work),
    }
}

fn note_scan_progress(shared: &Shared, outcome: &Outcome) {
    let mut scan = shared.scan.lock().unwrap();
    if scan.files_done < scan.files_total {
        scan.files_done += 1;
    }
    if let Outcome::Seeded { hashed_bytes, .. } = outcome {
        scan.bytes_hashed += hashed_bytes;
    }
    // A progress event every 256 files keeps a 100k-file first scan visible without flooding subscribers.
    if scan.files_done.is_multiple_of(256) || scan.files_done == scan.files_total {
        let progress = scan.clone();
        drop(scan);
        shared.emit(EngineEvent::ScanProgress(progress));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_queued_once_and_a_later_look_keeps_the_earliest_time() {
        let (mut queue, mut queued, mut later) = (VecDeque::new(), HashSet::new(), HashMap::new());
        let path = PathBuf::from("/cache/index");
        enqueue(
            &mut queue,
            &mut queued,
            &mut later,
            Work::Path(path.clone()),
        );
        enqueue(
            &mut queue,
            &mut queued,
            &mut later,
            Work::Path(path.clone()),
        );
        assert_eq!(queue.len(), 1);
        let now = std::time::Instant::now();
        let soon = now + std::time::Duration::from_millis(300);
        for at in [now + std::time::Duration::from_secs(1), soon] {
            enqueue(
                &mut queue,
                &mut queued,
                &mut later,
                Work::PathAt(path.clone(), at),
            );
        }
        assert_eq!(queue.len(), 1, "kept aside, not queued");
        assert_eq!(later, HashMap::from([(path, soon)]));
    }
}
