//! The node's block store: zero-copy reads from the index. A read that finds the file changed returns nothing
//! and sends the artifact to the indexer to be withdrawn, so a wrong byte is never served.

use std::sync::Arc;

use bytes::Bytes;
use pkgseed_index::{BlockReadError, Index};
use pkgseed_node::{BlockStore, Cid};
use tokio::sync::mpsc;

use crate::engine::Work;

pub(crate) struct IndexBlockStore {
    index: Arc<Index>,
    work: mpsc::UnboundedSender<Work>,
}

impl IndexBlockStore {
    pub(crate) fn new(index: Arc<Index>, work: mpsc::UnboundedSender<Work>) -> IndexBlockStore {
        IndexBlockStore { index, work }
    }
}

#[async_trait::async_trait]
impl BlockStore for IndexBlockStore {
    async fn get(&self, cid: &Cid) -> Option<Bytes> {
        let index = self.index.clone();
        let cid = *cid;
        match tokio::task::spawn_blocking(move || index.read_block(&cid)).await {
            Ok(Ok(bytes)) => bytes,
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
