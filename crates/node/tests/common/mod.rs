//! Shared by the node's DHT interop tests: a node over an empty block store, raw-leaf CIDs, the js-libp2p tools'
//! directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pkgseed_node::{BlockStore, Cid, Keypair, NetworkProfile, Node, NodeConfig};
use sha2::{Digest, Sha256};

pub struct EmptyStore;

#[async_trait::async_trait]
impl BlockStore for EmptyStore {
    async fn get(&self, _: &Cid) -> Option<Bytes> {
        None
    }
    async fn has(&self, _: &Cid) -> bool {
        false
    }
}

pub fn raw_cid(data: &[u8]) -> Cid {
    let digest = Sha256::digest(data);
    Cid::new_v1(
        0x55,
        multihash::Multihash::<64>::wrap(0x12, &digest).unwrap(),
    )
}

/// `tests/js` with its js-libp2p `node_modules`; missing ones fail the test with what to run.
pub fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    let dir = dir.canonicalize().unwrap_or(dir);
    assert!(
        dir.join("node_modules/@libp2p/kad-dht").is_dir() && dir.join("node_modules/libp2p").is_dir(),
        "js-libp2p is not installed: {}/node_modules is missing. Run `npm ci --prefix tests/js` (Node.js 20+) \
         first; these interop tests do not skip.",
        dir.display()
    );
    dir
}

/// A node with a fresh identity over [`EmptyStore`], on the profile's default listeners; start bounded to 60 s.
pub async fn start_empty_node(network: NetworkProfile) -> Node {
    tokio::time::timeout(
        Duration::from_secs(60),
        Node::start(
            NodeConfig {
                network,
                listen_addrs: vec![],
                keypair: Keypair::generate_ed25519(),
                key_book: None,
            },
            Arc::new(EmptyStore),
        ),
    )
    .await
    .expect("node start timed out")
    .expect("node start")
}
