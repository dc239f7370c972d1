//! The embedded IPFS node. rust-ipfs provides identity, transports, identify, ping and the swarm; rust-ipfs's own
//! bitswap and Kademlia are left out. In their place: our bitswap responder, which answers wants from a
//! [`BlockStore`] (the zero-copy index) and is where pause lives, and a Kademlia whose provider-record limits and
//! batched announcements we control.
//! (API contract for the other crates; the implementation is owned by this crate.)
//!
//! Environment: `PKGSEED_KEYRING=off` makes [`load_or_create_identity`] skip the OS keyring and use the 0600 file
//! `<data_dir>/identity.key` (CI and tests without a session bus). See `docs/bitswap.md` for the design.

mod behaviour;
mod bitswap;
mod dht;
mod extaddr;
mod identity;
mod keybook;
pub mod limits;
mod profile;
mod provider_store;
mod reprovide;
mod tcp_counters;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use tokio::sync::watch;

pub use cid::Cid;
pub use keybook::{KeyBook, MemoryKeyBook};
pub use reprovide::{KeyId, ProvideKey};
pub use rust_ipfs::{Keypair, Multiaddr, PeerId};

/// Where blocks come from. Implemented by the engine over the index; `get` returns only verified bytes.
#[async_trait::async_trait]
pub trait BlockStore: Send + Sync + 'static {
    async fn get(&self, cid: &Cid) -> Option<bytes::Bytes>;
    async fn has(&self, cid: &Cid) -> bool;
}

/// `public`: public bootstrap, DHT, QUIC + TCP. `local`: loopback only, no bootstrap, no mDNS (tests, CI, bench).
// The hidden variant is a real, test-only profile, not a stand-in for `#[non_exhaustive]`.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkProfile {
    Public,
    Local,
    /// Test-only, not selectable by users: `local`'s loopback listeners and no bootstrap, but external addresses
    /// handled as in `public` (nothing recorded at start, Kademlia's mode automatic) and confirmed only from
    /// identify's observed addresses, loopback counting as routable: lets a loopback test exercise that path.
    #[doc(hidden)]
    LoopbackObservedAddrs,
}

pub struct NodeConfig {
    pub network: NetworkProfile,
    /// Empty: the profile's defaults (local: 127.0.0.1 TCP on a random port).
    pub listen_addrs: Vec<Multiaddr>,
    pub keypair: Keypair,
    /// Names provided keys by id (`KeyBook`): the engine's index. `None`: the keys are kept in memory.
    pub key_book: Option<Arc<dyn KeyBook>>,
}

/// Where the node's identity key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityStorage {
    /// The OS keyring, service `pkgseed`.
    Keyring,
    /// A 0600 file, used when no keyring is reachable; `warning` says why.
    File { path: PathBuf, warning: String },
}

/// Loads the Ed25519 identity from the OS keyring (service `pkgseed`), creating it on first use; falls back to a
/// 0600 file in `data_dir` when a keyring operation fails (not just its creation).
pub async fn load_or_create_identity(
    data_dir: &Path,
) -> Result<(Keypair, IdentityStorage), NodeError> {
    identity::load_or_create(data_dir).await
}

/// The environment variable that, set to `off`, forces the identity file fallback.
pub const KEYRING_ENV: &str = identity::KEYRING_ENV;
/// File name of the identity fallback inside the data dir.
pub const IDENTITY_FILE: &str = identity::IDENTITY_FILE;
/// Bitswap protocols the responder serves.
pub const BITSWAP_PROTOCOLS: [&str; 3] = [
    "/ipfs/bitswap/1.2.0",
    "/ipfs/bitswap/1.1.0",
    "/ipfs/bitswap/1.0.0",
];
/// Kademlia protocol of our DHT.
pub const KAD_PROTOCOL: &str = dht::KAD_PROTOCOL;
/// Most keys the node provides at once.
pub const MAX_PROVIDED_KEYS: usize = dht::MAX_PROVIDED_KEYS;

/// Returns heap pages that were used and freed to the OS, after a burst of work (a scan, an announce queue
/// drained). glibc keeps freed memory in its arenas (one per thread that allocated), which an always-on process
/// would otherwise carry at idle; `malloc_trim` releases the free pages of every arena. Elsewhere: nothing.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free heap pages back to the OS; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub connected_peers: usize,
    pub blocks_served: u64,
    pub bytes_served: u64,
    /// Keys currently provided to the DHT.
    pub announced_keys: usize,
    /// Keys waiting for the next announcement batch (also while paused).
    pub announce_queue_len: usize,
    /// Bitswap bytes sent since start, counted as they cross the wire (what the upload cap limits).
    pub bytes_uploaded: u64,
    /// Bitswap bytes received since start (what the download cap limits).
    pub bytes_downloaded: u64,
    /// TCP payload the kernel counted on the node's own sockets since start (Linux; 0 elsewhere): every protocol,
    /// bitswap included, without IP/TCP headers.
    pub tcp_bytes_sent: u64,
    pub tcp_bytes_received: u64,
    /// What that TCP payload carried beyond the bitswap bytes (identify, Kademlia, ping, multistream, noise and
    /// yamux framing): charged to the caps after the fact (docs/limits.md).
    pub overhead_bytes_uploaded: u64,
    pub overhead_bytes_downloaded: u64,
    /// Inbound bitswap streams accepted since start.
    pub inbound_streams_accepted: u64,
    /// Inbound bitswap streams reset unread (over the per-peer bound, or during shutdown); logged as they happen.
    pub inbound_streams_refused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node: {0}")]
    Start(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error("the node has stopped")]
    Stopped,
}

/// A cheap, cloneable handle over the running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    ipfs: rust_ipfs::Ipfs,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    paused: Arc<AtomicBool>,
    counters: Arc<bitswap::Counters>,
    tcp: Arc<tcp_counters::TcpTotals>,
    limits: Arc<limits::Limits>,
    dht: Arc<dht::DhtShared>,
    dht_commands: mpsc::UnboundedSender<dht::DhtCommand>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long `start` waits for the listeners to report their bound addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

impl Node {
    pub async fn start(config: NodeConfig, store: Arc<dyn BlockStore>) -> Result<Node, NodeError> {
        let NodeConfig {
            network,
            listen_addrs,
            keypair,
            key_book,
        } = config;
        let peer_id = keypair.public().to_peer_id();
        let listen = if listen_addrs.is_empty() {
            profile::default_listen_addrs(network)
        } else {
            listen_addrs
        };

        let shared = Arc::new(dht::DhtShared::new(
            key_book.unwrap_or_else(|| Arc::new(MemoryKeyBook::default())),
        ));
        let (dht_tx, dht_rx) = mpsc::unbounded();
        let counters = Arc::new(bitswap::Counters::default());
        let (inbound_tx, inbound_rx) = mpsc::unbounded();
        let behaviour = behaviour::NodeBehaviour {
            dht: dht::DhtBehaviour::new(
                peer_id,
                network == NetworkProfile::Local,
                network != NetworkProfile::Local,
                dht_rx,
                Arc::clone(&shared),
            ),
            bitswap: bitswap::inbound::InboundBehaviour::new(inbound_tx, Arc::clone(&counters)),
            external_addrs: extaddr::ExternalAddrBehaviour::new(match network {
                NetworkProfile::Public => Some(extaddr::Routability::Public),
                NetworkProfile::LoopbackObservedAddrs => {
                    Some(extaddr::Routability::ObservedLoopback)
                }
                NetworkProfile::Local => None,
            }),
        };

        // rust-ipfs's builder future is not `Send` (it holds the boxed custom-behaviour constructor); drive it on a
        // helper thread against this runtime so `Node::start` stays `Send` for callers that spawn it.
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let listen_for_builder = listen.clone();
        std::thread::Builder::new()
            .name("pkgseed-node-start".into())
            .spawn(move || {
                let result =
                    match profile::builder(network, &keypair, listen_for_builder, behaviour) {
                        Ok(builder) => handle.block_on(builder.start()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                let _ = tx.send(result);
            })
            .map_err(|e| NodeError::Start(format!("cannot spawn start thread: {e}")))?;
        let ipfs = rx
            .await
            .map_err(|_| NodeError::Start("start thread ended".into()))?
            .map_err(NodeError::Start)?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let paused = Arc::new(AtomicBool::new(false));
        let rate_limits = Arc::new(limits::Limits::default());

        let control = match ipfs.stream_control().await {
            Ok(c) => c,
            Err(e) => {
                ipfs.exit_daemon().await;
                return Err(NodeError::Start(format!("stream control: {e}")));
            }
        };
        let responder = bitswap::Responder::new(
            store,
            control,
            Arc::clone(&paused),
            Arc::clone(&counters),
            Arc::clone(&rate_limits),
            shutdown_rx.clone(),
        );
        let mut tasks = vec![responder.start(inbound_rx)];
        tasks.push(tokio::spawn(dht::announcer(
            Arc::clone(&shared),
            dht_tx.clone(),
            Arc::clone(&paused),
            shutdown_rx.clone(),
        )));
        let tcp = Arc::new(tcp_counters::TcpTotals::default());
        tasks.push(tokio::spawn(tcp_counters::run(
            Arc::clone(&counters),
            Arc::clone(&rate_limits),
            Arc::clone(&tcp),
            shutdown_rx,
        )));

        if network == NetworkProfile::Public {
            for (peer, addr) in profile::bootstrap_peers() {
                let _ = dht_tx.unbounded_send(dht::DhtCommand::AddAddress(peer, addr));
            }
            let _ = dht_tx.unbounded_send(dht::DhtCommand::Bootstrap);
        }

        // Wait (bounded) until every requested listener reports a bound address.
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        let bound = loop {
            let addrs = ipfs.listening_addresses().await.unwrap_or_default();
            if addrs.len() >= listen.len() || tokio::time::Instant::now() >= deadline {
                break addrs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if bound.is_empty() {
            for t in &tasks {
                t.abort();
            }
            ipfs.exit_daemon().await;
            return Err(NodeError::Start(format!(
                "no listener came up on {listen:?}"
            )));
        }
        // Kademlia puts the swarm's confirmed external addresses into every ADD_PROVIDER; go- and js-libp2p drop a
        // provider record that carries none. On loopback the bound addresses are the reachable ones. (The public
        // profile confirms its own: `extaddr::ExternalAddrBehaviour`.)
        if network == NetworkProfile::Local {
            for addr in &bound {
                if let Err(e) = ipfs.add_external_address(addr.clone()).await {
                    tracing::warn!(%addr, "cannot record the external address: {e}");
                }
            }
        }
        tracing::info!(%peer_id, addrs = ?bound, profile = ?network, "node started");

        Ok(Node {
            inner: Arc::new(Inner {
                ipfs,
                peer_id,
                listen_addrs: bound,
                paused,
                counters,
                tcp,
                limits: rate_limits,
                dht: shared,
                dht_commands: dht_tx,
                shutdown: shutdown_tx,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The bound listen addresses (actual ports), without `/p2p`.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        match self.inner.ipfs.listening_addresses().await {
            Ok(addrs) if !addrs.is_empty() => addrs,
            _ => self.inner.listen_addrs.clone(),
        }
    }

    /// The confirmed external addresses: what Kademlia puts into our provider records (without `/p2p`).
    pub async fn external_addrs(&self) -> Vec<Multiaddr> {
        self.inner
            .ipfs
            .external_addresses()
            .await
            .unwrap_or_default()
    }

    /// Paused: no blocks are served, nothing is announced and GET_PROVIDERS answers no longer name this node for its
    /// own keys until resumed (takes effect within a second).
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.store(paused, Ordering::SeqCst);
        // The DHT stops (or resumes) naming us as a provider of our own keys.
        let _ = self
            .inner
            .dht_commands
            .unbounded_send(dht::DhtCommand::SetPaused(paused));
        if !paused {
            self.inner.dht.wake.notify_one();
        }
    }

    /// Sets the upload and download caps in bytes per second (0 = unlimited), live: streams being written slow down
    /// or speed up within [`limits::MAX_SLEEP`]; no connection or stream is dropped. Bitswap bytes are capped as
    /// they are written; on Linux the rest of the node's TCP payload is charged to the same caps within 200 ms of
    /// crossing the wire (docs/limits.md says what is covered).
    pub fn set_rate_limits(&self, upload_bytes_per_sec: u64, download_bytes_per_sec: u64) {
        self.inner.limits.upload.set_rate(upload_bytes_per_sec);
        self.inner.limits.download.set_rate(download_bytes_per_sec);
    }

    /// Bitswap bytes (uploaded, downloaded) since start: cheap, no swarm round trip.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.inner.counters.bytes_uploaded.load(Ordering::Relaxed),
            self.inner.counters.bytes_downloaded.load(Ordering::Relaxed),
        )
    }

    /// The overhead beyond bitswap the kernel counted (uploaded, downloaded) since start (Linux TCP; see
    /// [`NodeStats::overhead_bytes_uploaded`]): cheap, no swarm round trip.
    pub fn overhead_traffic(&self) -> (u64, u64) {
        (
            self.inner
                .tcp
                .overhead_bytes_uploaded
                .load(Ordering::Relaxed),
            self.inner
                .tcp
                .overhead_bytes_downloaded
                .load(Ordering::Relaxed),
        )
    }

    /// The caps in force: (upload, download) bytes per second, 0 = unlimited.
    pub fn rate_limits(&self) -> (u64, u64) {
        (
            self.inner.limits.upload.rate(),
            self.inner.limits.download.rate(),
        )
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// Queues keys for announcement in batches; queued keys wait while paused. A key the provide history (see
    /// [`Node::use_provide_history`]) says was provided less than a cycle ago is not queued: its local record
    /// answers at once and it is provided when its cycle ends. Keys are multihashes: CIDs that share one are one key.
    pub fn announce(&self, cids: Vec<Cid>) {
        let keys = cids.iter().map(ProvideKey::of_cid).collect();
        self.inner
            .dht
            .enqueue_or_restore(keys, reprovide::unix_now_secs());
    }

    /// Keeps each key's last-provided time in `path` (12 bytes per key, saved every few minutes and at shutdown)
    /// and loads what it holds, so that after a restart keys are provided again by age, not all at once. Call it
    /// before announcing the keys already indexed.
    pub fn use_provide_history(&self, path: PathBuf) {
        self.inner.dht.use_history(path);
    }

    /// Stops providing these keys: their provider records stop answering at once.
    pub fn withdraw(&self, cids: Vec<Cid>) {
        let keys: Vec<ProvideKey> = cids.iter().map(ProvideKey::of_cid).collect();
        self.inner.dht.withdraw(&keys);
    }

    /// Adds a peer address to the DHT routing table (e.g. a known seed or a test peer).
    pub fn add_dht_peer(&self, peer: PeerId, addr: Multiaddr) {
        let _ = self
            .inner
            .dht_commands
            .unbounded_send(dht::DhtCommand::AddAddress(peer, addr));
    }

    pub async fn stats(&self) -> NodeStats {
        let connected_peers = self
            .inner
            .ipfs
            .connected()
            .await
            .map(|p| p.len())
            .unwrap_or(0);
        let (announced_keys, announce_queue_len) = {
            let st = self.inner.dht.state.lock().unwrap();
            (st.provided.len(), st.queue.len())
        };
        let (overhead_up, overhead_down) = self.overhead_traffic();
        NodeStats {
            connected_peers,
            blocks_served: self.inner.counters.blocks_served.load(Ordering::Relaxed),
            bytes_served: self.inner.counters.bytes_served.load(Ordering::Relaxed),
            announced_keys,
            announce_queue_len,
            bytes_uploaded: self.inner.counters.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: self.inner.counters.bytes_downloaded.load(Ordering::Relaxed),
            tcp_bytes_sent: self.inner.tcp.bytes_sent.load(Ordering::Relaxed),
            tcp_bytes_received: self.inner.tcp.bytes_received.load(Ordering::Relaxed),
            overhead_bytes_uploaded: overhead_up,
            overhead_bytes_downloaded: overhead_down,
            inbound_streams_accepted: self
                .inner
                .counters
                .inbound_streams_accepted
                .load(Ordering::Relaxed),
            inbound_streams_refused: self
                .inner
                .counters
                .inbound_streams_refused
                .load(Ordering::Relaxed),
        }
    }

    /// Stops the responder, the announcer and the swarm. Other clones of the handle stop working too.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let dht = Arc::clone(&self.inner.dht);
        let _ = tokio::task::spawn_blocking(move || dht.save_history()).await;
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.inner.ipfs.clone().exit_daemon().await;
        tracing::info!(peer_id = %self.inner.peer_id, "node stopped");
    }
}
