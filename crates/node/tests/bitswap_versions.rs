//! Wire-level checks of the responder with a bare rust-ipfs peer speaking raw bitswap: 1.0.0 (`blocks`), 1.1.0
//! (`payload` with CID prefix), 1.2.0 presences (HAVE, DONT_HAVE), many streams at once, cancel. Helia only speaks
//! 1.2.0, so the older versions are checked here against the message.proto layout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use pkgseed_node::{BlockStore, Cid, Keypair, NetworkProfile, Node, NodeConfig};
use rust_ipfs::{Ipfs, StreamProtocol};
use sha2::{Digest, Sha256};

struct MemStore(HashMap<Cid, Bytes>);

#[async_trait::async_trait]
impl BlockStore for MemStore {
    async fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.0.get(cid).cloned()
    }
    async fn has(&self, cid: &Cid) -> bool {
        self.0.contains_key(cid)
    }
}

fn raw_cid(data: &[u8]) -> Cid {
    Cid::new_v1(
        0x55,
        multihash::Multihash::<64>::wrap(0x12, &Sha256::digest(data)).unwrap(),
    )
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

/// (cid, want_have, send_dont_have, cancel)
fn want_message(entries: &[(Cid, bool, bool, bool)]) -> Vec<u8> {
    let mut wl = Vec::new();
    for (cid, have, sdh, cancel) in entries {
        let mut e = Vec::new();
        field_bytes(&mut e, 1, &cid.to_bytes());
        field_varint(&mut e, 2, 1);
        if *cancel {
            field_varint(&mut e, 3, 1);
        }
        if *have {
            field_varint(&mut e, 4, 1);
        }
        if *sdh {
            field_varint(&mut e, 5, 1);
        }
        field_bytes(&mut wl, 1, &e);
    }
    let mut msg = Vec::new();
    field_bytes(&mut msg, 1, &wl);
    let mut framed = Vec::new();
    varint(&mut framed, msg.len() as u64);
    framed.extend_from_slice(&msg);
    framed
}

fn read_varint(buf: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for i in 0.. {
        let b = buf[0];
        *buf = &buf[1..];
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Top-level fields of a protobuf message: (field, bytes or varint-as-bytes).
fn fields(mut buf: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = read_varint(&mut buf);
        match key & 7 {
            0 => out.push((key >> 3, read_varint(&mut buf).to_le_bytes().to_vec())),
            2 => {
                let len = read_varint(&mut buf) as usize;
                out.push((key >> 3, buf[..len].to_vec()));
                buf = &buf[len..];
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

#[derive(Debug, Default)]
struct Reply {
    blocks_v10: Vec<Vec<u8>>,
    payload: Vec<(Vec<u8>, Vec<u8>)>,
    presences: Vec<(Cid, u64)>,
}

fn parse_reply(body: &[u8]) -> Reply {
    let mut r = Reply::default();
    for (f, v) in fields(body) {
        match f {
            2 => r.blocks_v10.push(v),
            3 => {
                let inner = fields(&v);
                let get = |n| {
                    inner
                        .iter()
                        .find(|(f, _)| *f == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                r.payload.push((get(1), get(2)));
            }
            4 => {
                let inner = fields(&v);
                let cid = Cid::try_from(inner.iter().find(|(f, _)| *f == 1).unwrap().1.as_slice())
                    .unwrap();
                let ty = inner
                    .iter()
                    .find(|(f, _)| *f == 2)
                    .map(|(_, v)| v[0] as u64)
                    .unwrap_or(0);
                r.presences.push((cid, ty));
            }
            _ => {}
        }
    }
    r
}

async fn client_for(node: &Node) -> (Ipfs, connexa::prelude::stream::Control) {
    let ipfs = rust_ipfs::builder::IpfsBuilder::<rust_ipfs::dummy::Behaviour>::with_keypair(
        Keypair::generate_ed25519(),
    )
    .unwrap()
    .with_streams()
    .with_custom_behaviour(|_| Ok(rust_ipfs::dummy::Behaviour))
    .enable_tcp()
    .set_listening_addrs(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
    .start()
    .await
    .expect("client start");
    let addr = node.listen_addrs().await[0]
        .clone()
        .with(rust_ipfs::Protocol::P2p(node.peer_id()));
    tokio::time::timeout(Duration::from_secs(10), ipfs.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let control = ipfs.stream_control().await.unwrap();
    (ipfs, control)
}

async fn read_one(stream: rust_ipfs::Stream) -> Vec<u8> {
    let mut stream = stream;
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    let mut buf = all.as_slice();
    let len = read_varint(&mut buf) as usize;
    assert_eq!(buf.len(), len, "one message per reply stream");
    buf.to_vec()
}

async fn start_node(store: MemStore) -> Node {
    let config = NodeConfig {
        network: NetworkProfile::Local,
        listen_addrs: vec![],
        keypair: Keypair::generate_ed25519(),
        key_book: None,
    };
    Node::start(config, Arc::new(store)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_and_presences_on_the_wire() {
    let data = b"hello bitswap".to_vec();
    let cid = raw_cid(&data);
    let absent = raw_cid(b"absent");
    let node = start_node(MemStore(HashMap::from([(cid, Bytes::from(data.clone()))]))).await;
    let (client, mut control) = client_for(&node).await;

    for proto in [
        "/ipfs/bitswap/1.0.0",
        "/ipfs/bitswap/1.1.0",
        "/ipfs/bitswap/1.2.0",
    ] {
        let mut incoming = control.accept(StreamProtocol::new(proto)).unwrap();
        let mut s = control
            .open_stream(node.peer_id(), StreamProtocol::new(proto))
            .await
            .unwrap();
        let entries: Vec<(Cid, bool, bool, bool)> = if proto.ends_with("1.2.0") {
            vec![(cid, true, true, false), (absent, false, true, false)]
        } else {
            vec![(cid, false, false, false), (absent, false, false, false)]
        };
        s.write_all(&want_message(&entries)).await.unwrap();
        s.close().await.unwrap();

        let (peer, reply) = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect(proto)
            .unwrap();
        assert_eq!(peer, node.peer_id());
        let reply = parse_reply(&read_one(reply).await);
        match proto {
            "/ipfs/bitswap/1.0.0" => {
                assert_eq!(reply.blocks_v10, vec![data.clone()], "{proto}: {reply:?}");
                assert!(
                    reply.payload.is_empty() && reply.presences.is_empty(),
                    "{proto}: {reply:?}"
                );
            }
            "/ipfs/bitswap/1.1.0" => {
                assert_eq!(
                    reply.payload,
                    vec![(vec![1, 0x55, 0x12, 32], data.clone())],
                    "{proto}: {reply:?}"
                );
                assert!(
                    reply.blocks_v10.is_empty() && reply.presences.is_empty(),
                    "{proto}: {reply:?}"
                );
            }
            _ => {
                // want-have → HAVE (0), missing with sendDontHave → DONT_HAVE (1); no block for a want-have.
                assert!(reply.payload.is_empty(), "{proto}: {reply:?}");
                assert_eq!(
                    reply.presences,
                    vec![(cid, 0), (absent, 1)],
                    "{proto}: {reply:?}"
                );
            }
        }
        drop(incoming);
    }
    node.shutdown().await;
    client.exit_daemon().await;
}

/// Inbound streams opened in one burst.
const BURST_STREAMS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_inbound_streams_are_all_answered() {
    let blocks: Vec<Vec<u8>> = (0..BURST_STREAMS)
        .map(|i| format!("block {i}").into_bytes())
        .collect();
    let store = MemStore(
        blocks
            .iter()
            .map(|b| (raw_cid(b), Bytes::from(b.clone())))
            .collect(),
    );
    let node = start_node(store).await;
    let (client, mut control) = client_for(&node).await;
    let proto = StreamProtocol::new("/ipfs/bitswap/1.2.0");
    let mut incoming = control.accept(proto.clone()).unwrap();

    // The client's side of libp2p-stream also drops streams it is not ready for: hand each one off at once.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some((_, s)) = incoming.next().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                for (_, data) in parse_reply(&read_one(s).await).payload {
                    let _ = tx.send(data);
                }
            });
        }
    });
    // A burst: every stream is opened and written at the same time, and all stay open until all were written (the
    // node accepts inbound streams in its own connection handler; libp2p-stream's one-slot accept channel used to
    // drop some of these).
    let streams = futures::future::join_all(blocks.iter().map(|b| {
        let mut control = control.clone();
        let proto = proto.clone();
        let peer = node.peer_id();
        let message = want_message(&[(raw_cid(b), false, true, false)]);
        async move {
            let mut s = control.open_stream(peer, proto).await.unwrap();
            s.write_all(&message).await.unwrap();
            s.flush().await.unwrap();
            s
        }
    }))
    .await;
    for mut s in streams {
        s.close().await.unwrap();
    }

    // The burst's answers come back on streams the client opens no slot for in advance: libp2p-stream's one-slot
    // accept channel on the CLIENT side drops an answer whenever the reader task was not scheduled in time (seen
    // under load: 77 of 100). What the node did is proven by its counters below; blocks whose answer the client
    // dropped are wanted again one at a time, so the bytes of every block are still checked.
    let mut got = std::collections::HashSet::new();
    let burst_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < blocks.len() {
        match tokio::time::timeout_at(burst_deadline, rx.recv()).await {
            Ok(Some(data)) => {
                got.insert(data);
            }
            _ => break,
        }
    }
    let from_burst = got.len();
    // Every stream of the burst was accepted by the node (none lost, none refused).
    let after_burst = node.stats().await;
    assert_eq!(
        (
            after_burst.inbound_streams_accepted,
            after_burst.inbound_streams_refused
        ),
        (blocks.len() as u64, 0),
        "{after_burst:?}"
    );
    let mut wants_sent = blocks.len();
    for block in blocks
        .iter()
        .filter(|b| !got.contains(*b))
        .cloned()
        .collect::<Vec<_>>()
    {
        let mut s = control
            .open_stream(node.peer_id(), proto.clone())
            .await
            .unwrap();
        s.write_all(&want_message(&[(raw_cid(&block), false, true, false)]))
            .await
            .unwrap();
        s.close().await.unwrap();
        wants_sent += 1;
        let data = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("block wanted again after the burst never arrived"))
            .unwrap();
        got.insert(data);
    }
    eprintln!(
        "burst: {from_burst} of {} answers reached the client, {} wanted again",
        blocks.len(),
        wants_sent - blocks.len()
    );
    assert_eq!(
        got.len(),
        blocks.len(),
        "every block arrives, with its own bytes"
    );
    assert!(got.iter().all(|data| blocks.contains(data)));
    reader.abort();
    let stats = node.stats().await;
    // Each block was written at least once; an answer the client dropped (reset stream) is not counted as served.
    assert!(
        (blocks.len() as u64..=wants_sent as u64).contains(&stats.blocks_served),
        "{stats:?}"
    );
    assert_eq!(stats.inbound_streams_refused, 0);
    node.shutdown().await;
    client.exit_daemon().await;
}
