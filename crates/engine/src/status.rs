//! The views the engine hands to shells: status, seeded artifacts, and the events they can subscribe to.
//! These are also the JSON the CLI prints, so field names are a public contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcosystemCounts {
    pub artifacts: u64,
    pub bytes: u64,
}

/// One origin (registry) found in a cache, seeded or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStatus {
    pub ecosystem: String,
    pub origin: String,
    /// `public`, `private` or `unknown`; only `public` is seeded.
    pub provenance: String,
    /// Why, in words (the evidence or the reason).
    pub evidence: String,
    /// Artifact files found from this origin.
    pub artifacts: u64,
}

/// One cache directory pkgseed scans and watches (`pkgseed status --json` → `caches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub ecosystem: String,
    pub path: String,
    /// Whether the directory exists now (a package manager not used yet has none).
    pub present: bool,
}

/// Progress of the current (or last) full scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_hashed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub network: String,
    /// Whether seeding is paused now, for any reason.
    pub paused: bool,
    /// Why (the first reason): `user`, `schedule`, `on battery`, `metered network` or `monthly cap reached`; all
    /// reasons are in `limits.pause_reasons`.
    pub pause_reason: Option<String>,
    pub ecosystems: BTreeMap<String, EcosystemCounts>,
    pub connected_peers: usize,
    pub blocks_served: u64,
    pub bytes_served: u64,
    /// Files hashed since this engine started; an unchanged file is never rehashed after a restart.
    pub files_hashed: u64,
    /// Artifacts hashed during a scan whose index batch is not written yet (not listed or served yet).
    #[serde(default)]
    pub index_writes_pending: u64,
    pub announced_keys: usize,
    pub announce_queue_len: usize,
    pub first_scan_done: bool,
    pub scan: ScanProgress,
    pub origins: Vec<OriginStatus>,
    /// `keyring` or `file`.
    pub identity_storage: String,
    pub identity_warning: Option<String>,
    /// What the index file occupies on disk (allocated, not its length: `Index::disk_bytes`).
    pub index_disk_bytes: u64,
    pub cid_profile: String,
    /// The cache directories of the enabled ecosystems, scanned and watched.
    #[serde(default)]
    pub caches: Vec<CacheStatus>,
    /// Caches found that keep only extracted files: listed, never seeded.
    pub unseedable_caches: Vec<pkgseed_sources::UnseedableCache>,
    /// Cache roots the OS refused to watch (inotify limits); they are rescanned periodically instead.
    pub rescan_only_roots: Vec<String>,
    /// A setting changed that applies only at the next start.
    pub restart_required: bool,
    /// Caps in force, traffic counters, the month's upload, power state and disk use.
    pub limits: LimitsStatus,
    /// The local trustless gateway.
    #[serde(default)]
    pub gateway: GatewayStatus,
    /// The artifacts served most (block bytes, all time), most first; at most ten.
    #[serde(default)]
    pub most_served: Vec<ServedArtifact>,
    /// Upload and download today, this month and all time (kept across restarts), for the dashboard's totals.
    #[serde(default)]
    pub traffic: crate::traffic::TrafficTotals,
    /// Tokio tasks alive in the daemon's runtime (node, swarm connections, engine): after peers leave it must come
    /// back to its idle value, so a leak shows as growth (the load test checks it).
    #[serde(default)]
    pub runtime_tasks: u64,
}

/// The local trustless gateway (`pkgseed status --json` → `gateway`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// The bound `IP:port` (always loopback); `None` when the gateway is off or could not listen.
    pub listen_addr: Option<String>,
    /// Why it is not listening (e.g. the port is taken); the daemon runs on without it.
    pub error: Option<String>,
    /// HTTP requests answered and bytes written (heads and bodies) since start.
    pub requests: u64,
    pub bytes_sent: u64,
}

/// The limits as the engine applies them now (`pkgseed status --json` → `limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsStatus {
    pub pause_reasons: Vec<String>,
    /// Caps in force (normal or alternative), bytes per second, 0 = unlimited.
    pub upload_bytes_per_sec: u64,
    pub download_bytes_per_sec: u64,
    /// The alternative limits are in force (the weekly schedule).
    pub alt_limits_active: bool,
    /// Bitswap bytes sent / received since start, counted where they cross the wire: chart rates from these.
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// TCP payload the kernel counted on the node's own sockets since start, every protocol (Linux; 0 elsewhere).
    #[serde(default)]
    pub tcp_bytes_sent: u64,
    #[serde(default)]
    pub tcp_bytes_received: u64,
    /// The part of it beyond bitswap (identify, Kademlia, ping, multistream, noise and yamux framing), charged to
    /// the caps after the fact (docs/limits.md).
    #[serde(default)]
    pub overhead_bytes_uploaded: u64,
    #[serde(default)]
    pub overhead_bytes_downloaded: u64,
    /// `YYYY-MM` (local time) and the bytes uploaded in it.
    pub month: String,
    pub month_uploaded_bytes: u64,
    pub monthly_upload_cap_bytes: u64,
    /// `None` = unknown (no UPower / NetworkManager, or an OS not implemented yet).
    pub on_battery: Option<bool>,
    pub battery_percent: Option<u8>,
    pub metered: Option<bool>,
    /// pkgseed's own disk use (`index_bytes + store_bytes`) and the cap (0 = none).
    pub disk_used_bytes: u64,
    pub disk_cap_bytes: u64,
    /// The index alone reached the cap: new artifacts are not indexed while this holds.
    pub disk_cap_reached: bool,
    pub index_bytes: u64,
    /// Artifacts their package manager deletes are kept in pkgseed's store (`limits.keep_evicted_artifacts`).
    pub keep_evicted_artifacts: bool,
    /// What the store costs on disk: its files whose original is gone (a link to an existing file costs nothing).
    pub store_bytes: u64,
    /// Store files that are the last link: artifacts served from the store (deleted by their package manager).
    pub store_artifacts: u64,
    /// Hard links in the store (most cost nothing).
    pub store_links: u64,
    /// Stored artifacts evicted under the disk cap since start (least recently served first).
    pub store_evicted: u64,
    /// Why some artifacts cannot be kept (the store on another filesystem, hard links refused); they are never
    /// copied instead. `store_link_failures` counts the links refused since start.
    pub store_problem: Option<String>,
    pub store_link_failures: u64,
}

/// An artifact and the block bytes served from it (`status --json` → `most_served`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedArtifact {
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub bytes_served: u64,
}

/// One seeded artifact, as `pkgseed ls --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactView {
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub path: String,
    /// The artifact's bytes.
    pub size: u64,
    /// Where they start in the file at `path`: 0 unless the artifact is a range of its file (pip's pre-23.3 inline
    /// bodies).
    #[serde(default)]
    pub offset: u64,
    pub cid: String,
    pub checksum_cid: Option<String>,
    pub registry_checksum: String,
    pub origin: String,
}

impl From<&pkgseed_index::ArtifactRecord> for ArtifactView {
    fn from(record: &pkgseed_index::ArtifactRecord) -> Self {
        ArtifactView {
            ecosystem: record.ecosystem.clone(),
            name: record.name.clone(),
            version: record.version.clone(),
            path: record.path.display().to_string(),
            size: record.content_len(),
            offset: record.content_offset(),
            cid: record.root_cid.clone(),
            checksum_cid: record.checksum_cid.clone(),
            registry_checksum: record.registry_checksum.clone(),
            origin: record.origin.clone(),
        }
    }
}

/// What the engine tells subscribers (tray, dashboard) as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    ArtifactSeeded {
        ecosystem: String,
        name: String,
        version: String,
        cid: String,
    },
    ArtifactWithdrawn {
        path: String,
        reason: String,
    },
    PausedChanged {
        paused: bool,
    },
    ScanProgress(ScanProgress),
    FirstScanDone,
}
