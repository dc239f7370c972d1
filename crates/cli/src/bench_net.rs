//! The network rows of `pkgseed bench`, each against a baseline measured in the same run, all on loopback with the
//! `local` profile: serving (a Helia peer fetches a file from a pkgseed daemon and from a Helia node serving the
//! same file), upload-cap accuracy and pause latency (Helia fetching from pkgseed), and announcing (provider
//! records that reach a small Kademlia network of js-libp2p nodes). The foreign peers are the scripts in tests/js;
//! without node or those scripts every row says why it was skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use pkgseed_engine::control::{self, ControlRequest, LimitsUpdate};
use pkgseed_unixfs::Profile;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;
use sha2::Digest;

use crate::bench::Row;
use crate::bench_daemon::{self, DaemonEnv};

/// Where the bench looks for tests/js when `--js-dir` is not given.
pub const JS_DIR_ENV: &str = "PKGSEED_BENCH_JS_DIR";
/// 100k root CIDs per 22 h reprovide cycle, per minute.
const GOAL_KEYS_PER_MIN: f64 = 100_000.0 / (22.0 * 60.0);
/// Upload growth between two samples that can only be block bytes: presences (DONT_HAVE) are tens of bytes each,
/// a block frame is written in 16 KiB chunks.
const BLOCK_GROWTH_BYTES: u64 = 4096;
const MIB: u64 = 1024 * 1024;
/// Data the cap and pause runs fetch at least, so an uncapped fetch is still running when the pause comes.
const MIN_CAP_DATA_BYTES: u64 = 48_000_000;
/// Filler artifacts the cap and pause runs fetch in parallel with the served one.
const FILLER_PARTS: u64 = 4;
/// Pause measurements per cap; the row reports the worst.
const PAUSE_ROUNDS: usize = 3;

pub struct NetBenchOptions {
    pub js_dir: Option<PathBuf>,
    pub seed: u64,
    /// Size of the served artifact (100 MB in the full run).
    pub serve_bytes: u64,
    /// Upload caps to measure, bytes per second.
    pub cap_rates: Vec<u64>,
    pub cap_window_secs: f64,
    /// Small artifacts whose root (and checksum) CIDs the announcing row counts.
    pub announce_artifacts: usize,
    /// js-libp2p Kademlia nodes next to the pkgseed daemon.
    pub dht_nodes: usize,
}

/// node plus the tests/js scripts and their node_modules.
pub struct JsTools {
    node: PathBuf,
    dir: PathBuf,
}

impl JsTools {
    /// Finds the tools: `explicit`, else `$PKGSEED_BENCH_JS_DIR`, else `tests/js` under the current dir or two levels
    /// above the binary (`target/debug/pkgseed` in a checkout). The node binary is `$NODE` or `node`.
    /// `Err` is the reason the rows are skipped.
    pub fn locate(explicit: Option<&Path>) -> std::result::Result<JsTools, String> {
        let candidates: Vec<PathBuf> = match explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(JS_DIR_ENV).map(PathBuf::from))
        {
            Some(dir) => vec![dir],
            None => {
                let mut dirs = vec![PathBuf::from("tests/js")];
                if let Ok(exe) = std::env::current_exe() {
                    if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
                        dirs.push(root.join("tests/js"));
                    }
                }
                dirs
            }
        };
        let dir = candidates
            .iter()
            .find(|d| d.join("helia-fetch.mjs").is_file())
            .ok_or_else(|| {
                format!(
                    "no tests/js (helia-fetch.mjs) in {candidates:?}; pass --js-dir or set {JS_DIR_ENV}"
                )
            })?;
        if !dir.join("node_modules/helia/package.json").is_file() {
            return Err(format!(
                "{}/node_modules has no helia (npm ci --prefix {})",
                dir.display(),
                dir.display()
            ));
        }
        let node = std::env::var_os("NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("node"));
        match Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            _ => return Err(format!("node not found ({}; set NODE)", node.display())),
        }
        Ok(JsTools {
            node,
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()),
        })
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.current_dir(&self.dir).arg(self.dir.join(script));
        cmd
    }
}

/// Every network row; a section that fails reports its error in its rows instead of ending the bench.
pub fn rows(options: &NetBenchOptions, work_dir: &Path) -> Vec<Row> {
    let tools = match JsTools::locate(options.js_dir.as_deref()) {
        Ok(tools) => tools,
        Err(reason) => {
            return serving_labels(options)
                .into_iter()
                .chain(announce_labels(options))
                .map(|label| Row::skipped(label, &reason))
                .collect();
        }
    };
    let mut rows = match serving_caps_pause(&tools, options, &work_dir.join("serve")) {
        Ok(rows) => rows,
        Err(err) => serving_labels(options)
            .into_iter()
            .map(|label| Row::skipped(label, &format!("failed: {err:#}")))
            .collect(),
    };
    rows.extend(
        match announcing(&tools, options, &work_dir.join("announce")) {
            Ok(rows) => rows,
            Err(err) => announce_labels(options)
                .into_iter()
                .map(|label| Row::skipped(label, &format!("failed: {err:#}")))
                .collect(),
        },
    );
    rows
}

fn serving_label(options: &NetBenchOptions) -> String {
    format!(
        "serving {:.0} MB to a Helia peer: MB/s",
        options.serve_bytes as f64 / 1e6
    )
}

fn cap_label(rate: u64, window_secs: f64) -> String {
    format!(
        "upload cap {}: achieved / configured over {window_secs:.0} s",
        human_rate(rate)
    )
}

const PAUSE_LABEL: &str = "pause -> last block byte out: ms, worst of 3 (uncapped / at 1 MiB/s)";

fn serving_labels(options: &NetBenchOptions) -> Vec<String> {
    let mut labels = vec![serving_label(options)];
    labels.extend(
        options
            .cap_rates
            .iter()
            .map(|&rate| cap_label(rate, options.cap_window_secs)),
    );
    labels.push(PAUSE_LABEL.into());
    labels
}

fn announce_label(options: &NetBenchOptions) -> String {
    format!(
        "announcing: keys stored at DHT peers per minute ({} js-libp2p nodes)",
        options.dht_nodes
    )
}

fn announce_labels(options: &NetBenchOptions) -> Vec<String> {
    vec![announce_label(options)]
}

fn human_rate(rate: u64) -> String {
    if rate.is_multiple_of(MIB) {
        format!("{} MiB/s", rate / MIB)
    } else if rate.is_multiple_of(1024) {
        format!("{} KiB/s", rate / 1024)
    } else {
        format!("{rate} B/s")
    }
}

/// The control socket of one daemon, with its own small runtime (the bench runs on a blocking thread).
struct Control {
    runtime: tokio::runtime::Runtime,
    socket: PathBuf,
}

impl Control {
    fn new(data_dir: &Path) -> Result<Control> {
        Ok(Control {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            socket: data_dir.join("control.sock"),
        })
    }

    fn request(&self, request: &ControlRequest) -> Result<Value> {
        Ok(self
            .runtime
            .block_on(control::request(&self.socket, request))?)
    }

    fn status(&self) -> Result<Value> {
        self.request(&ControlRequest::Status)
    }

    fn uploaded(&self) -> Result<u64> {
        self.status()?["limits"]["bytes_uploaded"]
            .as_u64()
            .context("status has no limits.bytes_uploaded")
    }

    /// `(when, bitswap bytes uploaded, TCP payload sent)` right after the daemon's TCP counters were sampled (they
    /// move every 200 ms during a transfer): status is polled until `tcp_bytes_sent` changes (at most 1 s), so the
    /// figure is at most one status round trip old.
    fn fresh_upload(&self) -> Result<(Instant, u64, u64)> {
        let read = |s: &Value| {
            let field = |name: &str| {
                s["limits"][name]
                    .as_u64()
                    .with_context(|| format!("status has no limits.{name}"))
            };
            Ok::<_, anyhow::Error>((field("bytes_uploaded")?, field("tcp_bytes_sent")?))
        };
        let first = read(&self.status()?)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let now = read(&self.status()?)?;
            if now.1 != first.1 || Instant::now() > deadline {
                return Ok((Instant::now(), now.0, now.1));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn set_upload_cap(&self, bytes_per_sec: u64) -> Result<()> {
        self.request(&ControlRequest::Limits(LimitsUpdate {
            upload_bytes_per_sec: Some(bytes_per_sec),
            ..Default::default()
        }))?;
        Ok(())
    }

    /// Waits (at most 30 s) until more than 64 KiB went out after `since` bytes.
    fn wait_upload_starts(&self, since: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.uploaded()? < since + 64 * 1024 {
            if Instant::now() > deadline {
                bail!("the daemon did not start uploading within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// A dialable `/ip4/127.0.0.1/tcp/<port>/p2p/<peer>` from a daemon's status.
fn dial_addr(status: &Value) -> Result<String> {
    let peer = status["peer_id"]
        .as_str()
        .context("status has no peer_id")?;
    let addr = status["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && !a.contains("/p2p/"))
        .context("no /ip4/127.0.0.1/tcp/ listen address")?;
    Ok(format!("{addr}/p2p/{peer}"))
}

/// A child process killed (and reaped) when dropped, so an error path leaves nothing running.
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a child's stdout lines on a thread, so waits can be bounded.
fn line_reader(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// The first stdout line that is a JSON object with `key`, within `timeout`.
fn wait_json_line(rx: &mpsc::Receiver<String>, key: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Ok(value) = serde_json::from_str::<Value>(line.trim()) {
                    if value.get(key).is_some() {
                        return Ok(value);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("no {key:?} line within {timeout:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the tool exited before printing a {key:?} line")
            }
        }
    }
}

/// `helia-fetch.mjs` as a child (stdout piped, stderr dropped).
fn spawn_fetch(tools: &JsTools, peer: &str, cids: &[String], timeout_secs: u64) -> Result<Guard> {
    let mut cmd = tools.command("helia-fetch.mjs");
    cmd.args([
        "--peer",
        peer,
        "--timeout-seconds",
        &timeout_secs.to_string(),
    ]);
    if cids.len() > 1 {
        cmd.arg("--parallel");
    }
    for cid in cids {
        cmd.args(["--cid", cid]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start helia-fetch.mjs")?;
    Ok(Guard(Some(child)))
}

/// Fetches `cid` from `peer` with Helia and returns MB/s of the fetch alone (dial excluded), after checking that
/// the bytes are the file's.
fn fetch_rate(tools: &JsTools, peer: &str, cid: &str, expected_sha256: &str) -> Result<f64> {
    let mut fetch = spawn_fetch(tools, peer, &[cid.to_string()], 600)?;
    let lines = line_reader(fetch.child())?;
    let line = wait_json_line(&lines, "cid", Duration::from_secs(660))?;
    if line["ok"] != true || line["sha256"].as_str() != Some(expected_sha256) {
        bail!("Helia fetch failed or got other bytes: {line}");
    }
    let bytes = line["bytes"].as_f64().context("no bytes")?;
    let ms = line["ms"].as_f64().context("no ms")?.max(1.0);
    let _ = fetch.child().wait();
    Ok(bytes / 1e6 / (ms / 1000.0))
}

/// `helia-serve.mjs --file <path>`: (the child, its root CID, its dial address). The child serves until its stdin
/// closes.
fn spawn_helia_server(tools: &JsTools, file: &Path) -> Result<(Guard, ChildStdin, String, String)> {
    let mut child = tools
        .command("helia-serve.mjs")
        .arg("--file")
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start helia-serve.mjs")?;
    let stdin = child.stdin.take().context("stdin")?;
    let mut guard = Guard(Some(child));
    let lines = line_reader(guard.child())?;
    let ready = wait_json_line(&lines, "cid", Duration::from_secs(300))?;
    let cid = ready["cid"].as_str().context("cid")?.to_string();
    let addr = ready["addr"].as_str().context("addr")?.to_string();
    Ok((guard, stdin, cid, addr))
}

fn random_file_bytes(seed: u64, len: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len as usize];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One daemon over a cache with the served artifact (and filler artifacts, so the fastest cap has enough to send
/// for its whole window): serving vs a Helia node, then each cap, then pause latency.
fn serving_caps_pause(tools: &JsTools, options: &NetBenchOptions, dir: &Path) -> Result<Vec<Row>> {
    let env = DaemonEnv::create(dir, bench_daemon::SyntheticEcosystem::Cargo)?;
    let served = random_file_bytes(options.seed ^ 0x5e7e, options.serve_bytes);
    let served_sha = hex_lower(&sha2::Sha256::digest(&served));
    let served_path = bench_daemon::write_crate(&env.cargo_home, "bench-served", "1.0.0", &served)?;
    drop(served);
    let fastest = options
        .cap_rates
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(MIB);
    // The fastest cap for 1 s of warm-up, the window and 2 s of margin.
    let needed =
        ((fastest as f64 * (options.cap_window_secs + 3.0)) as u64).max(MIN_CAP_DATA_BYTES);
    let mut cids = vec![root_cid(&served_path)?];
    // Several files fetched at once: helia-fetch walks one file block by block (≈ 12 MB/s here), so the fillers alone
    // hold the fastest cap's bytes and all files stay busy for the whole window; then the cap is what limits.
    let part = needed.div_ceil(FILLER_PARTS);
    for n in 0..FILLER_PARTS {
        let filler = random_file_bytes(options.seed ^ 0xf111 ^ n, part);
        let name = format!("bench-filler-{n}");
        let path = bench_daemon::write_crate(&env.cargo_home, &name, "1.0.0", &filler)?;
        cids.push(root_cid(&path)?);
    }
    let (mut daemon, status) = start_daemon(&env, cids.len())?;
    let peer = dial_addr(&status)?;
    let control = Control::new(&env.data_dir)?;
    let mut rows = Vec::new();

    // Serving: two rounds, alternating, best of each (the machine is shared; the best run is the least disturbed).
    let (mut helia_server, server_stdin, helia_cid, helia_addr) =
        spawn_helia_server(tools, &served_path)?;
    if helia_cid != cids[0] {
        bail!(
            "Helia's root CID {helia_cid} differs from pkgseed's {}",
            cids[0]
        );
    }
    let (mut ours, mut theirs) = (0f64, 0f64);
    for _ in 0..2 {
        ours = ours.max(fetch_rate(tools, &peer, &cids[0], &served_sha)?);
        theirs = theirs.max(fetch_rate(tools, &helia_addr, &helia_cid, &served_sha)?);
    }
    drop(server_stdin);
    let _ = helia_server.child().wait();
    rows.push(Row::new(
        serving_label(options),
        format!("{ours:.1}"),
        format!("{theirs:.1} (a Helia node serving it)"),
        format!("{:.2}x; goal >= 1.0x", ours / theirs),
    ));

    // Cap accuracy: all the TCP payload the daemon sent (its kernel counters, `status.limits.tcp_bytes_sent`) over
    // the window, from 1 s after the upload started; the bitswap share alongside.
    for &rate in &options.cap_rates {
        control.set_upload_cap(rate)?;
        let before = control.uploaded()?;
        let _fetch = spawn_fetch(tools, &peer, &cids, 600)?;
        control.wait_upload_starts(before)?;
        std::thread::sleep(Duration::from_secs(1));
        let (t0, bitswap0, tcp0) = control.fresh_upload()?;
        std::thread::sleep(Duration::from_secs_f64(options.cap_window_secs));
        let (t1, bitswap1, tcp1) = control.fresh_upload()?;
        let secs = (t1 - t0).as_secs_f64();
        let bitswap = (bitswap1 - bitswap0) as f64 / secs;
        // Without TCP counters (not Linux, or sock_diag refused) only the bitswap bytes are known.
        let (achieved, what) = match tcp1 - tcp0 {
            0 => (bitswap, "bitswap bytes (no TCP counters here)".to_string()),
            tcp => (
                tcp as f64 / secs,
                format!("TCP payload ({bitswap:.0} B/s of it bitswap)"),
            ),
        };
        rows.push(Row::new(
            cap_label(rate, options.cap_window_secs),
            format!("{:.3}", achieved / rate as f64),
            format!("{achieved:.0} B/s {what} achieved, {rate} B/s configured"),
            "goal 0.95..1.05".into(),
        ));
    }

    let worst_pause = |cap: u64| -> Result<(f64, f64)> {
        let mut worst = (0f64, 0f64);
        for _ in 0..PAUSE_ROUNDS {
            let (latency, interval) = pause_latency(tools, &control, &peer, &cids, cap)?;
            worst = (worst.0.max(latency), worst.1.max(interval));
        }
        Ok(worst)
    };
    let uncapped = worst_pause(0)?;
    let capped = worst_pause(MIB)?;
    rows.push(Row::new(
        PAUSE_LABEL.into(),
        format!("{:.1} / {:.1}", uncapped.0 * 1000.0, capped.0 * 1000.0),
        format!(
            "wire counter sampled every {:.1} ms",
            uncapped.1.max(capped.1) * 1000.0
        ),
        "goal <= 1000 ms".into(),
    ));
    control.set_upload_cap(0)?;
    bench_daemon::stop(daemon.child());
    Ok(rows)
}

/// Starts the daemon and waits for its first scan to have seeded all `artifacts`; returns it and that status.
fn start_daemon(env: &DaemonEnv, artifacts: usize) -> Result<(Guard, Value)> {
    let daemon = Guard(Some(env.spawn("net")?));
    let status = bench_daemon::wait_for(&env.data_dir, Duration::from_secs(600), |s| {
        s["first_scan_done"] == true
    })?;
    let seeded = status["ecosystems"]["cargo"]["artifacts"]
        .as_u64()
        .unwrap_or(0);
    if seeded as usize != artifacts {
        bail!("the daemon seeded {seeded} of {artifacts} artifacts");
    }
    Ok((daemon, status))
}

fn root_cid(path: &Path) -> Result<String> {
    Ok(
        pkgseed_unixfs::dag_of_file(path, Profile::UnixfsV1_2025, false)?
            .root
            .to_string(),
    )
}

/// Pauses mid-transfer and samples the wire counter for 3 s: the time from sending the pause request to the last
/// sample that grew by block bytes, or to the request's reply if none did (an upper bound either way: the bytes left
/// before that point), and the mean sampling interval. Resumes afterwards.
fn pause_latency(
    tools: &JsTools,
    control: &Control,
    peer: &str,
    cids: &[String],
    cap: u64,
) -> Result<(f64, f64)> {
    control.set_upload_cap(cap)?;
    let before = control.uploaded()?;
    let _fetch = spawn_fetch(tools, peer, cids, 600)?;
    control.wait_upload_starts(before)?;
    std::thread::sleep(Duration::from_millis(500));
    let pre = control.uploaded()?;
    std::thread::sleep(Duration::from_millis(300));
    if control.uploaded()? <= pre + BLOCK_GROWTH_BYTES {
        bail!("no transfer in flight when pausing (cap {cap} B/s)");
    }
    let mut last = control.uploaded()?;
    let paused_at = Instant::now();
    control.request(&ControlRequest::Pause)?;
    // An upper bound: had the last block byte left before the request returned, it left before this point.
    let mut last_block_at = Instant::now();
    let mut samples = 0u32;
    while paused_at.elapsed() < Duration::from_secs(3) {
        let now_bytes = control.uploaded()?;
        let now = Instant::now();
        samples += 1;
        if now_bytes >= last + BLOCK_GROWTH_BYTES {
            last_block_at = now;
        }
        last = now_bytes;
    }
    let interval = paused_at.elapsed().as_secs_f64() / samples as f64;
    control.request(&ControlRequest::Resume)?;
    Ok((
        last_block_at.duration_since(paused_at).as_secs_f64(),
        interval,
    ))
}

/// A daemon that starts paused over many small artifacts (their keys wait in the announce queue), a Kademlia
/// network of js-libp2p nodes connected to it and to each other, then `resume`: keys per minute that arrive as
/// provider records at those nodes.
fn announcing(tools: &JsTools, options: &NetBenchOptions, dir: &Path) -> Result<Vec<Row>> {
    let env = DaemonEnv::create(dir, bench_daemon::SyntheticEcosystem::Cargo)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ 0xa11);
    let mut buffer = Vec::new();
    for n in 0..options.announce_artifacts {
        buffer.resize(rng.gen_range(200..4000), 0);
        rng.fill_bytes(&mut buffer);
        bench_daemon::write_crate(
            &env.cargo_home,
            &format!("bench-announce-{n}"),
            "0.1.0",
            &buffer,
        )?;
    }
    std::fs::create_dir_all(&env.data_dir)?;
    std::fs::set_permissions(
        &env.data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    // The user's pause marker: the daemon indexes, queues every key and announces nothing until `resume`.
    std::fs::write(env.data_dir.join("paused"), b"")?;
    let (mut daemon, status) = start_daemon(&env, options.announce_artifacts)?;
    let keys = status["announce_queue_len"].as_u64().unwrap_or(0);
    if status["paused"] != true || keys == 0 {
        bail!(
            "expected a paused daemon with queued keys: paused {}, queue {keys}",
            status["paused"]
        );
    }
    let peer_id = status["peer_id"].as_str().context("peer_id")?.to_string();
    let timeout_secs = 120 + keys / 20;
    let mut sink = Guard(Some(
        tools
            .command("dht-sink.mjs")
            .args(["--dial", &dial_addr(&status)?, "--provider", &peer_id])
            .args(["--expect-keys", &keys.to_string()])
            .args(["--nodes", &options.dht_nodes.to_string()])
            .args(["--timeout-seconds", &timeout_secs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dht-sink.mjs")?,
    ));
    let lines = line_reader(sink.child())?;
    wait_json_line(&lines, "ready", Duration::from_secs(120))?;
    let control = Control::new(&env.data_dir)?;
    let resumed_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as f64;
    control.request(&ControlRequest::Resume)?;
    let summary = wait_json_line(&lines, "keys", Duration::from_secs(timeout_secs + 30))?;
    let _ = sink.child().wait();
    let arrived = summary["keys"].as_u64().unwrap_or(0);
    let records = summary["records"].as_u64().unwrap_or(0);
    let last_ms = summary["last_ms"].as_f64();
    bench_daemon::stop(daemon.child());
    let (Some(last_ms), true) = (last_ms, arrived > 0) else {
        bail!("no provider record arrived within {timeout_secs} s: {summary}");
    };
    let minutes = ((last_ms - resumed_ms) / 60_000.0).max(1e-6);
    let per_min = arrived as f64 / minutes;
    let complete = if summary["done"] == true {
        format!("all {keys} keys")
    } else {
        format!("only {arrived} of {keys} keys (no more arrived)")
    };
    Ok(vec![Row::new(
        announce_label(options),
        format!("{per_min:.0}"),
        format!(
            "{complete} in {:.1} s, {:.1} copies each; goal {GOAL_KEYS_PER_MIN:.0}/min = 100k per 22 h",
            minutes * 60.0,
            records as f64 / arrived as f64
        ),
        format!("{:.1}x of goal", per_min / GOAL_KEYS_PER_MIN),
    )])
}
