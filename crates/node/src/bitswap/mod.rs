//! Our bitswap responder (1.2.0, 1.1.0, 1.0.0): reads wants from every inbound stream (accepted by our own
//! connection handler, [`inbound`]), answers from the [`BlockStore`] on a fresh outbound stream per reply message
//! (opened through libp2p-stream's `Control`), and is where pause, the caps and the memory bounds are enforced.

pub mod inbound;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use connexa::prelude::stream::Control;
use futures::channel::mpsc;
use futures::io::BufReader;
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt, StreamExt};
use rust_ipfs::{PeerId, Stream, StreamProtocol};
use tokio::sync::{watch, Semaphore};

use crate::limits::Limits;
use crate::BlockStore;
use inbound::InboundStream;
use wire::{Inbound, Outbound, Presence, Version};

/// Largest inbound message we accept (Helia and boxo send up to 4 MiB).
pub const MAX_INBOUND_MESSAGE: usize = 4 * 1024 * 1024;
/// Target size of one reply message; a single larger block still goes alone.
pub const MAX_OUTBOUND_MESSAGE: usize = 2 * 1024 * 1024;
/// Bound on concurrent inbound streams per peer (each carries one or more messages); a stream over it is reset,
/// counted in `inbound_streams_refused` and logged.
const MAX_INBOUND_STREAMS_PER_PEER: usize = 1024;
/// Inbound message bodies held in memory at once, all peers together. A reader waits for room before it reads a
/// body, so a flood of large messages is slowed by stream back-pressure (yamux windows), not dropped.
const INBOUND_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Encoded reply messages held in memory at once, all peers together (a sender waits for room before encoding).
const REPLY_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Bound on pending wants per peer.
const MAX_WANTS_PER_PEER: usize = 16 * 1024;
/// Write granularity: pause and the upload cap are checked between chunks so a large reply stops within the second
/// and a capped rate is smooth.
const WRITE_CHUNK: usize = 16 * 1024;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Once a length prefix has arrived, the body must follow within this time.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Counters {
    pub blocks_served: AtomicU64,
    pub bytes_served: AtomicU64,
    /// Bitswap bytes written to peers (framing, presences and blocks), as they cross the wire.
    pub bytes_uploaded: AtomicU64,
    /// Bitswap bytes read from peers (length prefixes and messages).
    pub bytes_downloaded: AtomicU64,
    /// Inbound bitswap streams negotiated by our connection handler.
    pub inbound_streams_accepted: AtomicU64,
    /// Inbound bitswap streams reset without being read (per-peer bound, or the responder has stopped).
    pub inbound_streams_refused: AtomicU64,
    /// The part of `bytes_uploaded` / `bytes_downloaded` exchanged with peers connected over QUIC only: the kernel's
    /// TCP counters never see it, so `tcp_counters` leaves it out when it matches TCP bytes against bitswap bytes.
    pub bytes_uploaded_quic: AtomicU64,
    pub bytes_downloaded_quic: AtomicU64,
    /// Open connections per peer: (TCP, QUIC), kept by [`inbound::InboundBehaviour`].
    pub connections: Mutex<HashMap<PeerId, (u32, u32)>>,
    /// The remote socket address of each open TCP connection of the swarm (with a count), kept by
    /// [`inbound::InboundBehaviour`]: `tcp_counters` counts only sockets connected to one of these, so other TCP
    /// sockets of the process (a WebView's automation link, the local gateway) are never taken for node traffic.
    pub tcp_remotes: Mutex<HashMap<std::net::SocketAddr, u32>>,
}

impl Counters {
    /// Whether every open connection to `peer` is QUIC (a peer with a TCP connection too counts as TCP: the
    /// overhead is then undercounted, never overcounted).
    pub fn quic_only(&self, peer: &PeerId) -> bool {
        matches!(self.connections.lock().unwrap().get(peer), Some(&(0, quic)) if quic > 0)
    }

    /// Whether any TCP connection is open (the TCP counters have something to read).
    pub fn tcp_connections_open(&self) -> bool {
        self.connections
            .lock()
            .unwrap()
            .values()
            .any(|&(tcp, _)| tcp > 0)
    }

    /// Counts `n` bitswap bytes sent (`upload`) or received, and their QUIC share.
    fn add_bitswap_bytes(&self, upload: bool, over_quic: bool, n: u64) {
        let (total, quic) = if upload {
            (&self.bytes_uploaded, &self.bytes_uploaded_quic)
        } else {
            (&self.bytes_downloaded, &self.bytes_downloaded_quic)
        };
        total.fetch_add(n, Ordering::Relaxed);
        if over_quic {
            quic.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Want {
    have_only: bool,
    send_dont_have: bool,
}

#[derive(Default)]
struct Ledger {
    order: VecDeque<Cid>,
    wants: HashMap<Cid, Want>,
    version: Option<Version>,
    sender_running: bool,
    inbound_streams: usize,
}

pub struct Responder {
    store: Arc<dyn BlockStore>,
    control: Control,
    paused: Arc<AtomicBool>,
    counters: Arc<Counters>,
    limits: Arc<Limits>,
    ledgers: Mutex<HashMap<PeerId, Ledger>>,
    inbound_buffer: Semaphore,
    reply_buffer: Semaphore,
    shutdown: watch::Receiver<bool>,
}

impl Responder {
    pub fn new(
        store: Arc<dyn BlockStore>,
        control: Control,
        paused: Arc<AtomicBool>,
        counters: Arc<Counters>,
        limits: Arc<Limits>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Responder {
            store,
            control,
            paused,
            counters,
            limits,
            ledgers: Mutex::new(HashMap::new()),
            inbound_buffer: Semaphore::new(INBOUND_BUFFER_BYTES),
            reply_buffer: Semaphore::new(REPLY_BUFFER_BYTES),
            shutdown,
        })
    }

    /// Spawns the loop that takes the streams our connection handler accepted ([`inbound::InboundBehaviour`]).
    pub fn start(
        self: &Arc<Self>,
        incoming: mpsc::UnboundedReceiver<InboundStream>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::clone(self).accept_loop(incoming))
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    async fn accept_loop(self: Arc<Self>, mut incoming: mpsc::UnboundedReceiver<InboundStream>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => break,
                next = incoming.next() => next,
            };
            let Some(InboundStream {
                peer,
                version,
                stream,
            }) = next
            else {
                break;
            };
            {
                let mut ledgers = self.ledgers.lock().unwrap();
                let ledger = ledgers.entry(peer).or_default();
                if ledger.inbound_streams >= MAX_INBOUND_STREAMS_PER_PEER {
                    let refused = self
                        .counters
                        .inbound_streams_refused
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    tracing::warn!(%peer, refused, "over {MAX_INBOUND_STREAMS_PER_PEER} concurrent inbound bitswap streams; resetting one");
                    continue;
                }
                ledger.inbound_streams += 1;
            }
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                this.read_stream(peer, version, stream).await;
                let mut ledgers = this.ledgers.lock().unwrap();
                if let Some(l) = ledgers.get_mut(&peer) {
                    l.inbound_streams -= 1;
                    if l.inbound_streams == 0 && !l.sender_running && l.wants.is_empty() {
                        ledgers.remove(&peer);
                    }
                }
            });
        }
    }

    /// Reads length-prefixed messages until EOF (a peer may also keep one stream open for many messages).
    async fn read_stream(self: &Arc<Self>, peer: PeerId, version: Version, stream: Stream) {
        let mut reader = BufReader::new(stream);
        let mut shutdown = self.shutdown.clone();
        loop {
            let len = tokio::select! {
                _ = shutdown.changed() => return,
                len = read_varint(&mut reader) => len,
            };
            let len = match len {
                Ok(Some(len)) => len as usize,
                Ok(None) => break, // clean EOF
                Err(e) => {
                    tracing::debug!(%peer, "bitswap stream ended: {e}");
                    return;
                }
            };
            if len > MAX_INBOUND_MESSAGE {
                tracing::debug!(%peer, len, "bitswap message too large; closing the stream");
                return;
            }
            // MAX_INBOUND_MESSAGE < INBOUND_BUFFER_BYTES, so one message always fits.
            let _room = tokio::select! {
                _ = shutdown.changed() => return,
                room = self.inbound_buffer.acquire_many(len as u32) => room.expect("never closed"),
            };
            let mut body = vec![0u8; len];
            match tokio::time::timeout(BODY_TIMEOUT, reader.read_exact(&mut body)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "bitswap stream ended mid-message: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "bitswap message body timed out");
                    return;
                }
            }
            // The download cap: the next read waits until this message is paid for, so a fast sender is slowed by
            // stream back-pressure (yamux windows), never dropped.
            let wire_len = len + varint_len(len as u64);
            self.counters
                .add_bitswap_bytes(false, self.counters.quic_only(&peer), wire_len as u64);
            let stopping = || *shutdown.borrow();
            if !self.limits.download.acquire(wire_len, stopping).await {
                return;
            }
            match wire::decode(&body) {
                Ok(msg) => self.on_message(peer, version, msg),
                Err(e) => {
                    tracing::debug!(%peer, "undecodable bitswap message: {e}");
                    return;
                }
            }
        }
        let mut stream = reader.into_inner();
        let _ = stream.close().await;
    }

    fn on_message(self: &Arc<Self>, peer: PeerId, version: Version, msg: Inbound) {
        if self.is_paused() {
            // Serve nothing; tell peers that asked for it that we do not have the block.
            let mut reply = Outbound::default();
            if version.has_presences() {
                for e in msg.entries.iter().filter(|e| !e.cancel && e.send_dont_have) {
                    reply.presences.push((e.cid, Presence::DontHave));
                }
            }
            let mut ledgers = self.ledgers.lock().unwrap();
            if let Some(l) = ledgers.get_mut(&peer) {
                l.order.clear();
                l.wants.clear();
            }
            drop(ledgers);
            if !reply.is_empty() {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = this.send(peer, version, reply).await;
                });
            }
            return;
        }

        let spawn_sender = {
            let mut ledgers = self.ledgers.lock().unwrap();
            let ledger = ledgers.entry(peer).or_default();
            ledger.version = Some(version);
            if msg.full {
                let keep: HashSet<Cid> = msg
                    .entries
                    .iter()
                    .filter(|e| !e.cancel)
                    .map(|e| e.cid)
                    .collect();
                ledger.wants.retain(|cid, _| keep.contains(cid));
            }
            for e in &msg.entries {
                if e.cancel {
                    ledger.wants.remove(&e.cid);
                    continue;
                }
                // want-have exists only in 1.2.0; earlier versions always want the block.
                let have_only = e.want_have && version.has_presences();
                let want = Want {
                    have_only,
                    send_dont_have: e.send_dont_have && version.has_presences(),
                };
                match ledger.wants.get_mut(&e.cid) {
                    Some(existing) => {
                        // A want-block supersedes a want-have, never the reverse.
                        existing.have_only &= want.have_only;
                        existing.send_dont_have |= want.send_dont_have;
                    }
                    None => {
                        if ledger.wants.len() >= MAX_WANTS_PER_PEER {
                            tracing::debug!(%peer, "wantlist too long; ignoring entry");
                            continue;
                        }
                        ledger.wants.insert(e.cid, want);
                        ledger.order.push_back(e.cid);
                    }
                }
            }
            ledger.order.retain(|cid| ledger.wants.contains_key(cid));
            if !ledger.wants.is_empty() && !ledger.sender_running {
                ledger.sender_running = true;
                true
            } else {
                false
            }
        };
        if spawn_sender {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.serve_peer(peer).await });
        }
    }

    /// Pops the next pending want of `peer`, or marks the sender stopped when there is none.
    fn pop_want(&self, peer: PeerId) -> Option<(Cid, Want, Version)> {
        let mut ledgers = self.ledgers.lock().unwrap();
        let ledger = ledgers.get_mut(&peer)?;
        while let Some(cid) = ledger.order.pop_front() {
            if let Some(want) = ledger.wants.remove(&cid) {
                return Some((cid, want, ledger.version.unwrap_or(Version::V120)));
            }
        }
        ledger.sender_running = false;
        if ledger.inbound_streams == 0 {
            ledgers.remove(&peer);
        }
        None
    }

    /// Drains one peer's wants into reply messages; one task per peer with pending wants.
    async fn serve_peer(self: Arc<Self>, peer: PeerId) {
        let mut msg = Outbound::default();
        let mut msg_version = Version::V120;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let Some((cid, want, version)) = self.pop_want(peer) else {
                break;
            };
            if version != msg_version && !msg.is_empty() {
                let _ = self.send(peer, msg_version, std::mem::take(&mut msg)).await;
            }
            msg_version = version;
            if self.is_paused() {
                if want.send_dont_have {
                    msg.presences.push((cid, Presence::DontHave));
                }
                continue;
            }
            if want.have_only {
                if self.store.has(&cid).await {
                    msg.presences.push((cid, Presence::Have));
                } else if want.send_dont_have {
                    msg.presences.push((cid, Presence::DontHave));
                }
            } else {
                match self.store.get(&cid).await {
                    Some(data) => {
                        if !msg.is_empty() && msg.size_hint() + data.len() > MAX_OUTBOUND_MESSAGE {
                            let _ = self.send(peer, msg_version, std::mem::take(&mut msg)).await;
                        }
                        msg.blocks.push((cid, data));
                    }
                    None => {
                        if want.send_dont_have {
                            msg.presences.push((cid, Presence::DontHave));
                        }
                    }
                }
            }
            if msg.size_hint() >= MAX_OUTBOUND_MESSAGE {
                let _ = self.send(peer, msg_version, std::mem::take(&mut msg)).await;
            }
        }
        if !msg.is_empty() {
            let _ = self.send(peer, msg_version, msg).await;
        }
    }

    /// Sends one message on a new outbound stream. Paused: blocks are withheld (DONT_HAVE where asked).
    async fn send(&self, peer: PeerId, version: Version, mut msg: Outbound) -> Result<(), String> {
        if self.is_paused() {
            withhold_blocks(&mut msg);
        }
        if msg.is_empty() || !version.has_presences() && msg.blocks.is_empty() {
            return Ok(());
        }
        let room_bytes = msg.size_hint().min(REPLY_BUFFER_BYTES) as u32;
        let mut shutdown = self.shutdown.clone();
        let _room = tokio::select! {
            _ = shutdown.changed() => return Err("shutting down".into()),
            room = self.reply_buffer.acquire_many(room_bytes) => room.expect("never closed"),
        };
        let body = msg.encode(version);
        let mut prefix = Vec::with_capacity(10);
        wire::put_varint(&mut prefix, body.len() as u64);
        let frame_len = prefix.len() + body.len();

        let mut control = self.control.clone();
        let protocol = StreamProtocol::new(version.protocol());
        let mut stream =
            match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("open stream to {peer}: {e}")),
                Err(_) => return Err(format!("open stream to {peer}: timed out")),
            };
        let paused = &self.paused;
        let has_blocks = !msg.blocks.is_empty();
        let over_quic = self.counters.quic_only(&peer);
        let stop = || (paused.load(Ordering::SeqCst) && has_blocks) || *self.shutdown.borrow();
        let write = async {
            for chunk in std::iter::once(&prefix[..]).chain(body.chunks(WRITE_CHUNK)) {
                // The upload cap (shared by every stream), then the pause check right before the bytes go out.
                if !self.limits.upload.acquire(chunk.len(), stop).await || stop() {
                    // Dropping the stream unclosed resets it: the peer discards the partial message.
                    return Err("paused mid-message".to_string());
                }
                stream.write_all(chunk).await.map_err(|e| e.to_string())?;
                self.counters
                    .add_bitswap_bytes(true, over_quic, chunk.len() as u64);
            }
            stream.close().await.map_err(|e| e.to_string())
        };
        // A capped upload takes longer: allow the time the cap needs on top of the usual limit.
        let write_timeout = match self.limits.upload.rate() {
            0 => WRITE_TIMEOUT,
            rate => WRITE_TIMEOUT + Duration::from_secs_f64(frame_len as f64 / rate as f64),
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => {
                let bytes: u64 = msg.blocks.iter().map(|(_, d)| d.len() as u64).sum();
                self.counters
                    .blocks_served
                    .fetch_add(msg.blocks.len() as u64, Ordering::Relaxed);
                self.counters
                    .bytes_served
                    .fetch_add(bytes, Ordering::Relaxed);
                tracing::trace!(%peer, blocks = msg.blocks.len(), presences = msg.presences.len(), "bitswap reply sent");
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "bitswap reply failed: {e}");
                Err(e)
            }
            Err(_) => {
                tracing::debug!(%peer, "bitswap reply timed out");
                Err("write timed out".into())
            }
        }
    }
}

fn withhold_blocks(msg: &mut Outbound) {
    // We do not know whether the peer asked for DONT_HAVE here; saying nothing is always correct.
    msg.blocks.clear();
    msg.presences.retain(|(_, p)| *p == Presence::DontHave);
}

/// Bytes an unsigned varint of `v` takes.
fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads an unsigned varint; `Ok(None)` on EOF before the first byte.
async fn read_varint<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<u64>> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        let n = r.read(&mut b).await?;
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        v |= ((b[0] & 0x7f) as u64) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint too long",
    ))
}
