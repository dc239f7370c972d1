//! Our Kademlia (`/ipfs/kad/1.0.0`) inside a small wrapper `NetworkBehaviour` driven by a command channel, and the
//! announcer task that provides queued keys in bounded batches (never while paused) and reprovides on a schedule.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cid::Cid;
use connexa::prelude::dht::{
    self as kad,
    store::{MemoryStore, MemoryStoreConfig, RecordStore},
    Mode, ProviderRecord, QueryId, QueryResult, RecordKey,
};
use connexa::prelude::swarm::derive_prelude::{Endpoint, PortUse};
use connexa::prelude::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use futures::channel::mpsc;
use futures::StreamExt;
use rust_ipfs::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{watch, Notify};

pub const KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";
/// Keys this node may provide (libp2p-kad's default is 1,024).
pub const MAX_PROVIDED_KEYS: usize = 1_000_000;
/// Room in the provider table for records other peers store with us (server mode), on top of our own.
const FOREIGN_PROVIDER_KEYS: usize = 65_536;
/// Value records other peers may store with us.
const MAX_RECORDS: usize = 16_384;
/// Concurrent provide queries.
pub const MAX_INFLIGHT_PROVIDES: usize = 32;
/// Keys handed to Kademlia per tick at most.
const BATCH: usize = 64;
const TICK: Duration = Duration::from_millis(250);
/// Our own reprovide schedule (kad's per-record republication is turned off so it cannot burst).
pub const REPROVIDE_INTERVAL: Duration = Duration::from_secs(12 * 60 * 60);

pub enum DhtCommand {
    Provide(Vec<Cid>),
    StopProviding(Vec<Cid>),
    AddAddress(PeerId, Multiaddr),
    Bootstrap,
    /// Paused: our own provider records leave the local store (GET_PROVIDERS no longer names us) and new `Provide`s
    /// go back to the queue; resumed: the records of every key in `AnnounceState::provided` are stored again.
    SetPaused(bool),
}

fn key(cid: &Cid) -> RecordKey {
    // IPFS providers are keyed by multihash, not by CID (v0 and v1 of the same content share providers).
    RecordKey::new(&cid.hash().to_bytes())
}

/// State shared between the behaviour (inside the swarm task), the announcer and `Node::stats`.
#[derive(Default)]
pub struct DhtShared {
    pub state: Mutex<AnnounceState>,
    pub inflight: AtomicUsize,
    pub wake: Notify,
}

#[derive(Default)]
pub struct AnnounceState {
    pub queue: VecDeque<Cid>,
    pub queued: HashSet<Cid>,
    /// Keys currently provided (stored as our provider records).
    pub provided: HashSet<Cid>,
}

impl DhtShared {
    pub fn enqueue(&self, cids: Vec<Cid>) {
        let mut st = self.state.lock().unwrap();
        for cid in cids {
            if st.queued.insert(cid) {
                st.queue.push_back(cid);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    pub fn withdraw(&self, cids: &[Cid]) {
        let mut st = self.state.lock().unwrap();
        for cid in cids {
            st.queued.remove(cid);
            st.provided.remove(cid);
        }
        let AnnounceState { queue, queued, .. } = &mut *st;
        queue.retain(|c| queued.contains(c));
    }
}

pub struct DhtBehaviour {
    kad: kad::Behaviour<MemoryStore>,
    local: PeerId,
    /// Follows `DhtCommand::SetPaused` (ordered with `Provide` on the same channel).
    paused: bool,
    commands: mpsc::UnboundedReceiver<DhtCommand>,
    shared: Arc<DhtShared>,
    provide_queries: HashMap<QueryId, Cid>,
    /// Recently learned listen addresses (from identify) of peers Kademlia could not route to.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
}

impl DhtBehaviour {
    pub fn new(
        local: PeerId,
        server_mode: bool,
        commands: mpsc::UnboundedReceiver<DhtCommand>,
        shared: Arc<DhtShared>,
    ) -> Self {
        let store = MemoryStore::with_config(
            local,
            MemoryStoreConfig {
                max_records: MAX_RECORDS,
                max_provided_keys: MAX_PROVIDED_KEYS + FOREIGN_PROVIDER_KEYS,
                ..Default::default()
            },
        );
        let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        config.set_provider_publication_interval(None);
        config.set_query_timeout(Duration::from_secs(60));
        config.set_parallelism(NonZeroUsize::new(3).expect("nonzero"));
        let mut kad = kad::Behaviour::with_config(local, store, config);
        kad.set_mode(if server_mode {
            Some(Mode::Server)
        } else {
            None
        });
        DhtBehaviour {
            kad,
            local,
            paused: false,
            commands,
            shared,
            provide_queries: HashMap::new(),
            peer_addrs: HashMap::new(),
        }
    }

    fn on_command(&mut self, cmd: DhtCommand) {
        match cmd {
            DhtCommand::Provide(cids) if self.paused => {
                // Sent by the announcer just before the pause reached us: back to the queue, announced on resume.
                self.shared.enqueue(cids);
            }
            DhtCommand::Provide(cids) => {
                for cid in cids {
                    {
                        let st = self.shared.state.lock().unwrap();
                        if st.provided.len() >= MAX_PROVIDED_KEYS && !st.provided.contains(&cid) {
                            tracing::warn!(%cid, "provided-key limit ({MAX_PROVIDED_KEYS}) reached; not announcing");
                            continue;
                        }
                    }
                    match self.kad.start_providing(key(&cid)) {
                        Ok(id) => {
                            self.shared.state.lock().unwrap().provided.insert(cid);
                            self.shared.inflight.fetch_add(1, Ordering::SeqCst);
                            self.provide_queries.insert(id, cid);
                        }
                        Err(e) => tracing::warn!(%cid, "cannot provide: {e}"),
                    }
                }
            }
            DhtCommand::StopProviding(cids) => {
                for cid in cids {
                    self.kad.stop_providing(&key(&cid));
                }
            }
            DhtCommand::AddAddress(peer, addr) => {
                self.kad.add_address(&peer, addr);
            }
            DhtCommand::Bootstrap => {
                if let Err(e) = self.kad.bootstrap() {
                    tracing::debug!("kademlia bootstrap: {e}");
                }
            }
            DhtCommand::SetPaused(paused) => self.set_paused(paused),
        }
    }

    /// Paused means invisible: nobody learns from us that we provide anything. Provide queries already under way
    /// still finish (libp2p-kad cannot cancel them), and records stored with other peers stay until their TTL.
    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if paused {
            let own: Vec<RecordKey> = self
                .kad
                .store_mut()
                .provided()
                .map(|r| r.key.clone())
                .collect();
            for k in &own {
                self.kad.stop_providing(k);
            }
            tracing::debug!(keys = own.len(), "paused: own provider records withdrawn");
        } else {
            // Local records only: the network part is left to the reprovide schedule (which runs at once if it
            // fell due during the pause), so a resume does not trigger a burst of provide queries.
            let cids: Vec<Cid> = self
                .shared
                .state
                .lock()
                .unwrap()
                .provided
                .iter()
                .copied()
                .collect();
            let store = self.kad.store_mut();
            for cid in &cids {
                if let Err(e) =
                    store.add_provider(ProviderRecord::new(key(cid), self.local, Vec::new()))
                {
                    tracing::warn!(%cid, "cannot restore provider record: {e}");
                }
            }
            tracing::debug!(keys = cids.len(), "resumed: own provider records restored");
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::StartProviding(res),
                step,
                ..
            } => {
                if step.last {
                    if let Some(cid) = self.provide_queries.remove(&id) {
                        self.shared.inflight.fetch_sub(1, Ordering::SeqCst);
                        self.shared.wake.notify_one();
                        match res {
                            Ok(_) => tracing::trace!(%cid, "provided"),
                            // The record stays stored locally; the next reprovide round retries the network part.
                            Err(e) => tracing::debug!(%cid, "provide query: {e}"),
                        }
                    }
                }
            }
            kad::Event::UnroutablePeer { peer } => {
                if let Some(addrs) = self.peer_addrs.remove(&peer) {
                    for addr in addrs {
                        self.kad.add_address(&peer, addr);
                    }
                }
            }
            other => tracing::trace!("kademlia: {other:?}"),
        }
    }
}

impl NetworkBehaviour for DhtBehaviour {
    type ConnectionHandler = <kad::Behaviour<MemoryStore> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.kad
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kad
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.kad.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kad.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::NewExternalAddrOfPeer(e) = &event {
            if self.peer_addrs.len() < 4096 || self.peer_addrs.contains_key(&e.peer_id) {
                let addrs = self.peer_addrs.entry(e.peer_id).or_default();
                if addrs.len() < 8 && !addrs.contains(e.addr) {
                    addrs.push(e.addr.clone());
                }
            }
        }
        if let FromSwarm::ConnectionClosed(e) = &event {
            if e.remaining_established == 0 {
                self.peer_addrs.remove(&e.peer_id);
            }
        }
        self.kad.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.kad
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some(cmd)) = self.commands.poll_next_unpin(cx) {
            self.on_command(cmd);
        }
        loop {
            match self.kad.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => self.on_kad_event(event),
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other.map_out(|_| unreachable!("GenerateEvent is handled above")),
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Hands queued keys to Kademlia in bounded batches; waits while paused; requeues provided keys on schedule.
pub async fn announcer(
    shared: Arc<DhtShared>,
    commands: mpsc::UnboundedSender<DhtCommand>,
    paused: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_reprovide = tokio::time::Instant::now() + REPROVIDE_INTERVAL;
    loop {
        // With keys queued, look again every TICK (room frees up as provide queries finish); with none, sleep until
        // a key is queued (`enqueue` wakes us) or the reprovide is due: no wake-ups at idle.
        let queued = !shared.state.lock().unwrap().queue.is_empty();
        let wake_at = if queued {
            tokio::time::Instant::now() + TICK
        } else {
            next_reprovide
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = shared.wake.notified() => {},
            _ = tokio::time::sleep_until(wake_at) => {},
        }
        if *shutdown.borrow() {
            return;
        }
        if paused.load(Ordering::SeqCst) {
            continue;
        }
        if tokio::time::Instant::now() >= next_reprovide {
            next_reprovide = tokio::time::Instant::now() + REPROVIDE_INTERVAL;
            let again: Vec<Cid> = shared
                .state
                .lock()
                .unwrap()
                .provided
                .iter()
                .copied()
                .collect();
            shared.enqueue(again);
        }
        let room = MAX_INFLIGHT_PROVIDES
            .saturating_sub(shared.inflight.load(Ordering::SeqCst))
            .min(BATCH);
        if room == 0 {
            continue;
        }
        let batch: Vec<Cid> = {
            let mut st = shared.state.lock().unwrap();
            let mut batch = Vec::with_capacity(room);
            while batch.len() < room {
                let Some(cid) = st.queue.pop_front() else {
                    break;
                };
                st.queued.remove(&cid);
                batch.push(cid);
            }
            batch
        };
        if !batch.is_empty() && commands.unbounded_send(DhtCommand::Provide(batch)).is_err() {
            return;
        }
    }
}
