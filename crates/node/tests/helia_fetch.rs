//! End-to-end: a real Helia peer (tests/js/helia-fetch.mjs, Node.js) fetches files from our node over loopback.
//! The slow idle case has `idle` in its name so it can be filtered (`cargo test -p pkgseed-node -- --skip idle`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pkgseed_node::{BlockStore, Cid, Keypair, Multiaddr, NetworkProfile, Node, NodeConfig};
use sha2::{Digest, Sha256};

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const MIB: usize = 1024 * 1024;

struct MemStore {
    blocks: HashMap<Cid, Bytes>,
}

#[async_trait::async_trait]
impl BlockStore for MemStore {
    async fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.blocks.get(cid).cloned()
    }
    async fn has(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }
}

fn cid_of(codec: u64, data: &[u8]) -> Cid {
    let digest = Sha256::digest(data);
    Cid::new_v1(
        codec,
        multihash::Multihash::<64>::wrap(0x12, &digest).unwrap(),
    )
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A UnixFS file: raw leaves under one dag-pb root (balanced layout, as `ipfs add --raw-leaves` makes it).
fn unixfs_file(leaves: &[Vec<u8>]) -> (Cid, Vec<(Cid, Vec<u8>)>) {
    let mut blocks = Vec::new();
    let mut node = Vec::new();
    let total: u64 = leaves.iter().map(|l| l.len() as u64).sum();
    for leaf in leaves {
        let cid = cid_of(RAW, leaf);
        let mut link = Vec::new();
        bytes_field(&mut link, 1, &cid.to_bytes()); // Hash
        varint(&mut link, 3 << 3); // Tsize
        varint(&mut link, leaf.len() as u64);
        bytes_field(&mut node, 2, &link); // Links come first in canonical dag-pb
        blocks.push((cid, leaf.clone()));
    }
    let mut unixfs = vec![0x08, 0x02]; // Type = File
    varint(&mut unixfs, 3 << 3); // filesize
    varint(&mut unixfs, total);
    for leaf in leaves {
        varint(&mut unixfs, 4 << 3); // blocksizes
        varint(&mut unixfs, leaf.len() as u64);
    }
    bytes_field(&mut node, 1, &unixfs); // Data
    let root = cid_of(DAG_PB, &node);
    blocks.push((root, node));
    (root, blocks)
}

struct Fixture {
    big_root: Cid,
    big_content: Vec<u8>,
    small_cid: Cid,
    small_content: Vec<u8>,
    missing: Cid,
    store: Arc<MemStore>,
}

fn fixture() -> Fixture {
    let leaves: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(MIB, i + 1)).collect();
    let (big_root, blocks) = unixfs_file(&leaves);
    let small_content = b"pkgseed: a one-block file\n".repeat(100);
    let small_cid = cid_of(RAW, &small_content);
    let missing = cid_of(RAW, b"this block is not in the store");
    let mut map: HashMap<Cid, Bytes> = blocks
        .into_iter()
        .map(|(c, d)| (c, Bytes::from(d)))
        .collect();
    map.insert(small_cid, Bytes::from(small_content.clone()));
    Fixture {
        big_root,
        big_content: leaves.concat(),
        small_cid,
        small_content,
        missing,
        store: Arc::new(MemStore { blocks: map }),
    }
}

async fn start_node(store: Arc<MemStore>) -> Node {
    let config = NodeConfig {
        network: NetworkProfile::Local,
        listen_addrs: vec![],
        keypair: Keypair::generate_ed25519(),
        key_book: None,
    };
    tokio::time::timeout(Duration::from_secs(60), Node::start(config, store))
        .await
        .expect("node start timed out")
        .expect("node start")
}

async fn peer_addr(node: &Node) -> String {
    let addrs = node.listen_addrs().await;
    let addr: &Multiaddr = addrs
        .iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap_or_else(|| panic!("no loopback TCP listener in {addrs:?}"));
    assert!(
        !addr.to_string().ends_with("/tcp/0"),
        "listen address not bound: {addr}"
    );
    format!("{addr}/p2p/{}", node.peer_id())
}

fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    let dir = dir.canonicalize().unwrap_or(dir);
    assert!(
        dir.join("node_modules/helia").is_dir() && dir.join("node_modules/@helia/bitswap").is_dir(),
        "Helia is not installed: {}/node_modules is missing. Run `npm ci --prefix tests/js` (Node.js 20+) first; \
         these interop tests do not skip.",
        dir.display()
    );
    dir
}

struct HeliaRun {
    ok: bool,
    lines: Vec<serde_json::Value>,
    stderr: String,
}

async fn helia(args: &[String], limit: Duration) -> HeliaRun {
    let dir = js_dir();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("helia-fetch.mjs"))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .expect("cannot run `node`: Node.js 20+ must be on PATH for the Helia interop tests");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("helia-fetch.mjs did not finish within {limit:?}"))
        .expect("helia-fetch.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    HeliaRun {
        ok: out.status.success(),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn line_for<'a>(run: &'a HeliaRun, cid: &Cid) -> &'a serde_json::Value {
    let text = cid.to_string();
    run.lines
        .iter()
        .find(|l| l["cid"] == text)
        .unwrap_or_else(|| {
            panic!(
                "no result line for {text}: {:?}\nstderr: {}",
                run.lines, run.stderr
            )
        })
}

fn assert_fetched(run: &HeliaRun, cid: &Cid, content: &[u8], out_dir: &std::path::Path) {
    let line = line_for(run, cid);
    assert_eq!(
        line["ok"], true,
        "{cid} not fetched: {line}\nstderr: {}",
        run.stderr
    );
    assert_eq!(line["bytes"], content.len() as u64, "{cid}: wrong size");
    assert_eq!(
        line["sha256"],
        hex(&Sha256::digest(content)),
        "{cid}: wrong content hash"
    );
    let written = std::fs::read(out_dir.join(cid.to_string())).expect("output file");
    assert!(
        written == content,
        "{cid}: written file differs from the original"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fetch_args(peer: &str, cids: &[Cid], out_dir: &std::path::Path) -> Vec<String> {
    let mut args = vec![
        "--peer".to_string(),
        peer.to_string(),
        "--out-dir".into(),
        out_dir.display().to_string(),
    ];
    for cid in cids {
        args.push("--cid".into());
        args.push(cid.to_string());
    }
    args.extend(["--timeout-seconds".into(), "60".into()]);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_fetches_multi_block_and_single_block_files() {
    let f = fixture();
    let node = start_node(f.store.clone()).await;
    let peer = peer_addr(&node).await;
    let out = tempfile::tempdir().unwrap();

    let run = helia(
        &fetch_args(&peer, &[f.big_root, f.small_cid], out.path()),
        Duration::from_secs(120),
    )
    .await;
    assert_fetched(&run, &f.big_root, &f.big_content, out.path());
    assert_fetched(&run, &f.small_cid, &f.small_content, out.path());
    assert!(
        run.ok,
        "helia-fetch failed: {:?}\n{}",
        run.lines, run.stderr
    );

    let stats = node.stats().await;
    assert!(stats.blocks_served >= 5, "blocks served: {stats:?}");
    assert!(
        stats.bytes_served >= (3 * MIB + f.small_content.len()) as u64,
        "bytes served: {stats:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_fetches_after_30s_idle_connection() {
    let f = fixture();
    let node = start_node(f.store.clone()).await;
    let peer = peer_addr(&node).await;
    let out = tempfile::tempdir().unwrap();

    let mut args = fetch_args(&peer, &[f.big_root, f.small_cid], out.path());
    args.extend(["--idle-seconds".into(), "30".into()]);
    let run = helia(&args, Duration::from_secs(150)).await;
    assert!(
        run.ok,
        "helia-fetch after idle failed: {:?}\n{}",
        run.lines, run.stderr
    );
    assert_fetched(&run, &f.big_root, &f.big_content, out.path());
    assert_fetched(&run, &f.small_cid, &f.small_content, out.path());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cid_is_not_served() {
    let f = fixture();
    let node = start_node(f.store.clone()).await;
    let peer = peer_addr(&node).await;
    let out = tempfile::tempdir().unwrap();

    // The same run fetches a present block, so "missing" cannot be a dead connection.
    let mut args = fetch_args(&peer, &[f.small_cid], out.path());
    args.extend([
        "--expect-missing".into(),
        f.missing.to_string(),
        "--missing-seconds".into(),
        "4".into(),
    ]);
    let run = helia(&args, Duration::from_secs(90)).await;
    assert_fetched(&run, &f.small_cid, &f.small_content, out.path());
    let line = line_for(&run, &f.missing);
    assert_eq!(
        line["missing"], true,
        "a CID the store does not hold was served: {line}"
    );
    assert!(run.ok, "{:?}\n{}", run.lines, run.stderr);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_serving_and_resume_restores_it() {
    let f = fixture();
    let node = start_node(f.store.clone()).await;
    let peer = peer_addr(&node).await;
    let out = tempfile::tempdir().unwrap();

    node.set_paused(true);
    let args = vec![
        "--peer".to_string(),
        peer.clone(),
        "--expect-missing".into(),
        f.small_cid.to_string(),
        "--expect-missing".into(),
        f.big_root.to_string(),
        "--missing-seconds".into(),
        "4".into(),
    ];
    let run = helia(&args, Duration::from_secs(90)).await;
    assert_eq!(
        line_for(&run, &f.small_cid)["missing"],
        true,
        "served while paused: {:?}",
        run.lines
    );
    assert_eq!(
        line_for(&run, &f.big_root)["missing"],
        true,
        "served while paused: {:?}",
        run.lines
    );
    assert!(run.ok, "{:?}\n{}", run.lines, run.stderr);
    assert_eq!(
        node.stats().await.blocks_served,
        0,
        "blocks were counted as served while paused"
    );

    node.set_paused(false);
    let run = helia(
        &fetch_args(&peer, &[f.big_root, f.small_cid], out.path()),
        Duration::from_secs(120),
    )
    .await;
    assert_fetched(&run, &f.big_root, &f.big_content, out.path());
    assert_fetched(&run, &f.small_cid, &f.small_content, out.path());
    assert!(run.ok, "{:?}\n{}", run.lines, run.stderr);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_wait_while_paused_and_withdraw_drops_them() {
    let f = fixture();
    let node = start_node(f.store.clone()).await;
    let keys = vec![f.big_root, f.small_cid];

    node.set_paused(true);
    node.announce(keys.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = node.stats().await;
    assert_eq!(stats.announced_keys, 0, "announced while paused: {stats:?}");
    assert_eq!(stats.announce_queue_len, 2, "{stats:?}");

    node.set_paused(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = node.stats().await;
        if stats.announced_keys == 2 && stats.announce_queue_len == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "keys not announced after resume: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    node.withdraw(vec![f.small_cid]);
    let stats = node.stats().await;
    assert_eq!(stats.announced_keys, 1, "{stats:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_announcements_exceed_kademlias_default_cap() {
    // libp2p-kad's default store refuses the 1,025th provided key; ours must not.
    let store = Arc::new(MemStore {
        blocks: HashMap::new(),
    });
    let node = start_node(store).await;
    let keys: Vec<Cid> = (0..3000u32)
        .map(|i| cid_of(RAW, &i.to_le_bytes()))
        .collect();
    node.announce(keys);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = node.stats().await;
        if stats.announced_keys == 3000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {stats:?} announced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.shutdown().await;
}

/// The engine spawns these futures: they must be `Send` (rust-ipfs's own builder future is not).
#[allow(dead_code)]
fn node_futures_are_send(config: NodeConfig, store: Arc<dyn BlockStore>, node: Node) {
    fn is_send<T: Send>(_: T) {}
    is_send(Node::start(config, store));
    is_send(node.stats());
    is_send(node.listen_addrs());
    is_send(node.shutdown());
}
