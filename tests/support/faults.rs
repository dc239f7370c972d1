//! Fault injection helpers for `tests/reliability.rs`: a seeded RNG, a cargo cache crafted directly on disk (no
//! `cargo package` per artifact: the cargo source only needs a `.crate` file and an index cache entry whose `cksum`
//! is its sha256), the fault kinds, and a Helia run that fetches many CIDs at once and timestamps each result.
//!
//! The origin dir carries the default registry's cargo source-hash suffix under a made-up host, so the daemon
//! treats it as public (provenance is by the suffix).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

/// An index dir the cargo source treats as public (the default registry's sparse suffix, cargo ≥ 1.85).
pub const PUBLIC_ORIGIN: &str = "reliability.invalid-1949cf8c6b5b557f";

/// splitmix64: small, seeded, reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Whether the long variants run (`PKGSEED_LONG_TESTS=1`).
pub fn long_tests() -> bool {
    std::env::var_os("PKGSEED_LONG_TESTS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// `$CARGO_HOME/registry/cache/<origin>`.
pub fn crate_dir(cargo_home: &Path, origin: &str) -> PathBuf {
    cargo_home.join("registry/cache").join(origin)
}

/// Cargo's index cache path for `name` (lower case, cargo's prefix layout).
pub fn index_cache_path(cargo_home: &Path, origin: &str, name: &str) -> PathBuf {
    let name = name.to_lowercase();
    let mut p = cargo_home
        .join("registry/index")
        .join(origin)
        .join(".cache");
    match name.len() {
        1 => p.push("1"),
        2 => p.push("2"),
        3 => p.extend(["3", &name[..1]]),
        _ => p.extend([&name[..2], &name[2..4]]),
    }
    p.push(&name);
    p
}

/// Cargo's index cache file (version 3) for one crate with the given `(version, sha256 hex)` entries.
pub fn index_cache_bytes(name: &str, versions: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![3u8];
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(b"etag-reliability\0");
    for (version, cksum) in versions {
        out.extend_from_slice(version.as_bytes());
        out.push(0);
        let line = serde_json::json!({
            "name": name, "vers": version, "deps": [], "cksum": cksum,
            "features": {}, "yanked": false
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(0);
    }
    out
}

/// Writes `bytes` to `path` through a temp file and a rename, so a watcher never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(
        ".tmp-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One artifact put into the crafted cache.
#[derive(Clone, Debug)]
pub struct Planted {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Puts `<name>-<version>.crate` with `bytes` into the cache, its index cache entry first.
pub fn plant_crate(
    cargo_home: &Path,
    origin: &str,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> Planted {
    let sha256 = crate::sha256_hex(&bytes);
    write_atomic(
        &index_cache_path(cargo_home, origin, name),
        &index_cache_bytes(name, &[(version, &sha256)]),
    );
    let path = crate_dir(cargo_home, origin).join(format!("{name}-{version}.crate"));
    write_atomic(&path, &bytes);
    Planted {
        name: name.into(),
        version: version.into(),
        path,
        bytes,
        sha256,
    }
}

/// What is done to a seeded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Cut to a random shorter length (possibly 0), in place.
    Truncate,
    /// Random bytes appended, in place.
    Append,
    /// Other bytes written in place, same size, the old mtime restored (the stamp stays the same; only the
    /// hash check can tell).
    RewriteSameStamp,
    Delete,
    /// The file moved outside the cache root and a symlink to it put in its place: same inode, same bytes, but
    /// outside the root.
    SymlinkToMovedOriginal,
    /// A symlink to another file outside the root (other bytes).
    SymlinkToOtherFile,
    /// "Made unreadable": the tests run as root, which reads through `chmod 000`, so unreadable is emulated by
    /// putting a FIFO in the file's place (opening it for reading would block forever).
    Fifo,
    /// "Made unreadable", the other way: a directory in the file's place.
    Directory,
}

pub const ALL_FAULTS: [Fault; 8] = [
    Fault::Truncate,
    Fault::Append,
    Fault::RewriteSameStamp,
    Fault::Delete,
    Fault::SymlinkToMovedOriginal,
    Fault::SymlinkToOtherFile,
    Fault::Fifo,
    Fault::Directory,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Truncate => "truncate",
            Fault::Append => "append",
            Fault::RewriteSameStamp => "rewrite-same-size-same-mtime",
            Fault::Delete => "delete",
            Fault::SymlinkToMovedOriginal => "symlink-to-moved-original",
            Fault::SymlinkToOtherFile => "symlink-to-other-file",
            Fault::Fifo => "fifo (unreadable)",
            Fault::Directory => "directory (unreadable)",
        }
    }

    /// Applies the fault to `path` (a seeded regular file). `outside` is a dir outside every cache root.
    pub fn apply(self, path: &Path, rng: &mut Rng, outside: &Path) {
        use std::os::unix::fs::FileExt;
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match self {
            Fault::Truncate => {
                let new_len = if len == 0 { 0 } else { rng.range(0, len) };
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                f.set_len(new_len).unwrap();
            }
            Fault::Append => {
                let n = rng.range(1, 4096) as usize;
                let extra = rng.bytes(n);
                let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                f.write_all_at(&extra, len).unwrap();
            }
            Fault::RewriteSameStamp => {
                let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                let mut other = rng.bytes(len as usize);
                if let Some(b) = other.first_mut() {
                    // Never the same bytes by chance.
                    *b ^= 0x5a;
                }
                f.write_all_at(&other, 0).unwrap();
                f.set_modified(mtime).unwrap();
            }
            Fault::Delete => std::fs::remove_file(path).unwrap(),
            Fault::SymlinkToMovedOriginal => {
                let target = outside.join(unique_name(path));
                std::fs::rename(path, &target).unwrap();
                std::os::unix::fs::symlink(&target, path).unwrap();
            }
            Fault::SymlinkToOtherFile => {
                let target = outside.join(unique_name(path));
                std::fs::write(&target, rng.bytes(len.max(1) as usize)).unwrap();
                std::fs::remove_file(path).unwrap();
                std::os::unix::fs::symlink(&target, path).unwrap();
            }
            Fault::Fifo => {
                std::fs::remove_file(path).unwrap();
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                let rc = unsafe { libc_mkfifo(c.as_ptr(), 0o600) };
                assert_eq!(
                    rc,
                    0,
                    "mkfifo {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
            Fault::Directory => {
                std::fs::remove_file(path).unwrap();
                std::fs::create_dir(path).unwrap();
            }
        }
    }
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

fn unique_name(path: &Path) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        path.file_name().unwrap().to_string_lossy()
    )
}

/// The result of one fetched CID, with when it was printed (since the Helia process started).
#[derive(Clone, Debug)]
pub struct Fetched {
    pub line: Value,
    pub at: Duration,
}

/// The outcome of [`helia_fetch_many`].
#[derive(Debug)]
pub struct ManyFetch {
    pub results: HashMap<String, Fetched>,
    pub stderr: String,
    pub exit_ok: bool,
    pub timed_out: bool,
    /// When the Helia process was started.
    pub started: Instant,
}

/// Fetches every CID at once from `peer` with one Helia process (`--parallel --allow-failures`), each with a
/// `timeout_seconds` limit, writing fetched files into `out_dir`. The process is killed (its whole group) if it
/// outlives the bound. Calls `during(started, results_printed_so_far)` on this thread while Helia runs (to inject
/// faults), then waits.
pub fn helia_fetch_many(
    peer: &str,
    cids: &[String],
    out_dir: &Path,
    timeout_seconds: u64,
    during: impl FnOnce(Instant, &std::sync::atomic::AtomicUsize),
) -> ManyFetch {
    std::fs::create_dir_all(out_dir).unwrap();
    let mut cmd = crate::js_tool("helia-fetch.mjs", "the Helia fetch tool");
    cmd.args(["--peer", peer, "--parallel", "--allow-failures"])
        .args(["--timeout-seconds", &timeout_seconds.to_string()])
        .arg("--out-dir")
        .arg(out_dir);
    for c in cids {
        cmd.args(["--cid", c]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn node helia-fetch.mjs");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let printed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let printed_by_reader = printed.clone();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                printed_by_reader.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                out.push(Fetched {
                    line: v,
                    at: started.elapsed(),
                });
            }
        }
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    during(started, &printed);
    let bound = Duration::from_secs(timeout_seconds + 60);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > bound => {
                timed_out = true;
                crate::proc::kill_group(&mut child);
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let lines = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let results = lines
        .into_iter()
        .filter_map(|f| Some((f.line["cid"].as_str()?.to_string(), f)))
        .collect();
    ManyFetch {
        results,
        stderr,
        exit_ok: status.is_some_and(|s| s.success()),
        timed_out,
        started,
    }
}

/// `ls --json` of the daemon of `env`: path → artifact JSON.
pub fn ls_by_path(env: &crate::TestEnv) -> HashMap<String, Value> {
    match env.pkgseed_json(&["ls", "--json"]) {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| Some((v["path"].as_str()?.to_string(), v)))
            .collect(),
        other => panic!("`ls --json` printed no array: {other:#}"),
    }
}

/// Polls `ls` until every path in `paths` is listed; returns path → root CID.
pub fn wait_listed(
    env: &crate::TestEnv,
    paths: &[PathBuf],
    timeout: Duration,
) -> HashMap<PathBuf, String> {
    let mut missing = Vec::new();
    crate::poll(timeout, Duration::from_millis(100), || {
        let ls = ls_by_path(env);
        missing = paths
            .iter()
            .filter(|p| !ls.contains_key(&p.display().to_string()))
            .cloned()
            .collect();
        missing.is_empty().then(|| {
            paths
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        ls[&p.display().to_string()]["cid"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    )
                })
                .collect()
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "{} of {} artifacts not listed within {timeout:?}: {:?}",
            missing.len(),
            paths.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        )
    })
}

/// [`wait_listed`] for one artifact: its root CID.
pub fn wait_listed_one(env: &crate::TestEnv, path: &Path, timeout: Duration) -> String {
    let path = path.to_path_buf();
    wait_listed(env, std::slice::from_ref(&path), timeout)
        .remove(&path)
        .expect("wait_listed returns every path it was given")
}

/// Resident set high-water mark and current RSS (KiB), thread count and open fds of a process, from /proc.
#[derive(Clone, Debug, Default)]
pub struct ProcStats {
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

pub fn proc_stats(pid: u32) -> ProcStats {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ProcStats {
        vm_hwm_kib: field("VmHWM:"),
        vm_rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
    }
}

/// A daemon child started without waiting (to be killed at an arbitrary moment, e.g. during its first scan).
/// Killed (SIGKILL) and reaped on drop.
pub struct RawDaemon {
    pub child: std::process::Child,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
}

impl RawDaemon {
    /// `pkgseed daemon` with [`crate::TEST_DAEMON_ARGS`] and `extra_env`, logs appended to
    /// `<logs>/<label>.std{out,err}.log`.
    pub fn spawn(env: &crate::TestEnv, label: &str, extra_env: &[(&str, &str)]) -> RawDaemon {
        let stdout_path = env.logs.join(format!("{label}.stdout.log"));
        let stderr_path = env.logs.join(format!("{label}.stderr.log"));
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let mut cmd = env.pkgseed();
        cmd.args(crate::TEST_DAEMON_ARGS)
            .stdin(Stdio::null())
            .stdout(open(&stdout_path))
            .stderr(open(&stderr_path));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        RawDaemon {
            child: cmd.spawn().expect("spawn pkgseed daemon"),
            stderr_path,
            stdout_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for RawDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `status --json` until it answers (`timeout`).
pub fn wait_status(env: &crate::TestEnv, timeout: Duration) -> Value {
    crate::poll(timeout, Duration::from_millis(100), || {
        let out = env.pkgseed_run(&["status", "--json"]);
        if out.success() {
            serde_json::from_str::<Value>(out.stdout.trim()).ok()
        } else {
            None
        }
    })
    .unwrap_or_else(|| panic!("the daemon did not answer `status` within {timeout:?}"))
}

/// The sockets a process holds, from /proc/net/{tcp,tcp6,udp,udp6}: (protocol, local address, port, state).
pub fn process_sockets(pid: u32) -> Vec<(String, String, u16, String)> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || !inodes.contains(cols[9]) {
                continue;
            }
            let (addr_hex, port_hex) = cols[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port_hex, 16).unwrap_or(0);
            let addr = match addr_hex.len() {
                8 => {
                    let n = u32::from_str_radix(addr_hex, 16).unwrap_or(0);
                    std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
                }
                _ => addr_hex.to_string(),
            };
            let state = match cols[3] {
                "0A" => "LISTEN",
                "01" => "ESTABLISHED",
                "07" if proto.starts_with("udp") => "UNCONN",
                other => other,
            }
            .to_string();
            out.push((proto.to_string(), addr, port, state));
        }
    }
    out
}
