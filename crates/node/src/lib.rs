//! The embedded IPFS node. rust-ipfs provides identity, transports, identify, ping and the swarm; rust-ipfs's own
//! bitswap and Kademlia are left out. In their place: our bitswap responder, which answers wants from a
//! [`BlockStore`] (the zero-copy index) and is where pause lives, and a Kademlia whose provider-record limits and
//! batched announcements we control.
//! (API contract for the other crates; the implementation is owned by this crate.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cid::Cid;
pub use rust_ipfs::{Keypair, Multiaddr, PeerId};

/// Where blocks come from. Implemented by the engine over the index; `get` returns only verified bytes.
#[async_trait::async_trait]
pub trait BlockStore: Send + Sync + 'static {
    async fn get(&self, cid: &Cid) -> Option<bytes::Bytes>;
    async fn has(&self, cid: &Cid) -> bool;
}

/// `public`: public bootstrap, DHT, QUIC + TCP. `local`: loopback only, no bootstrap, no mDNS (tests, CI, bench).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkProfile {
    Public,
    Local,
}

pub struct NodeConfig {
    pub network: NetworkProfile,
    /// Empty: the profile's defaults (local: 127.0.0.1 TCP on a random port).
    pub listen_addrs: Vec<Multiaddr>,
    pub keypair: Keypair,
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
pub async fn load_or_create_identity(data_dir: &Path) -> Result<(Keypair, IdentityStorage), NodeError> {
    todo!()
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
    _private: Arc<()>,
}

impl Node {
    pub async fn start(config: NodeConfig, store: Arc<dyn BlockStore>) -> Result<Node, NodeError> {
        todo!()
    }
    pub fn peer_id(&self) -> PeerId {
        todo!()
    }
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        todo!()
    }
    /// Paused: no blocks are served and nothing is announced until resumed (takes effect within a second).
    pub fn set_paused(&self, paused: bool) {
        todo!()
    }
    /// Queues keys for announcement in batches; queued keys wait while paused.
    pub fn announce(&self, cids: Vec<Cid>) {
        todo!()
    }
    /// Stops providing these keys.
    pub fn withdraw(&self, cids: Vec<Cid>) {
        todo!()
    }
    pub async fn stats(&self) -> NodeStats {
        todo!()
    }
    pub async fn shutdown(self) {
        todo!()
    }
}
