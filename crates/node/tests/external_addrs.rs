//! External address confirmation end to end, on loopback: a node in the test-only `LoopbackObservedAddrs` profile
//! (the public profile's address handling, loopback counting as routable, nothing recorded at start) starts with no
//! external address; three js-libp2p Kademlia nodes (tests/js/dht-sink.mjs) dial it, identify tells it the address
//! they see, and once three distinct peers reported it the node confirms it, Kademlia switches to server mode, and
//! its ADD_PROVIDER records carry the address, so the js-libp2p nodes (which drop a record without addresses)
//! store them.

use std::process::Stdio;
use std::time::Duration;

use pkgseed_node::{Cid, Multiaddr, NetworkProfile};
use rust_ipfs::Protocol;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

mod common;

use common::{js_dir, raw_cid, start_empty_node};

/// The next JSON line dht-sink.mjs prints (bounded wait).
async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> serde_json::Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("dht-sink.mjs printed nothing within 90 s")
            .expect("dht-sink.mjs stdout")
            .expect("dht-sink.mjs ended early (see its stderr above)");
        if let Ok(v) = serde_json::from_str(&line) {
            return v;
        }
    }
}

const KEYS: usize = 10;
const JS_NODES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_address_confirmed_by_three_peers_goes_into_provider_records() {
    let node = start_empty_node(NetworkProfile::LoopbackObservedAddrs).await;
    let listen: Multiaddr = node
        .listen_addrs()
        .await
        .into_iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP listener");
    assert_eq!(
        node.external_addrs().await,
        Vec::<Multiaddr>::new(),
        "nothing is confirmed before any peer reported an address"
    );

    let me = node.peer_id().to_string();
    let mut sink = tokio::process::Command::new("node")
        .arg(js_dir().join("dht-sink.mjs"))
        .args(["--dial", &format!("{listen}/p2p/{me}"), "--provider", &me])
        .args(["--expect-keys", &KEYS.to_string()])
        .args(["--nodes", &JS_NODES.to_string()])
        .args(["--routing-seconds", "30", "--timeout-seconds", "60"])
        .args(["--stall-seconds", "20"])
        .current_dir(js_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run `node`: Node.js 20+ must be on PATH for the DHT interop tests");
    let mut lines = BufReader::new(sink.stdout.take().unwrap()).lines();

    // "ready" means every js node has our node in its Kademlia routing table, which js-libp2p does only for a peer
    // that speaks the DHT protocol: our Kademlia is in automatic mode and serves only once an address is confirmed.
    let ready = next_json(&mut lines).await;
    assert_eq!(ready["ready"], true, "{ready}");
    let external = node.external_addrs().await;
    assert_eq!(
        external,
        vec![listen.clone()],
        "the address {JS_NODES} peers observed must be confirmed"
    );

    for addr in ready["addrs"].as_array().expect("addrs") {
        let mut addr: Multiaddr = addr.as_str().unwrap().parse().unwrap();
        if let Some(Protocol::P2p(peer)) = addr.pop() {
            node.add_dht_peer(peer, addr);
        }
    }
    let keys: Vec<Cid> = (0..KEYS)
        .map(|i| raw_cid(format!("external address key {i}").as_bytes()))
        .collect();
    node.announce(keys);

    let summary = next_json(&mut lines).await;
    assert_eq!(
        summary["keys"].as_u64(),
        Some(KEYS as u64),
        "js-libp2p stores only provider records that carry addresses: {summary}"
    );
    assert_eq!(summary["done"], true, "{summary}");
    let status = tokio::time::timeout(Duration::from_secs(30), sink.wait())
        .await
        .expect("dht-sink.mjs exit")
        .expect("dht-sink.mjs status");
    assert!(status.success(), "dht-sink.mjs: {status}");
    node.shutdown().await;
}
