//! Our provider records over the real Kademlia protocol: a js-libp2p DHT client (tests/js/dht-providers.mjs,
//! @libp2p/kad-dht, client mode) sends GET_PROVIDERS to a node over loopback. Announced keys name the node, keys never
//! announced or withdrawn name nobody, and while paused the node names nobody for its own keys (resume restores it).

use std::process::Stdio;
use std::time::Duration;

use pkgseed_node::{Cid, Multiaddr, NetworkProfile, Node};

mod common;

use common::{js_dir, raw_cid, start_empty_node};

async fn peer_addr(node: &Node) -> String {
    let addrs = node.listen_addrs().await;
    let addr: &Multiaddr = addrs
        .iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap_or_else(|| panic!("no loopback TCP listener in {addrs:?}"));
    format!("{addr}/p2p/{}", node.peer_id())
}

/// One fresh DHT client asks for the providers of `cids`; returns cid → providers. Every query must have reached
/// the node (so an empty list means "the node names nobody", not "the node was never asked").
async fn find_providers(node: &Node, cids: &[Cid]) -> Vec<(Cid, Vec<String>)> {
    let peer = peer_addr(node).await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(js_dir().join("dht-providers.mjs"))
        .args([
            "--peer",
            &peer,
            "--timeout-seconds",
            "15",
            "--routing-seconds",
            "15",
        ])
        .current_dir(js_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for c in cids {
        cmd.args(["--find-providers", &c.to_string()]);
    }
    let child = cmd
        .spawn()
        .expect("cannot run `node`: Node.js 20+ must be on PATH for the DHT interop tests");
    let limit = Duration::from_secs(15 * cids.len() as u64 + 45);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("dht-providers.mjs did not finish within {limit:?}"))
        .expect("dht-providers.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dht-providers.mjs failed ({})\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let me = node.peer_id().to_string();
    cids.iter()
        .map(|cid| {
            let text = cid.to_string();
            let line = lines
                .iter()
                .find(|l| l["cid"] == text)
                .unwrap_or_else(|| panic!("no line for {text}: {stdout}\nstderr: {stderr}"));
            let list = |field: &str| -> Vec<String> {
                line[field]
                    .as_array()
                    .unwrap_or_else(|| panic!("{field} missing: {line}"))
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            assert!(
                list("responded").contains(&me),
                "{text}: the node did not answer GET_PROVIDERS: {line}"
            );
            (*cid, list("providers"))
        })
        .collect()
}

async fn wait_stats(node: &Node, announced: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = node.stats().await;
        if stats.announced_keys == announced && stats.announce_queue_len == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: expected {announced} announced keys and an empty queue: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_providers_names_us_for_announced_keys_only_and_not_while_paused() {
    let node = start_empty_node(NetworkProfile::Local).await;
    let me = vec![node.peer_id().to_string()];
    let none: Vec<String> = vec![];
    let (a, b, never, late) = (
        raw_cid(b"announced a"),
        raw_cid(b"announced b"),
        raw_cid(b"never announced"),
        raw_cid(b"announced while paused"),
    );

    node.announce(vec![a, b]);
    wait_stats(&node, 2, "after announce").await;
    let got = find_providers(&node, &[a, b, never]).await;
    assert_eq!(
        got,
        vec![(a, me.clone()), (b, me.clone()), (never, none.clone())]
    );

    node.withdraw(vec![b]);
    let got = find_providers(&node, &[a, b]).await;
    assert_eq!(
        got,
        vec![(a, me.clone()), (b, none.clone())],
        "after withdraw"
    );

    node.set_paused(true);
    node.announce(vec![late]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = find_providers(&node, &[a, late]).await;
    assert_eq!(
        got,
        vec![(a, none.clone()), (late, none.clone())],
        "paused: the node must not name itself as a provider"
    );
    let stats = node.stats().await;
    assert_eq!(
        stats.announce_queue_len, 1,
        "announced while paused: {stats:?}"
    );

    node.set_paused(false);
    wait_stats(&node, 2, "after resume").await;
    let got = find_providers(&node, &[a, b, late]).await;
    assert_eq!(
        got,
        vec![(a, me.clone()), (b, none), (late, me)],
        "after resume"
    );
    node.shutdown().await;
}
