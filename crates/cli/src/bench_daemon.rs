//! The daemon rows of `pkgseed bench`: a synthetic cargo cache (real layout: `.crate` files plus cargo's binary
//! index cache with their checksums) or npm cache (real `_cacache` layout: content blobs named by their sha512 plus
//! the `index-v5` entries naming each blob's tarball URL) is seeded by a real `pkgseed daemon --network local` child
//! process, and the bench measures the first scan (wall, CPU, peak RSS), a restart to serving (and that nothing is
//! rehashed), the latency from a new artifact written into the watched cache to served, and the idle CPU and RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pkgseed_engine::control::{self, ControlRequest};
use rand::{Rng, RngCore, SeedableRng};
use sha2::Digest;

/// The synthetic registry's index dir. Not a default-registry suffix: the bench marks it public in its config,
/// exactly as a user marks a mirror.
pub(crate) const BENCH_INDEX_DIR: &str = "bench-registry-0000000000000000";

/// The synthetic npm registry's origin: a loopback URL that is never contacted (the tarballs are already in the
/// cache). The bench marks it public in its config, exactly as a user marks a mirror.
pub(crate) const BENCH_NPM_REGISTRY: &str = "http://127.0.0.1:9/";

/// Between the new artifact served and the idle window: what a write still sets off ends first (npm's follow-up
/// look at `index-v5`, a second after the look that served the new tarball; docs/design.md, "Watching"), so the
/// window measures a daemon with nothing to do.
const SETTLE_AFTER_WRITE: Duration = Duration::from_secs(3);

pub struct DaemonBenchOptions {
    pub artifacts: usize,
    pub seed: u64,
    pub total_bytes_budget: u64,
    pub ecosystem: SyntheticEcosystem,
    pub idle_seconds: u64,
}

/// Which package manager's cache layout the daemon rows generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyntheticEcosystem {
    Cargo,
    Npm,
}

impl SyntheticEcosystem {
    /// The ecosystem's name in the daemon's config and status.
    pub fn name(self) -> &'static str {
        match self {
            SyntheticEcosystem::Cargo => "cargo",
            SyntheticEcosystem::Npm => "npm",
        }
    }
}

pub struct DaemonFigures {
    /// The synthetic cache's ecosystem (`cargo`, `npm`).
    pub ecosystem: &'static str,
    pub artifacts: usize,
    pub bytes: u64,
    pub scan_wall_secs: f64,
    pub scan_cpu_secs: f64,
    pub scan_peak_rss_bytes: u64,
    pub sha256_secs: f64,
    /// Spawn → an indexed artifact's bytes came back from the restarted daemon (its local gateway, loopback).
    pub restart_to_serving_secs: f64,
    /// Spawn → the startup scan re-checked every indexed file (`first_scan_done`).
    pub restart_to_rescan_done_secs: f64,
    pub restart_files_hashed: u64,
    pub new_artifact_latency_secs: f64,
    pub idle_cpu_percent: f64,
    pub idle_rss_bytes: u64,
    pub idle_seconds: u64,
    pub index_disk_bytes: u64,
}

pub fn run(options: &DaemonBenchOptions, work_dir: &Path) -> Result<DaemonFigures> {
    // A work dir kept from an earlier run (`--work-dir`) holds that run's extra artifact and index: start clean.
    if work_dir.exists() {
        std::fs::remove_dir_all(work_dir)
            .with_context(|| format!("cannot empty {}", work_dir.display()))?;
    }
    let env = DaemonEnv::create(work_dir, options.ecosystem)?;
    let (files, total_bytes) = generate_cache(&env, options)?;
    let sha256_secs = super::bench::time_plain_sha256(&files)?;
    let ecosystem = options.ecosystem.name();
    let data_dir = env.data_dir.clone();

    // 1. First scan.
    let started = Instant::now();
    let mut daemon = env.spawn("first-scan")?;
    let pid = daemon.id();
    let status = wait_for(&data_dir, Duration::from_secs(3600), |s| {
        s["first_scan_done"] == true
    })?;
    let scan_wall_secs = started.elapsed().as_secs_f64();
    let scan_cpu_secs = cpu_secs(pid)?;
    let scan_peak_rss_bytes = peak_rss_bytes(pid)?;
    let seeded = status["ecosystems"][ecosystem]["artifacts"]
        .as_u64()
        .unwrap_or(0);
    if seeded as usize != files.len() {
        bail!(
            "the daemon seeded {seeded} of {} synthetic artifacts",
            files.len()
        );
    }
    let index_disk_bytes = status["index_disk_bytes"].as_u64().unwrap_or(0);

    // 2. New artifact → served. A single-chunk file: its root CID is the raw CID of its sha256.
    let new_crate_bytes = pseudo_random_bytes(options.seed ^ 0xfeed, 40_000);
    let new_crate_cid = pkgseed_unixfs::checksum_cid(
        pkgseed_unixfs::DigestAlgo::Sha256,
        &sha2::Sha256::digest(&new_crate_bytes),
    )?
    .to_string();
    let new_crate_latency = {
        let started = Instant::now();
        env.write_artifact("bench-new-artifact", "1.0.0", &new_crate_bytes)?;
        wait_for(&data_dir, Duration::from_secs(30), |s| {
            s["ecosystems"][ecosystem]["artifacts"].as_u64() == Some(seeded + 1)
        })?;
        started.elapsed().as_secs_f64()
    };

    // 3. Idle.
    std::thread::sleep(SETTLE_AFTER_WRITE);
    let cpu_before = cpu_secs(pid)?;
    let threads_before = thread_cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(options.idle_seconds));
    let idle_cpu_percent = 100.0 * (cpu_secs(pid)? - cpu_before) / options.idle_seconds as f64;
    let idle_busiest_threads = busiest_threads(&threads_before, &thread_cpu_secs(pid));
    let idle_rss_bytes = current_rss_bytes(pid)?;
    eprintln!(
        "bench: daemon CPU by thread over the idle {} s (logs: {}/daemon-*.log): {}",
        options.idle_seconds,
        work_dir.display(),
        idle_busiest_threads
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    stop(&mut daemon);

    // 4. Restart: to serving (the indexed artifact's bytes fetched), then to the startup scan's end.
    let started = Instant::now();
    let mut daemon = env.spawn("restart")?;
    let status = wait_for(&data_dir, Duration::from_secs(60), |s| {
        s["gateway"]["listen_addr"].is_string()
    })?;
    let gateway = status["gateway"]["listen_addr"]
        .as_str()
        .context("gateway address")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    while gateway_raw_block(&gateway, &new_crate_cid).ok().as_deref()
        != Some(new_crate_bytes.as_slice())
    {
        if Instant::now() > deadline {
            bail!("the restarted daemon did not serve {new_crate_cid}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let restart_to_serving_secs = started.elapsed().as_secs_f64();
    let status = wait_for(&data_dir, Duration::from_secs(600), |s| {
        s["first_scan_done"] == true
    })?;
    let restart_to_rescan_done_secs = started.elapsed().as_secs_f64();
    let restart_files_hashed = status["files_hashed"].as_u64().unwrap_or(u64::MAX);
    stop(&mut daemon);

    Ok(DaemonFigures {
        ecosystem,
        artifacts: files.len(),
        bytes: total_bytes,
        scan_wall_secs,
        scan_cpu_secs,
        scan_peak_rss_bytes,
        sha256_secs,
        restart_to_serving_secs,
        restart_to_rescan_done_secs,
        restart_files_hashed,
        new_artifact_latency_secs: new_crate_latency,
        idle_cpu_percent,
        idle_rss_bytes,
        idle_seconds: options.idle_seconds,
        index_disk_bytes,
    })
}

/// The daemon's config: the synthetic registry marked public, and every ecosystem but the synthetic cache's turned
/// off, so the figures measure the synthetic cache only, never whatever npm, pip or apt caches the machine has
/// (system-wide ones such as apt's archives live outside the empty HOME).
fn bench_config(seeded: SyntheticEcosystem) -> String {
    let public = match seeded {
        SyntheticEcosystem::Cargo => BENCH_INDEX_DIR,
        SyntheticEcosystem::Npm => BENCH_NPM_REGISTRY,
    };
    let mut config = format!("network = \"local\"\n[origins]\npublic = [\"{public}\"]\n");
    for ecosystem in pkgseed_sources::ECOSYSTEMS
        .iter()
        .filter(|e| **e != seeded.name())
    {
        config.push_str(&format!("[ecosystems.{ecosystem}]\nenabled = false\n"));
    }
    config
}

pub(crate) struct DaemonEnv {
    pub ecosystem: SyntheticEcosystem,
    pub cargo_home: PathBuf,
    /// npm's `cache` setting (the parent of `_cacache`), given to the daemon as `npm_config_cache`.
    pub npm_cache: PathBuf,
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    /// An empty HOME, so the daemon seeds the synthetic cache and none of the machine's own caches.
    pub home: PathBuf,
    /// Where each daemon's stderr log goes (`daemon-<label>.log`), kept after the run.
    pub log_dir: PathBuf,
}

impl DaemonEnv {
    /// `cargo-home`, `config` and `data` under `work_dir`, and a config for the local network that marks the
    /// synthetic registry public.
    pub fn create(work_dir: &Path, ecosystem: SyntheticEcosystem) -> Result<DaemonEnv> {
        let env = DaemonEnv {
            ecosystem,
            cargo_home: work_dir.join("cargo-home"),
            npm_cache: work_dir.join("npm-cache"),
            config_dir: work_dir.join("config"),
            data_dir: work_dir.join("data"),
            home: work_dir.join("home"),
            log_dir: work_dir.to_path_buf(),
        };
        std::fs::create_dir_all(&env.config_dir)?;
        std::fs::create_dir_all(&env.home)?;
        // System-wide caches (apt's archives, the system gem dir) live outside HOME: off, as in the tests.
        std::fs::write(env.config_dir.join("config.toml"), bench_config(ecosystem))?;
        Ok(env)
    }

    /// Writes one artifact into the synthetic cache as its package manager would.
    pub fn write_artifact(&self, name: &str, version: &str, bytes: &[u8]) -> Result<PathBuf> {
        match self.ecosystem {
            SyntheticEcosystem::Cargo => write_crate(&self.cargo_home, name, version, bytes),
            SyntheticEcosystem::Npm => write_npm_tarball(&self.npm_cache, name, version, bytes),
        }
    }

    /// Starts `pkgseed daemon` with its log in `daemon-<label>.log` (level: the bench's own `PKGSEED_LOG`, else
    /// warnings), so a figure out of line can be explained after the run.
    pub fn spawn(&self, label: &str) -> Result<Child> {
        let exe = std::env::current_exe().context("cannot find the pkgseed binary")?;
        let log_path = self.log_dir.join(format!("daemon-{label}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_level = std::env::var("PKGSEED_LOG").unwrap_or_else(|_| "warn".into());
        Command::new(exe)
            .args([
                "daemon",
                "--network",
                "local",
                "--gateway-listen",
                "127.0.0.1:0",
            ])
            .env("CARGO_HOME", &self.cargo_home)
            .env("npm_config_cache", &self.npm_cache)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("PKGSEED_CONFIG_DIR", &self.config_dir)
            .env("PKGSEED_DATA_DIR", &self.data_dir)
            .env("PKGSEED_KEYRING", "off")
            .env("PKGSEED_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the daemon")
    }
}

pub(crate) fn stop(child: &mut Child) {
    // SIGTERM lets the daemon shut down cleanly; a daemon that does not stop in 10 s is killed.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls the daemon's status every 10 ms until `done` holds.
pub(crate) fn wait_for(
    data_dir: &Path,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let socket = data_dir.join("control.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(status) = runtime.block_on(control::request(&socket, &ControlRequest::Status)) {
            if done(&status) {
                return Ok(status);
            }
        }
        if Instant::now() > deadline {
            bail!("the daemon did not reach the expected state in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One block from the daemon's local trustless gateway (`GET /ipfs/{cid}?format=raw`, HTTP/1.1 on loopback): the
/// body of a 200 answer, an error otherwise.
fn gateway_raw_block(addr: &str, cid: &str) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /ipfs/{cid}?format=raw HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the HTTP head")?;
    if !answer.starts_with(b"HTTP/1.1 200 ") {
        bail!(
            "gateway answered {}",
            String::from_utf8_lossy(&answer[..head_end.min(40)])
        );
    }
    Ok(answer.split_off(head_end + 4))
}

pub(crate) fn proc_status_kib(pid: u32, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(key)
                .map(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .flatten()
        .with_context(|| format!("{key} not in /proc/{pid}/status"))
}

fn peak_rss_bytes(pid: u32) -> Result<u64> {
    Ok(proc_status_kib(pid, "VmHWM:")? * 1024)
}

pub(crate) fn current_rss_bytes(pid: u32) -> Result<u64> {
    Ok(proc_status_kib(pid, "VmRSS:")? * 1024)
}

/// utime + stime of a process, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_secs(&stat).context("bad /proc stat")
}

/// utime + stime from the text of a /proc `stat` file (a process's or a thread's).
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
    let (_, after) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / ticks_per_sec.max(1.0))
}

/// CPU seconds (utime + stime) of each of a process's threads, by thread id, with the thread's name.
fn thread_cpu_secs(pid: u32) -> std::collections::HashMap<u32, (String, f64)> {
    let mut threads = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(secs) = stat_cpu_secs(&stat) {
            let name = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or("?", |(name, _)| name);
            threads.insert(tid, (name.to_string(), secs));
        }
    }
    threads
}

/// The threads that used CPU between two [`thread_cpu_secs`] readings, busiest first, summed by thread name.
fn busiest_threads(
    before: &std::collections::HashMap<u32, (String, f64)>,
    after: &std::collections::HashMap<u32, (String, f64)>,
) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    for (tid, (name, secs)) in after {
        let earlier = before.get(tid).map_or(0.0, |(_, secs)| *secs);
        if secs - earlier > 0.0 {
            *by_name.entry(name.clone()).or_default() += secs - earlier;
        }
    }
    let mut busiest: Vec<(String, f64)> = by_name.into_iter().collect();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    busiest
}

pub(crate) fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Writes `<cargo_home>/registry/cache/<dir>/<name>-<version>.crate` and its index cache entry (cargo's v3 format).
pub(crate) fn write_crate(
    cargo_home: &Path,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> Result<PathBuf> {
    let cksum = hex_lower(&sha2::Sha256::digest(bytes));
    let index_path = pkgseed_sources::cargo_index_cache_path(cargo_home, BENCH_INDEX_DIR, name);
    std::fs::create_dir_all(index_path.parent().context("index path")?)?;
    let mut blob = vec![3u8];
    blob.extend_from_slice(&2u32.to_le_bytes());
    blob.extend_from_slice(b"bench\0");
    blob.extend_from_slice(version.as_bytes());
    blob.push(0);
    let json = serde_json::json!({"name": name, "vers": version, "deps": [], "cksum": cksum, "features": {}, "yanked": false});
    blob.extend_from_slice(json.to_string().as_bytes());
    blob.push(0);
    std::fs::write(&index_path, blob)?;
    let crate_dir = cargo_home
        .join("registry")
        .join("cache")
        .join(BENCH_INDEX_DIR);
    std::fs::create_dir_all(&crate_dir)?;
    let path = crate_dir.join(format!("{name}-{version}.crate"));
    // Cargo writes in place; a temp + rename here only keeps the bench from racing its own watcher.
    let tmp = crate_dir.join(format!(".{name}-{version}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// npm's cache entry for a tarball fetched from the synthetic registry, written in cacache's order: the blob
/// (through `tmp/`) under `content-v2/sha512/<2>/<2>/<124 hex>`, then the `index-v5` entry naming it. The daemon
/// watches only `tmp/`: the blob's move out of it asks for a look at `index-v5`, which finds the entry's bucket.
pub(crate) fn write_npm_tarball(
    npm_cache: &Path,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> Result<PathBuf> {
    use base64::Engine as _;
    let cacache = npm_cache.join("_cacache");
    let sha512 = sha2::Sha512::digest(bytes);
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha512)
    );
    let url = format!("{BENCH_NPM_REGISTRY}{name}/-/{name}-{version}.tgz");
    let key = format!("make-fetch-happen:request-cache:{url}");
    let entry = serde_json::json!({
        "key": key,
        "integrity": integrity,
        "time": 1_764_000_000_000u64,
        "size": bytes.len(),
        "metadata": {"url": url, "reqHeaders": {}, "resHeaders": {"content-type": "application/octet-stream"}},
    });
    let hex = hex_lower(&sha512);
    let dir = cacache
        .join("content-v2")
        .join("sha512")
        .join(&hex[..2])
        .join(&hex[2..4]);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(&hex[4..]);
    std::fs::create_dir_all(cacache.join("tmp"))?;
    let tmp = cacache.join("tmp").join(&hex[..16]);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    let bucket = hex_lower(&sha2::Sha256::digest(key.as_bytes()));
    let bucket_path = cacache
        .join("index-v5")
        .join(&bucket[..2])
        .join(&bucket[2..4])
        .join(&bucket[4..]);
    std::fs::create_dir_all(bucket_path.parent().context("bucket path")?)?;
    std::fs::write(
        &bucket_path,
        pkgseed_sources::npm::bucket_line(&entry.to_string()),
    )?;
    Ok(path)
}

/// A cargo-like size mix (also used for npm) scaled down to fit `total_bytes_budget`, so 100k artifacts fit on a
/// laptop disk.
fn generate_cache(
    env: &DaemonEnv,
    options: &DaemonBenchOptions,
) -> Result<(Vec<(PathBuf, u64)>, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let mut sizes: Vec<u64> = (0..options.artifacts)
        .map(|_| {
            let bucket: f64 = rng.gen();
            if bucket < 0.70 {
                rng.gen_range(2_000..60_000)
            } else if bucket < 0.95 {
                rng.gen_range(60_000..1_000_000)
            } else {
                rng.gen_range(1_000_000..12_000_000)
            }
        })
        .collect();
    let natural: u64 = sizes.iter().sum();
    if natural > options.total_bytes_budget {
        let scale = options.total_bytes_budget as f64 / natural as f64;
        for size in &mut sizes {
            *size = ((*size as f64 * scale) as u64).max(64);
        }
    }
    let mut files = Vec::with_capacity(sizes.len());
    let mut total = 0;
    let mut buffer = Vec::new();
    for (n, size) in sizes.into_iter().enumerate() {
        buffer.resize(size as usize, 0);
        rng.fill_bytes(&mut buffer);
        let path = env.write_artifact(&format!("bench-pkg-{n}"), "0.1.0", &buffer)?;
        total += size;
        files.push((path, size));
    }
    Ok((files, total))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
