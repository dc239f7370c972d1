//! Our Kademlia (`/ipfs/kad/1.0.0`) inside a small wrapper `NetworkBehaviour` driven by a command channel, and the
//! announcer task that provides queued keys in bounded batches (never while paused) and reprovides each key when
//! its own cycle ends (`crate::reprovide`: last-provided times survive a restart in a small history file).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use connexa::prelude::dht::{self as kad, Mode, QueryId, QueryResult, RecordKey};
use connexa::prelude::swarm::derive_prelude::{Endpoint, PortUse};
use connexa::prelude::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use futures::channel::mpsc;
use futures::StreamExt;
use rust_ipfs::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{watch, Notify};

use crate::keybook::{self, KeyBook, MemoryKeyBook};
use crate::provider_store::{CompactStore, CompactStoreLimits};
use crate::reprovide::{self, unix_now_secs, KeyId, ProvideKey, Schedule};

pub const KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";
/// Keys this node may provide (libp2p-kad's default is 1,024).
pub const MAX_PROVIDED_KEYS: usize = 1_000_000;
/// Keys of provider records other peers may store with us (server mode), apart from our own.
const FOREIGN_PROVIDER_KEYS: usize = 65_536;
/// Value records other peers may store with us.
const MAX_RECORDS: usize = 16_384;
/// Concurrent provide queries.
pub const MAX_INFLIGHT_PROVIDES: usize = 32;
/// Keys handed to Kademlia per tick at most.
const BATCH: usize = 64;
/// Keys handed over per tick while no DHT peer is known: they only become local records (no query runs), so the
/// queue is emptied in a few ticks instead of at the query rate (at 32 per tick, 200k keys took 26 minutes and
/// held the queue's memory meanwhile). Kademlia still starts at most `MAX_INFLIGHT_PROVIDES` queries should a
/// peer arrive during the batch.
const HELD_BATCH: usize = 16_384;
const TICK: Duration = Duration::from_millis(250);
/// Due keys are collected at most this often (keys restored after a restart fall due one by one).
const SWEEP_GAP: Duration = Duration::from_secs(60);
/// Changed last-provided times are written to the history file at most this often (and at shutdown); a crash
/// loses at most this much, and those keys are provided again at the next start.
const HISTORY_SAVE_GAP: Duration = Duration::from_secs(5 * 60);

pub enum DhtCommand {
    /// Keys by id: their multihashes come from the book when their queries start.
    Provide(Vec<KeyId>),
    AddAddress(PeerId, Multiaddr),
    Bootstrap,
    /// Paused: our own provider records are no longer answered (GET_PROVIDERS no longer names us) and new
    /// `Provide`s go back to the queue; resumed: every key in `AnnounceState::provided` is answered again.
    SetPaused(bool),
}

/// State shared between the behaviour (inside the swarm task), the announcer and `Node::stats`.
pub struct DhtShared {
    pub state: Mutex<AnnounceState>,
    pub inflight: AtomicUsize,
    pub wake: Notify,
    /// Keys were handed over while the routing table was empty: they were held back (a provide query without
    /// peers can only fail, after walking the whole empty table) until a peer enters it.
    pub waiting_for_peers: AtomicBool,
    /// Where the last-provided times are kept (set by the engine; none: nothing survives a restart).
    pub history_path: Mutex<Option<PathBuf>>,
    /// Names the keys behind the ids in `state`.
    pub book: Arc<dyn KeyBook>,
}

impl Default for DhtShared {
    fn default() -> Self {
        DhtShared::new(Arc::new(MemoryKeyBook::default()))
    }
}

#[derive(Default)]
pub struct AnnounceState {
    /// Ids of the keys waiting to be handed over (8 bytes each: a first scan queues every key at once).
    pub queue: VecDeque<KeyId>,
    /// What is in `queue`.
    pub queued: HashSet<KeyId>,
    /// Keys currently provided, with when each is due again: our provider records are these keys
    /// (`crate::provider_store`).
    pub provided: Schedule,
}

impl DhtShared {
    pub fn new(book: Arc<dyn KeyBook>) -> DhtShared {
        DhtShared {
            state: Mutex::default(),
            inflight: AtomicUsize::new(0),
            wake: Notify::new(),
            waiting_for_peers: AtomicBool::new(false),
            history_path: Mutex::new(None),
            book,
        }
    }

    /// Loads the history file and keeps it up to date from now on.
    pub fn use_history(&self, path: PathBuf) {
        let entries = reprovide::load_history(&path);
        tracing::debug!(keys = entries.len(), path = %path.display(), "provide history loaded");
        self.state.lock().unwrap().provided.set_history(entries);
        *self.history_path.lock().unwrap() = Some(path);
    }

    /// Announced keys: those provided within their cycle before a restart are provided again at once, locally
    /// (their records answer; the network part waits for their cycle to end); the rest are queued.
    pub fn enqueue_or_restore(&self, keys: Vec<ProvideKey>, now_secs: u64) {
        self.book.remember(&keys);
        let mut st = self.state.lock().unwrap();
        let (restored, fresh): (Vec<KeyId>, Vec<KeyId>) = keys
            .iter()
            .map(ProvideKey::id)
            .partition(|&id| st.provided.claim_recent(id, now_secs));
        drop(st);
        if !restored.is_empty() {
            tracing::debug!(
                keys = restored.len(),
                "provided recently before the start: due later"
            );
        }
        self.enqueue(fresh);
    }

    /// Whether `key` is provided: our provider record for it answers (unless paused). Its id is in the schedule
    /// and the book names the key itself (not just another key with the same first 8 digest bytes).
    pub fn is_provided(&self, key: &ProvideKey) -> bool {
        let id = key.id();
        let scheduled = self.state.lock().unwrap().provided.contains(id);
        // The book is asked without the state's lock held (the engine's book reads the index).
        scheduled && self.keys_with_id(id).is_some_and(|keys| keys.contains(key))
    }

    /// Every provided key, looked up in the book (for libp2p-kad's republication job, which is off).
    pub fn provided_keys(&self) -> Vec<ProvideKey> {
        let ids: Vec<KeyId> = self.state.lock().unwrap().provided.ids().collect();
        ids.into_iter()
            .flat_map(|id| self.keys_with_id(id).unwrap_or_default())
            .collect()
    }

    /// The keys the book names for `id` (`None`: cannot tell now).
    pub fn keys_with_id(&self, id: KeyId) -> Option<Vec<ProvideKey>> {
        keybook::keys_with_id(self.book.as_ref(), id)
    }

    /// Writes the history file now if anything changed (the announcer's schedule, and shutdown).
    pub fn save_history(&self) {
        let Some(path) = self.history_path.lock().unwrap().clone() else {
            return;
        };
        let entries = {
            let mut st = self.state.lock().unwrap();
            if !st.provided.is_dirty() {
                return;
            }
            st.provided.take_history(unix_now_secs())
        };
        if let Err(err) = reprovide::save_history(&path, &entries) {
            tracing::warn!(path = %path.display(), "cannot save the provide history: {err}");
        }
    }

    pub fn enqueue(&self, ids: Vec<KeyId>) {
        let mut st = self.state.lock().unwrap();
        for id in ids {
            if st.queued.insert(id) {
                st.queue.push_back(id);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The keys are no longer provided: their provider records stop answering at once.
    pub fn withdraw(&self, keys: &[ProvideKey]) {
        let mut st = self.state.lock().unwrap();
        for key in keys {
            st.queued.remove(&key.id());
            st.provided.remove(key.id());
        }
        let AnnounceState { queue, queued, .. } = &mut *st;
        queue.retain(|id| queued.contains(id));
        drop(st);
        self.book.forget(keys);
    }
}

pub struct DhtBehaviour {
    kad: kad::Behaviour<CompactStore>,
    /// Follows `DhtCommand::SetPaused` (ordered with `Provide` on the same channel).
    paused: bool,
    commands: mpsc::UnboundedReceiver<DhtCommand>,
    shared: Arc<DhtShared>,
    provide_queries: HashMap<QueryId, ProvideKey>,
    /// Recently learned listen addresses (from identify) of peers Kademlia could not route to.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Some external address was confirmed (Kademlia puts them into our provider records).
    has_external_addr: bool,
    /// The `public` profile: keys provided before the first external address was confirmed went out without
    /// addresses, so they are provided again once, when it is.
    reprovide_on_first_external_addr: bool,
}

impl DhtBehaviour {
    pub fn new(
        local: PeerId,
        server_mode: bool,
        reprovide_on_first_external_addr: bool,
        commands: mpsc::UnboundedReceiver<DhtCommand>,
        shared: Arc<DhtShared>,
    ) -> Self {
        let store = CompactStore::new(
            local,
            shared.clone(),
            CompactStoreLimits {
                max_other_keys: FOREIGN_PROVIDER_KEYS,
                max_records: MAX_RECORDS,
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
            paused: false,
            commands,
            shared,
            provide_queries: HashMap::new(),
            peer_addrs: HashMap::new(),
            has_external_addr: false,
            reprovide_on_first_external_addr,
        }
    }

    fn on_command(&mut self, cmd: DhtCommand) {
        match cmd {
            DhtCommand::Provide(ids) if self.paused => {
                // Sent by the announcer just before the pause reached us: back to the queue, announced on resume.
                self.shared.enqueue(ids);
            }
            DhtCommand::Provide(ids) => self.provide(ids),
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

    /// Starts a provide query per key, at most `MAX_INFLIGHT_PROVIDES` at a time (the rest goes back to the queue).
    /// Offline, or no DHT peer known yet: only the local records (they answer peers that ask us), and the network
    /// part waits until a peer enters the routing table (`RoutingUpdated`); such keys are not even looked up.
    fn provide(&mut self, ids: Vec<KeyId>) {
        let without_peers = self.routing_table_is_empty();
        let mut not_now = Vec::new();
        let mut ids = ids.into_iter();
        while let Some(id) = ids.next() {
            if !without_peers
                && self.shared.inflight.load(Ordering::SeqCst) >= MAX_INFLIGHT_PROVIDES
            {
                // A batch sent while no peer was known, and one arrived: the rest waits its turn.
                self.shared
                    .enqueue(std::iter::once(id).chain(ids).collect());
                break;
            }
            {
                let mut st = self.shared.state.lock().unwrap();
                if st.provided.len() >= MAX_PROVIDED_KEYS && !st.provided.contains(id) {
                    tracing::warn!(id = %format!("{id:016x}"), "provided-key limit ({MAX_PROVIDED_KEYS}) reached; not announcing");
                    continue;
                }
                if without_peers {
                    st.provided.held_without_peers(id, unix_now_secs());
                    self.shared.waiting_for_peers.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            let Some(keys) = self.shared.keys_with_id(id) else {
                // The book cannot tell now (the index is being compacted): queued again, asked next tick.
                not_now.push(id);
                continue;
            };
            if keys.is_empty() {
                // The book no longer names it (its artifact is gone): nothing to provide.
                tracing::debug!(id = %format!("{id:016x}"), "no key with this id any more: not provided");
                self.shared.state.lock().unwrap().provided.remove(id);
                continue;
            }
            for key in keys {
                match self
                    .kad
                    .start_providing(RecordKey::new(&key.multihash_bytes()))
                {
                    Ok(query) => {
                        self.shared.state.lock().unwrap().provided.handed_over(
                            id,
                            self.has_external_addr,
                            unix_now_secs(),
                        );
                        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
                        self.provide_queries.insert(query, key);
                    }
                    Err(e) => tracing::warn!(%key, "cannot provide: {e}"),
                }
            }
        }
        if !not_now.is_empty() {
            self.shared.enqueue(not_now);
        }
    }

    /// Paused means invisible: nobody learns from us that we provide anything. Provide queries already under way
    /// still finish (libp2p-kad cannot cancel them), and records stored with other peers stay until their TTL.
    /// Resumed: the local records answer again; the network part is left to the reprovide schedule (which runs at
    /// once if it fell due during the pause), so a resume does not trigger a burst of provide queries.
    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        self.kad.store_mut().set_own_records_hidden(paused);
        let keys = self.shared.state.lock().unwrap().provided.len();
        if paused {
            tracing::debug!(keys, "paused: own provider records withdrawn");
        } else {
            tracing::debug!(keys, "resumed: own provider records restored");
        }
    }

    /// The first confirmed external address (the `public` profile): what went out without addresses goes again.
    fn on_external_addr_confirmed(&mut self) {
        if self.has_external_addr {
            return;
        }
        self.has_external_addr = true;
        if !self.reprovide_on_first_external_addr {
            return;
        }
        let again = self
            .shared
            .state
            .lock()
            .unwrap()
            .provided
            .take_without_addrs();
        if !again.is_empty() {
            tracing::info!(
                keys = again.len(),
                "first external address confirmed: providing again the keys announced without it"
            );
            self.shared.enqueue(again);
        }
    }

    fn routing_table_is_empty(&mut self) -> bool {
        self.kad.kbuckets().all(|bucket| bucket.num_entries() == 0)
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
                    if let Some(key) = self.provide_queries.remove(&id) {
                        self.shared.inflight.fetch_sub(1, Ordering::SeqCst);
                        self.shared.state.lock().unwrap().provided.finished(
                            key.id(),
                            res.is_ok(),
                            unix_now_secs(),
                        );
                        self.shared.wake.notify_one();
                        match res {
                            Ok(_) => tracing::trace!(%key, "provided"),
                            // The record stays stored locally; the network part is retried later (`reprovide`).
                            Err(e) => tracing::debug!(%key, "provide query: {e}"),
                        }
                    }
                }
            }
            kad::Event::RoutingUpdated { .. } => {
                if self.shared.waiting_for_peers.swap(false, Ordering::SeqCst) {
                    let held = self
                        .shared
                        .state
                        .lock()
                        .unwrap()
                        .provided
                        .take_without_peers();
                    tracing::debug!(
                        keys = held.len(),
                        "a DHT peer is known: providing the keys held back"
                    );
                    self.shared.enqueue(held);
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
    type ConnectionHandler = <kad::Behaviour<CompactStore> as NetworkBehaviour>::ConnectionHandler;
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
        if let FromSwarm::ExternalAddrConfirmed(_) = &event {
            self.on_external_addr_confirmed();
        }
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

/// Hands queued keys to Kademlia in bounded batches; waits while paused; requeues each provided key when its cycle
/// ends; saves changed last-provided times now and then.
pub async fn announcer(
    shared: Arc<DhtShared>,
    commands: mpsc::UnboundedSender<DhtCommand>,
    paused: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_sweep = tokio::time::Instant::now();
    let mut last_save = tokio::time::Instant::now();
    loop {
        // With keys queued, look again every TICK (room frees up as provide queries finish); with none, sleep until
        // a key is queued (`enqueue` wakes us), the next key falls due or changed times are to be saved: no
        // wake-ups at idle. Paused: only a resume (which wakes us) or a save.
        let now = tokio::time::Instant::now();
        let (queued, next_due_secs, dirty) = {
            let st = shared.state.lock().unwrap();
            (
                !st.queue.is_empty(),
                st.provided.next_due_secs(),
                st.provided.is_dirty(),
            )
        };
        let is_paused = paused.load(Ordering::SeqCst);
        let mut wake_at = if is_paused {
            None
        } else if queued {
            Some(now + TICK)
        } else {
            next_due_secs.map(|due| {
                let in_secs = due.saturating_sub(unix_now_secs());
                (now + Duration::from_secs(in_secs)).max(last_sweep + SWEEP_GAP)
            })
        };
        if dirty {
            let save_at = last_save + HISTORY_SAVE_GAP;
            wake_at = Some(wake_at.map_or(save_at, |at| at.min(save_at)));
        }
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = shared.wake.notified() => {},
            _ = sleep => {},
        }
        if *shutdown.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= last_save + HISTORY_SAVE_GAP && shared.state.lock().unwrap().provided.is_dirty() {
            last_save = now;
            let for_save = shared.clone();
            let _ = tokio::task::spawn_blocking(move || for_save.save_history()).await;
        }
        if paused.load(Ordering::SeqCst) {
            continue;
        }
        if now >= last_sweep + SWEEP_GAP {
            last_sweep = now;
            let due = shared
                .state
                .lock()
                .unwrap()
                .provided
                .take_due(unix_now_secs());
            if !due.is_empty() {
                tracing::debug!(keys = due.len(), "reproviding keys whose cycle ended");
                shared.enqueue(due);
            }
        }
        let room = if shared.waiting_for_peers.load(Ordering::SeqCst) {
            HELD_BATCH
        } else {
            MAX_INFLIGHT_PROVIDES
                .saturating_sub(shared.inflight.load(Ordering::SeqCst))
                .min(BATCH)
        };
        if room == 0 {
            continue;
        }
        let batch: Vec<KeyId> = {
            let mut st = shared.state.lock().unwrap();
            let mut batch = Vec::with_capacity(room);
            while batch.len() < room {
                let Some(id) = st.queue.pop_front() else {
                    break;
                };
                st.queued.remove(&id);
                batch.push(id);
            }
            if st.queue.is_empty() && st.queue.capacity() > 0 {
                // A first scan queues every key at once; an idle daemon should not keep that peak's memory.
                let was_large = st.queue.capacity() >= 4096;
                st.queue.shrink_to_fit();
                st.queued.shrink_to_fit();
                if was_large {
                    crate::release_freed_memory();
                }
            }
            batch
        };
        if !batch.is_empty() && commands.unbounded_send(DhtCommand::Provide(batch)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connexa::prelude::dht::store::RecordStore;
    use connexa::prelude::swarm::derive_prelude::ExternalAddrConfirmed;

    fn key(n: u8) -> ProvideKey {
        ProvideKey::Sha256([n; 32])
    }

    /// The keys' ids, the keys announced to the book (as `DhtShared::enqueue_or_restore` does).
    fn ids(shared: &DhtShared, keys: &[ProvideKey]) -> Vec<KeyId> {
        shared.book.remember(keys);
        keys.iter().map(ProvideKey::id).collect()
    }

    fn queued(shared: &DhtShared) -> HashSet<KeyId> {
        let mut st = shared.state.lock().unwrap();
        st.queued.clear();
        st.queue.drain(..).collect()
    }

    fn confirm(dht: &mut DhtBehaviour, addr: &str) {
        let addr: Multiaddr = addr.parse().unwrap();
        dht.on_swarm_event(FromSwarm::ExternalAddrConfirmed(ExternalAddrConfirmed {
            addr: &addr,
        }));
    }

    fn behaviour(public: bool) -> (DhtBehaviour, Arc<DhtShared>) {
        let shared = Arc::new(DhtShared::default());
        let (_commands, rx) = mpsc::unbounded();
        let mut dht = DhtBehaviour::new(PeerId::random(), !public, public, rx, shared.clone());
        // One DHT peer in the routing table, so provide queries can start.
        dht.kad.add_address(
            &PeerId::random(),
            "/ip4/192.0.2.1/tcp/4001".parse().unwrap(),
        );
        (dht, shared)
    }

    #[tokio::test]
    async fn without_dht_peers_only_the_local_record_is_stored_until_a_peer_is_known() {
        let shared = Arc::new(DhtShared::default());
        let (_commands, rx) = mpsc::unbounded();
        let local = PeerId::random();
        let mut dht = DhtBehaviour::new(local, true, false, rx, shared.clone());
        dht.on_command(DhtCommand::Provide(ids(&shared, &[key(1), key(2)])));
        assert!(dht.provide_queries.is_empty(), "no query without peers");
        assert!(shared.waiting_for_peers.load(Ordering::SeqCst));
        assert!(queued(&shared).is_empty());
        assert_eq!(shared.state.lock().unwrap().provided.len(), 2);
        let providers = dht
            .kad
            .store_mut()
            .providers(&RecordKey::new(&key(1).multihash_bytes()));
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].provider, local);
        // A peer enters the table: the held keys are queued once, and their queries start.
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().unwrap();
        dht.kad.add_address(&peer, addr.clone());
        let routing_updated = loop {
            match std::future::poll_fn(|cx| std::task::Poll::Ready(dht.kad.poll(cx))).await {
                std::task::Poll::Ready(ToSwarm::GenerateEvent(
                    event @ kad::Event::RoutingUpdated { .. },
                )) => break event,
                std::task::Poll::Ready(_) => continue,
                std::task::Poll::Pending => panic!("no RoutingUpdated event"),
            }
        };
        dht.on_kad_event(routing_updated);
        assert!(!shared.waiting_for_peers.load(Ordering::SeqCst));
        let again = queued(&shared);
        assert_eq!(again, HashSet::from([key(1).id(), key(2).id()]));
        dht.on_command(DhtCommand::Provide(again.into_iter().collect()));
        assert_eq!(dht.provide_queries.len(), 2);
        assert!(shared
            .state
            .lock()
            .unwrap()
            .provided
            .take_without_peers()
            .is_empty());
    }

    fn numbered_keys(count: u32) -> Vec<ProvideKey> {
        (0..count)
            .map(|n| {
                let mut digest = [0u8; 32];
                digest[..4].copy_from_slice(&n.to_be_bytes());
                ProvideKey::Sha256(digest)
            })
            .collect()
    }

    /// With peers, a batch never starts more than MAX_INFLIGHT_PROVIDES queries (a large batch sent while no peer
    /// was known, say): the rest goes back to the queue.
    #[tokio::test]
    async fn a_batch_starts_at_most_the_inflight_limit_of_queries_and_requeues_the_rest() {
        let (mut dht, shared) = behaviour(false);
        let keys = numbered_keys(100);
        dht.on_command(DhtCommand::Provide(ids(&shared, &keys)));
        assert_eq!(dht.provide_queries.len(), MAX_INFLIGHT_PROVIDES);
        assert_eq!(
            shared.inflight.load(Ordering::SeqCst),
            MAX_INFLIGHT_PROVIDES
        );
        let requeued = queued(&shared);
        assert_eq!(requeued.len(), 100 - MAX_INFLIGHT_PROVIDES);
        assert!(keys[MAX_INFLIGHT_PROVIDES..]
            .iter()
            .all(|key| requeued.contains(&key.id())));
    }

    /// While no DHT peer is known the announcer empties the queue in large batches (they only become local
    /// records), not at the query rate; and the queue dedupes what is queued twice.
    #[tokio::test]
    async fn without_peers_the_announcer_hands_the_queue_over_in_large_batches() {
        let shared = Arc::new(DhtShared::default());
        shared.waiting_for_peers.store(true, Ordering::SeqCst);
        let keys = numbered_keys(20_000);
        let keys: Vec<KeyId> = keys.iter().map(ProvideKey::id).collect();
        shared.enqueue(keys.clone());
        shared.enqueue(keys[..10].to_vec());
        assert_eq!(shared.state.lock().unwrap().queue.len(), 20_000);
        let (tx, mut rx) = mpsc::unbounded();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(announcer(
            shared.clone(),
            tx,
            Arc::new(AtomicBool::new(false)),
            shutdown,
        ));
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 20_000 {
            let next = tokio::time::timeout(Duration::from_secs(5), rx.next()).await;
            match next {
                Ok(Some(DhtCommand::Provide(batch))) => sizes.push(batch.len()),
                other => panic!("expected a batch, got {:?}", other.is_ok()),
            }
        }
        assert_eq!(sizes, vec![HELD_BATCH, 20_000 - HELD_BATCH]);
        let queue = {
            let st = shared.state.lock().unwrap();
            (st.queue.len(), st.queue.capacity())
        };
        assert_eq!(queue, (0, 0), "emptied, and its capacity given back");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn keys_provided_before_the_first_external_address_are_provided_again_once() {
        let (mut dht, shared) = behaviour(true);
        dht.on_command(DhtCommand::Provide(ids(&shared, &[key(1), key(2)])));
        assert!(queued(&shared).is_empty());
        confirm(&mut dht, "/ip4/198.51.100.7/tcp/4001");
        assert_eq!(queued(&shared), HashSet::from([key(1).id(), key(2).id()]));
        // Provided with an address: not again, neither at a later confirmation nor for the keys already redone.
        dht.on_command(DhtCommand::Provide(ids(&shared, &[key(1), key(2), key(3)])));
        confirm(&mut dht, "/ip4/198.51.100.8/tcp/4001");
        assert!(queued(&shared).is_empty());
        assert_eq!(shared.state.lock().unwrap().provided.len(), 3);
    }

    /// A queued id whose key the book no longer names (its artifact went meanwhile) is dropped, not provided.
    #[tokio::test]
    async fn an_id_the_book_no_longer_names_leaves_the_schedule() {
        let (mut dht, shared) = behaviour(false);
        let gone = ids(&shared, &[key(1), key(2)]);
        shared.book.forget(&[key(2)]);
        dht.on_command(DhtCommand::Provide(gone));
        assert_eq!(dht.provide_queries.len(), 1);
        assert_eq!(dht.provide_queries.values().next(), Some(&key(1)));
        let st = shared.state.lock().unwrap();
        assert!(st.provided.contains(key(1).id()));
        assert!(!st.provided.contains(key(2).id()));
    }

    /// A book that cannot tell now (the engine's index while it is compacted).
    struct BusyBook;

    impl KeyBook for BusyBook {
        fn multihashes_with_id(&self, _: KeyId) -> Option<Vec<cid::multihash::Multihash<64>>> {
            None
        }
    }

    /// An id the book cannot look up now is queued again, and stays scheduled.
    #[tokio::test]
    async fn an_id_the_book_cannot_look_up_now_is_queued_again() {
        let shared = Arc::new(DhtShared::new(Arc::new(BusyBook)));
        let (_commands, rx) = mpsc::unbounded();
        let mut dht = DhtBehaviour::new(PeerId::random(), true, false, rx, shared.clone());
        dht.kad.add_address(
            &PeerId::random(),
            "/ip4/192.0.2.1/tcp/4001".parse().unwrap(),
        );
        shared
            .state
            .lock()
            .unwrap()
            .provided
            .handed_over(key(1).id(), true, unix_now_secs());
        dht.on_command(DhtCommand::Provide(vec![key(1).id()]));
        assert!(dht.provide_queries.is_empty());
        assert_eq!(queued(&shared), HashSet::from([key(1).id()]));
        assert!(shared.state.lock().unwrap().provided.contains(key(1).id()));
        assert!(
            !shared.is_provided(&key(1)),
            "not answered while it cannot be told"
        );
    }

    #[tokio::test]
    async fn the_local_profile_does_not_provide_again_on_its_addresses() {
        let (mut dht, shared) = behaviour(false);
        dht.on_command(DhtCommand::Provide(ids(&shared, &[key(1)])));
        confirm(&mut dht, "/ip4/127.0.0.1/tcp/4001");
        assert!(queued(&shared).is_empty());
    }
}
