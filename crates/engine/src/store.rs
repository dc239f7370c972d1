//! The node's block store: zero-copy reads from the index. A read that finds the file changed returns nothing
//! and sends the artifact to the indexer to be withdrawn, so a wrong byte is never served. A block served notes
//! its artifact's last-served time. It is also the node's key book: a provided key is looked up by id in the
//! index's blocks.

use std::sync::Arc;

use bytes::Bytes;
use pkgseed_index::{BlockReadError, Index};
use pkgseed_node::{BlockStore, Cid, KeyBook, KeyId};
use tokio::sync::mpsc;

use crate::artifact_store::ArtifactStore;
use crate::engine::Work;

pub(crate) struct IndexBlockStore {
    index: Arc<Index>,
    work: mpsc::UnboundedSender<Work>,
    /// Where each served block's artifact gets its last-served time (the disk cap evicts least recently served).
    served: Arc<ArtifactStore>,
}

impl IndexBlockStore {
    pub(crate) fn new(
        index: Arc<Index>,
        work: mpsc::UnboundedSender<Work>,
        served: Arc<ArtifactStore>,
    ) -> IndexBlockStore {
        IndexBlockStore {
            index,
            work,
            served,
        }
    }
}

#[async_trait::async_trait]
impl BlockStore for IndexBlockStore {
    async fn get(&self, cid: &Cid) -> Option<Bytes> {
        let index = self.index.clone();
        let cid = *cid;
        match tokio::task::spawn_blocking(move || index.read_block_located(&cid)).await {
            Ok(Ok(Some((artifact, bytes)))) => {
                self.served.note_served(artifact, bytes.len() as u64);
                Some(bytes)
            }
            Ok(Ok(None)) => None,
            Ok(Err(BlockReadError::Stale { artifact, reason })) => {
                tracing::warn!(%cid, artifact, %reason, "refusing a block whose file changed");
                let _ = self.work.send(Work::Stale(artifact));
                None
            }
            Ok(Err(err)) => {
                tracing::error!(%cid, %err, "block read failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn has(&self, cid: &Cid) -> bool {
        let index = self.index.clone();
        let cid = *cid;
        tokio::task::spawn_blocking(move || index.has_block(&cid).unwrap_or(false))
            .await
            .unwrap_or(false)
    }
}

/// Every announced key (an artifact's root or checksum CID) is a block in the index while the artifact is seeded,
/// and leaves with it: nothing to remember or forget.
impl KeyBook for IndexBlockStore {
    fn multihashes_with_id(&self, id: KeyId) -> Option<Vec<cid::multihash::Multihash<64>>> {
        self.index
            .multihashes_with_digest_prefix(&id.to_le_bytes())
            .unwrap_or_else(|err| {
                tracing::error!(%err, "cannot look a provided key up in the index");
                None
            })
    }
}
