//! End-to-end: the local trustless gateway (issue 7; docs/gateway.md). The real `cargo fetch` fills a CARGO_HOME from
//! a public and a private local registry, the real daemon seeds the public crates, and foreign clients use the
//! gateway: Helia with only its trustless-gateway block broker reassembles whole files, and
//! `tests/js/gateway-fetch.mjs` checks raw blocks and CARs with its own parser. Private and unknown CIDs are 404,
//! pause is 503, a file changed under the daemon gives an error and is withdrawn (never wrong bytes), the listener
//! is bound to 127.0.0.1 only, and a non-loopback address is refused.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pkgseed_e2e::registry::{
    incompressible, make_crate, origin_of, CargoProject, Dep, SparseRegistry,
};
use pkgseed_e2e::{
    faults, js_tool, poll, raw_sha256_cid, run, sha256_file, status, wait_first_scan, Daemon,
    RunOutput, TestEnv, TEST_DAEMON_ARGS,
};
use serde_json::Value;

const FIRST_SCAN_TIMEOUT: Duration = Duration::from_secs(90);

/// One HTTP/1.1 exchange over a fresh connection: (status, lowercased headers, raw body bytes as received).
struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http(addr: SocketAddr, method: &str, target: &str) -> HttpReply {
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no response head from {target}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Runs `tests/js/gateway-fetch.mjs` (bounded) and returns its JSON lines with the process output.
fn gateway_fetch(gateway: SocketAddr, args: &[(&str, &str)]) -> (RunOutput, Vec<Value>) {
    let mut cmd = js_tool("gateway-fetch.mjs", "the gateway fetch tool");
    cmd.args([
        "--gateway",
        &format!("http://{gateway}"),
        "--timeout-seconds",
        "60",
    ]);
    for (flag, value) in args {
        cmd.args([*flag, *value]);
    }
    let output = run(
        &mut cmd,
        Duration::from_secs(60 * args.len().max(1) as u64 + 60),
    );
    let lines = output
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .collect();
    (output, lines)
}

fn line<'a>(lines: &'a [Value], key: &str, cid: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l[key].as_str() == Some(cid))
        .unwrap_or_else(|| panic!("no {key} line for {cid} in {lines:#?}"))
}

fn gateway_addr(status: &Value) -> SocketAddr {
    status["gateway"]["listen_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("status reports no gateway address: {:#}", status["gateway"]))
        .parse()
        .expect("gateway.listen_addr is IP:port")
}

fn ls_cids(env: &TestEnv) -> Vec<String> {
    env.pkgseed_json(&["ls", "--json"])
        .as_array()
        .expect("ls --json prints an array")
        .iter()
        .filter_map(|a| a["cid"].as_str().map(str::to_string))
        .collect()
}

/// A public multi-block crate, a public small crate and a private crate in a real cargo cache; the daemon seeding it.
struct World {
    env: TestEnv,
    daemon: Daemon,
    gateway: SocketAddr,
    big: PathBuf,
    small: PathBuf,
    private: PathBuf,
    private_cksum: String,
}

fn setup() -> World {
    let env = TestEnv::new("gw");
    let mut reg = SparseRegistry::new();
    reg.add_registry("public").add_registry("private");
    // ~2.5 MiB of incompressible bytes: a `.crate` of 3 leaves under a dag-pb root.
    let blob = incompressible(2 * 1024 * 1024 + 512 * 1024, "gateway");
    reg.publish(
        "public",
        "gwbig",
        "1.0.0",
        make_crate("gwbig", "1.0.0", &[("blob.bin", &blob)]),
    );
    reg.publish(
        "public",
        "gwsmall",
        "1.0.0",
        make_crate("gwsmall", "1.0.0", &[]),
    );
    reg.publish(
        "private",
        "gwinhouse",
        "1.0.0",
        make_crate("gwinhouse", "1.0.0", &[]),
    );
    env.write_cargo_config(&reg.cargo_config_toml());
    let project = CargoProject::create(
        &env.work.join("consumer"),
        &[
            Dep::new("gwbig", "1", "public"),
            Dep::new("gwsmall", "1", "public"),
            Dep::new("gwinhouse", "1", "private"),
        ],
    );
    project.fetch(&env.cargo_home, &env.home);
    let path_of = |file: &str| {
        origin_of(&env.cargo_home, file).unwrap_or_else(|| panic!("cargo fetch cached no {file}"))
    };
    let (public_origin, big) = path_of("gwbig-1.0.0.crate");
    let (_, small) = path_of("gwsmall-1.0.0.crate");
    let (private_origin, private) = path_of("gwinhouse-1.0.0.crate");
    assert_ne!(public_origin, private_origin);
    env.write_pkgseed_config(&[&public_origin], &[]);
    let private_cksum = reg
        .published()
        .iter()
        .find(|p| p.name == "gwinhouse")
        .unwrap()
        .cksum
        .clone();
    let daemon = Daemon::start(&env, "gw");
    let first = wait_first_scan(&env, FIRST_SCAN_TIMEOUT);
    let gateway = gateway_addr(&first);
    World {
        env,
        daemon,
        gateway,
        big,
        small,
        private,
        private_cksum,
    }
}

fn root_cid(env: &TestEnv, file: &Path) -> String {
    env.pkgseed_cids(None, &[file]).remove(0)
}

#[test]
fn local_gateway_serves_announced_cids_only() {
    let w = setup();
    let env = &w.env;
    let big_cid = root_cid(env, &w.big);
    let small_cid = root_cid(env, &w.small);
    let small_checksum_cid = raw_sha256_cid(&sha256_file(&w.small));
    let listed = ls_cids(env);
    assert!(
        listed.contains(&big_cid) && listed.contains(&small_cid),
        "ls: {listed:?}"
    );

    // Bound to 127.0.0.1 only: the address status reports, and the daemon's own sockets say the same.
    assert_eq!(w.gateway.ip().to_string(), "127.0.0.1");
    assert_ne!(w.gateway.port(), 0);
    let sockets = faults::process_sockets(w.daemon.pid().unwrap());
    let gateway_listeners: Vec<_> = sockets
        .iter()
        .filter(|(_, _, port, state)| state == "LISTEN" && *port == w.gateway.port())
        .collect();
    assert_eq!(
        gateway_listeners,
        vec![&(
            "tcp".to_string(),
            "127.0.0.1".to_string(),
            w.gateway.port(),
            "LISTEN".to_string()
        )],
        "the gateway must listen on 127.0.0.1 only; sockets: {sockets:?}"
    );

    // A foreign client: Helia, trustless-gateway broker only, reassembles whole files; the gateway's CAR and raw
    // answers are checked by the script's own CAR parser and hashing.
    let (out, lines) = gateway_fetch(
        w.gateway,
        &[
            ("--cid", &big_cid),
            ("--cid", &small_cid),
            ("--cid", &small_checksum_cid),
            ("--raw", &big_cid),
            ("--raw", &small_checksum_cid),
            ("--car", &big_cid),
            ("--car", &small_cid),
        ],
    );
    assert!(out.success(), "gateway-fetch failed:\n{}", out.describe());
    for (cid, file) in [
        (&big_cid, &w.big),
        (&small_cid, &w.small),
        (&small_checksum_cid, &w.small),
    ] {
        let fetched = line(&lines, "cid", cid);
        assert_eq!(
            fetched["sha256"].as_str(),
            Some(sha256_file(file).as_str()),
            "Helia got other bytes for {cid}"
        );
    }
    let car = line(&lines, "car", &big_cid);
    assert_eq!(
        car["sha256"].as_str(),
        Some(sha256_file(&w.big).as_str()),
        "the CAR's file"
    );
    assert_eq!(
        car["blocks"].as_u64(),
        Some(4),
        "a dag-pb root and 3 raw leaves: {car}"
    );
    let leaf = car["cids"][1].as_str().expect("a leaf CID").to_string();
    let (out, lines) = gateway_fetch(w.gateway, &[("--raw", &leaf)]);
    assert!(out.success(), "raw leaf:\n{}", out.describe());
    assert_eq!(
        line(&lines, "raw", &leaf)["bytes"].as_u64(),
        Some(1024 * 1024)
    );
    assert!(status(env)["gateway"]["requests"].as_u64().unwrap() >= 8);

    // Only announced CIDs: the private crate's root and checksum CIDs and a CID nobody seeds are 404.
    let private_root = root_cid(env, &w.private);
    let private_checksum = raw_sha256_cid(&w.private_cksum);
    let unknown = raw_sha256_cid(&"ab".repeat(32));
    for cid in [&private_root, &private_checksum, &unknown] {
        for format in ["raw", "car"] {
            let reply = http(w.gateway, "GET", &format!("/ipfs/{cid}?format={format}"));
            assert_eq!(
                reply.status,
                404,
                "{cid} {format}: {:?}",
                String::from_utf8_lossy(&reply.body)
            );
        }
    }
    let (out, lines) = gateway_fetch(w.gateway, &[("--expect-missing", &private_root)]);
    assert!(
        out.success(),
        "Helia must not get the private crate:\n{}",
        out.describe()
    );
    assert_eq!(
        line(&lines, "cid", &private_root)["missing"],
        Value::Bool(true)
    );
    // Not a trustless request, or a path below a file: 4xx, with a short text body.
    for (target, code) in [
        (format!("/ipfs/{big_cid}"), 400),
        (format!("/ipfs/{big_cid}?format=tar"), 400),
        (format!("/ipfs/{big_cid}/src/lib.rs?format=car"), 404),
        (format!("/ipfs/{big_cid}/x?format=raw"), 400),
    ] {
        let reply = http(w.gateway, "GET", &target);
        assert_eq!(reply.status, code, "{target}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{target}"
        );
    }

    // Paused: 503 with Retry-After, as bitswap serves nothing either; resumed: served again.
    env.pkgseed_run(&["pause"]).expect_success("pause");
    for format in ["raw", "car"] {
        let reply = http(
            w.gateway,
            "GET",
            &format!("/ipfs/{small_cid}?format={format}"),
        );
        assert_eq!(reply.status, 503, "paused {format}");
        assert!(reply.header("retry-after").is_some());
    }
    env.pkgseed_run(&["resume"]).expect_success("resume");
    let reply = http(w.gateway, "GET", &format!("/ipfs/{small_cid}?format=raw"));
    assert_eq!(reply.status, 200, "resumed");

    // A file changed under the daemon (same size and mtime, other bytes): its blocks are refused, never served
    // wrong, and the artifact is withdrawn.
    let metadata = std::fs::metadata(&w.big).unwrap();
    let mtime = metadata.modified().unwrap();
    let mut other = std::fs::read(&w.big).unwrap();
    other.iter_mut().for_each(|b| *b = !*b);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&w.big)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &other, 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let reply = http(w.gateway, "GET", &format!("/ipfs/{leaf}?format=raw"));
    assert_eq!(
        reply.status, 404,
        "a leaf of the changed file must not be served"
    );
    let withdrawn = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        (!ls_cids(env).contains(&big_cid)).then_some(())
    });
    assert!(withdrawn.is_some(), "the changed artifact is still listed");
    let reply = http(w.gateway, "GET", &format!("/ipfs/{big_cid}?format=car"));
    assert_eq!(reply.status, 404, "the withdrawn root");
}

#[test]
fn non_loopback_gateway_addresses_are_refused() {
    let env = TestEnv::new("gwaddr");
    // The test daemon's arguments up to the gateway's.
    let daemon_args = &TEST_DAEMON_ARGS[..TEST_DAEMON_ARGS.len() - 2];
    // From the command line.
    let mut args = daemon_args.to_vec();
    args.extend(["--gateway-listen", "0.0.0.0:0"]);
    let out = env.pkgseed_run(&args);
    assert!(
        !out.success(),
        "a daemon started with a gateway on 0.0.0.0:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("not a loopback address"),
        "{}",
        out.describe()
    );
    // From the config file.
    std::fs::write(
        env.config_dir.join("config.toml"),
        "gateway_listen_addr = \"192.168.0.10:7780\"\n",
    )
    .unwrap();
    let out = env.pkgseed_run(daemon_args);
    assert!(
        !out.success(),
        "a daemon started with a gateway on a LAN address:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("gateway_listen_addr") && out.stderr.contains("not a loopback address"),
        "{}",
        out.describe()
    );
}
