//! Shared helpers for the end-to-end tests.
//!
//! - [`http`]: a std-only static HTTP/1.1 server on 127.0.0.1:0.
//! - [`registry`]: real `.crate` files made by `cargo package`, sparse registries, a consumer project for `cargo fetch`.
//! - [`proc`]: child processes with bounded waits and group kill.
//! - [`tcp`]: the kernel's TCP counters of the daemon's connections (`ss -ti`).
//! - [`faults`]: fault injection for `tests/reliability.rs` (seeded RNG, a crafted cargo cache, many-CID Helia runs).
//! - this module: locating binaries, a per-test environment ([`TestEnv`]), the [`Daemon`] guard, `pkgseed` JSON
//!   commands, the Helia fetch tool and the JS reference CID tool.

pub mod faults;
pub mod http;
pub mod jvmgo;
pub mod langpkg;
pub mod npm;
pub mod pipapt;
pub mod proc;
pub mod registry;
pub mod tcp;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use proc::{run, RunOutput};

/// The workspace root (parent of this crate's manifest dir).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `pkgseed` binary: `$PKGSEED_BIN`, else `<workspace>/target/debug/pkgseed`. Panics with a clear message when
/// it does not exist.
pub fn pkgseed_bin() -> PathBuf {
    let p = match std::env::var_os("PKGSEED_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/pkgseed"),
    };
    if !p.is_file() {
        panic!(
            "pkgseed binary not found at {}.\nBuild it first (`cargo build -p pkgseed`) or point PKGSEED_BIN at it.",
            p.display()
        );
    }
    p
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// RFC 4648 base32, lower case, no padding (multibase `b`).
pub fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// CIDv1(raw, sha2-256(digest)) in base32 — the checksum CID of a cargo crate, computed from its `cksum` alone.
pub fn raw_sha256_cid(sha256_hex_digest: &str) -> String {
    let digest = hex::decode(sha256_hex_digest).expect("hex digest");
    assert_eq!(digest.len(), 32, "sha256 digest must be 32 bytes");
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend_from_slice(&digest);
    format!("b{}", base32_lower(&bytes))
}

/// Poll `f` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Whether to keep temp dirs after the test (`PKGSEED_E2E_KEEP=1`).
pub fn keep_temp() -> bool {
    std::env::var_os("PKGSEED_E2E_KEEP").is_some_and(|v| v != "0" && !v.is_empty())
}

/// A private world for one test: HOME, CARGO_HOME, pkgseed config and data dirs, logs, and a work dir, all under
/// one temp dir.
pub struct TestEnv {
    root: Option<tempfile::TempDir>,
    pub root_path: PathBuf,
    pub home: PathBuf,
    pub cargo_home: PathBuf,
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub logs: PathBuf,
    pub work: PathBuf,
    /// Ecosystems whose caches live outside HOME (e.g. apt's `/var/cache/apt/archives`) are disabled in the
    /// pkgseed config unless a test enables them here: a test must not seed the CI machine's own caches.
    system_ecosystems: std::cell::RefCell<Vec<String>>,
}

/// Ecosystems whose default cache roots are system-wide, not under the test's HOME.
pub const SYSTEM_WIDE_ECOSYSTEMS: &[&str] = &["apt", "rubygems"];

impl TestEnv {
    pub fn new(name: &str) -> TestEnv {
        // Short prefix: the daemon's unix socket lives in the data dir and socket paths are limited to ~100 bytes.
        let root = tempfile::Builder::new()
            .prefix(&format!("pse-{name}-"))
            .tempdir()
            .expect("tempdir");
        let root_path = root.path().to_path_buf();
        let mk = |s: &str| {
            let p = root_path.join(s);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let env = TestEnv {
            home: mk("home"),
            cargo_home: mk("cargo-home"),
            config_dir: mk("config"),
            data_dir: mk("data"),
            logs: mk("logs"),
            work: mk("work"),
            system_ecosystems: std::cell::RefCell::new(Vec::new()),
            root_path: root_path.clone(),
            root: Some(root),
        };
        eprintln!("[{name}] test dir: {}", env.root_path.display());
        env
    }

    /// Write `$CARGO_HOME/config.toml`.
    pub fn write_cargo_config(&self, toml: &str) {
        std::fs::write(self.cargo_home.join("config.toml"), toml).unwrap();
    }

    /// Write `$PKGSEED_CONFIG_DIR/config.toml` with the given public and private origin ids.
    pub fn write_pkgseed_config(&self, public: &[&str], private: &[&str]) {
        let list = |v: &[&str]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut toml = format!(
            "[origins]\npublic = [{}]\nprivate = [{}]\n",
            list(public),
            list(private)
        );
        for ecosystem in SYSTEM_WIDE_ECOSYSTEMS {
            let enabled = self
                .system_ecosystems
                .borrow()
                .iter()
                .any(|e| e == ecosystem);
            toml.push_str(&format!("[ecosystems.{ecosystem}]\nenabled = {enabled}\n"));
        }
        std::fs::write(self.config_dir.join("config.toml"), toml).unwrap();
    }

    /// Lets the daemon use a source whose roots are system-wide (see [`SYSTEM_WIDE_ECOSYSTEMS`]); the test must point
    /// it at its own dirs (e.g. `APT_CONFIG`, `GEM_HOME`).
    pub fn enable_system_ecosystem(&self, ecosystem: &str) {
        self.system_ecosystems
            .borrow_mut()
            .push(ecosystem.to_string());
    }

    /// A `pkgseed` command with this env's variables set.
    pub fn pkgseed(&self) -> Command {
        let mut cmd = Command::new(pkgseed_bin());
        self.apply_env(&mut cmd);
        cmd
    }

    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env("PKGSEED_CONFIG_DIR", &self.config_dir)
            .env("PKGSEED_DATA_DIR", &self.data_dir)
            .env("CARGO_HOME", &self.cargo_home)
            .env("HOME", &self.home)
            .env("PKGSEED_KEYRING", "off")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .env("RUST_BACKTRACE", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
    }

    /// Run `pkgseed ARGS` (30 s bound) and return the output, whatever it was.
    pub fn pkgseed_run(&self, args: &[&str]) -> RunOutput {
        let mut cmd = self.pkgseed();
        cmd.args(args);
        run(&mut cmd, Duration::from_secs(30))
    }

    /// Run `pkgseed ARGS`, expect success and parse stdout as JSON.
    #[track_caller]
    pub fn pkgseed_json(&self, args: &[&str]) -> Value {
        let out = self
            .pkgseed_run(args)
            .expect_success(&format!("pkgseed {}", args.join(" ")));
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "pkgseed {} printed no JSON ({e})\n{}",
                args.join(" "),
                out.describe()
            )
        })
    }

    /// `pkgseed cid [--profile P] FILE...` → the CIDs in order.
    #[track_caller]
    pub fn pkgseed_cids(&self, profile: Option<&str>, files: &[&Path]) -> Vec<String> {
        let mut args: Vec<String> = vec!["cid".into()];
        if let Some(p) = profile {
            args.push("--profile".into());
            args.push(p.into());
        }
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args_ref: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = self.pkgseed_run(&args_ref).expect_success("pkgseed cid");
        parse_cid_lines(&out.stdout, files)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if keep_temp() || std::thread::panicking() {
            if let Some(r) = self.root.take() {
                let p = r.keep();
                eprintln!("kept test dir {}", p.display());
            }
        }
    }
}

/// Parse `CID  FILE` lines (two spaces) and check they name `files` in order.
#[track_caller]
pub fn parse_cid_lines(stdout: &str, files: &[&Path]) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        files.len(),
        "expected one `CID  FILE` line per file, got:\n{stdout}"
    );
    lines
        .iter()
        .zip(files)
        .map(|(line, file)| {
            let (cid, path) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("line is not `CID  FILE` (two spaces): {line:?}"));
            assert_eq!(
                Path::new(path.trim_end()),
                *file,
                "CID line names another file: {line:?}"
            );
            cid.to_string()
        })
        .collect()
}

/// A running `pkgseed daemon`; killed on drop. Its stdout/stderr go to files in the env's log dir and are printed
/// when the test fails.
pub struct Daemon {
    child: Option<Child>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub label: String,
    started: Instant,
    /// Set once the logs were printed into a panic message, so Drop does not print them again.
    logs_shown: bool,
}

/// The arguments every test daemon runs with: loopback only, and the local gateway on a free port.
pub const TEST_DAEMON_ARGS: [&str; 7] = [
    "daemon",
    "--network",
    "local",
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
    "--gateway-listen",
    "127.0.0.1:0",
];

/// How long a daemon may take to answer `status` after it was started.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);

impl Daemon {
    /// `pkgseed daemon --network local --listen /ip4/127.0.0.1/tcp/0 --gateway-listen 127.0.0.1:0`, then wait until
    /// `status --json` answers. (The gateway's default fixed port would make parallel test daemons race for it.)
    pub fn start(env: &TestEnv, label: &str) -> Daemon {
        let stdout_path = env.logs.join(format!("{label}.stdout.log"));
        let stderr_path = env.logs.join(format!("{label}.stderr.log"));
        let mut cmd = env.pkgseed();
        cmd.args(TEST_DAEMON_ARGS)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", proc::cmdline(&cmd)));
        let mut d = Daemon {
            child: Some(child),
            stdout_path,
            stderr_path,
            label: label.to_string(),
            started: Instant::now(),
            logs_shown: false,
        };
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        let mut last = None;
        loop {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.logs_shown = true;
                panic!(
                    "daemon {label} exited during start-up ({status})\n{}",
                    d.logs()
                );
            }
            let out = env.pkgseed_run(&["status", "--json"]);
            if out.success() && serde_json::from_str::<Value>(out.stdout.trim()).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                d.logs_shown = true;
                panic!(
                    "daemon {label} did not answer `status --json` within {DAEMON_START_TIMEOUT:?}\nlast attempt:\n{}\n{}",
                    last.map(|o: RunOutput| o.describe()).unwrap_or_default(),
                    d.logs()
                );
            }
            last = Some(out);
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "[{label}] daemon answers status after {:.1?}",
            d.started.elapsed()
        );
        d
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// stdout and stderr of the daemon so far (tails).
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- daemon {} stderr ({}) ---\n{}\n--- daemon {} stdout ---\n{}\n---",
            self.label,
            self.stderr_path.display(),
            proc::tail(&read(&self.stderr_path), 12000),
            self.label,
            proc::tail(&read(&self.stdout_path), 4000)
        )
    }

    /// SIGTERM, wait up to 15 s, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            proc::terminate(c.id());
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("[{}] daemon ignored SIGTERM for 15 s; killing", self.label);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_shown {
            eprintln!("{}", self.logs());
        }
        self.kill();
    }
}

/// `pkgseed ls --json` as an array.
#[track_caller]
pub fn ls(env: &TestEnv) -> Vec<Value> {
    match env.pkgseed_json(&["ls", "--json"]) {
        Value::Array(v) => v,
        other => panic!("`ls --json` printed no array: {other:#}"),
    }
}

/// Asserts an `ls` entry's sha256 identity: registry checksum `sha256:` + the digest of `checksum_file`, the checksum
/// CID of that digest, and a root CID equal to the JS reference importer's for `content_file`. Returns the root CID
/// and the checksum CID.
#[track_caller]
pub fn assert_sha256_identity(
    entry: &Value,
    checksum_file: &Path,
    content_file: &Path,
) -> (String, String) {
    let sha = sha256_file(checksum_file);
    assert_eq!(
        entry["registry_checksum"].as_str(),
        Some(format!("sha256:{sha}").as_str()),
        "{entry}"
    );
    let checksum_cid = raw_sha256_cid(&sha);
    assert_eq!(
        entry["checksum_cid"].as_str(),
        Some(checksum_cid.as_str()),
        "{entry}"
    );
    let cid = entry["cid"].as_str().unwrap().to_string();
    assert_eq!(
        js_unixfs_cids("unixfs-v1-2025", &[content_file])[0],
        cid,
        "ls CID != ipfs-unixfs-importer CID"
    );
    (cid, checksum_cid)
}

/// `status --json` of the daemon of `env`, as JSON.
#[track_caller]
pub fn status(env: &TestEnv) -> Value {
    env.pkgseed_json(&["status", "--json"])
}

/// Wait until `status.first_scan_done` is true; returns that status.
#[track_caller]
pub fn wait_first_scan(env: &TestEnv, timeout: Duration) -> Value {
    let mut last = Value::Null;
    poll(timeout, Duration::from_millis(100), || {
        last = status(env);
        (last["first_scan_done"] == Value::Bool(true)).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("first_scan_done not true within {timeout:?}; last status: {last:#}"))
}

/// A multiaddr Helia can dial: the first `/ip4/127.0.0.1/tcp/...` listen address plus `/p2p/<peer_id>`.
#[track_caller]
pub fn dial_addr(status: &Value) -> String {
    let peer = status["peer_id"]
        .as_str()
        .unwrap_or_else(|| panic!("status has no peer_id: {status:#}"));
    let addrs = status["listen_addrs"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no listen_addrs: {status:#}"));
    let addr = addrs
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| {
            a.starts_with("/ip4/127.0.0.1/tcp/") && !a.contains("/p2p/") && !a.contains("/ws")
        })
        .unwrap_or_else(|| panic!("no /ip4/127.0.0.1/tcp/ listen address in {addrs:?}"));
    format!("{addr}/p2p/{peer}")
}

// ---------------------------------------------------------------------------------------------------------------
// JS tools

pub fn js_dir() -> PathBuf {
    workspace_root().join("tests/js")
}

pub fn node_bin() -> PathBuf {
    std::env::var_os("NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// Whether the JS reference importer is installed (`tests/js/node_modules/ipfs-unixfs-importer`).
pub fn js_importer_installed() -> bool {
    js_dir()
        .join("node_modules/ipfs-unixfs-importer/package.json")
        .is_file()
}

/// `node tests/js/<script>`, run in tests/js. Panics clearly when the script is missing (`what`: which tool it is).
#[track_caller]
pub fn js_tool(script: &str, what: &str) -> Command {
    let path = js_dir().join(script);
    assert!(path.is_file(), "{} is missing ({what})", path.display());
    let mut cmd = Command::new(node_bin());
    cmd.current_dir(js_dir()).arg(path);
    cmd
}

/// `node tests/js/unixfs-cids.mjs PROFILE FILE...` → CIDs in order. Panics clearly when the script is missing.
#[track_caller]
pub fn js_unixfs_cids(profile: &str, files: &[&Path]) -> Vec<String> {
    let mut cmd = js_tool("unixfs-cids.mjs", "the JS reference CID tool");
    cmd.arg(profile).args(files);
    let out = run(&mut cmd, Duration::from_secs(120)).expect_success("node unixfs-cids.mjs");
    parse_cid_lines(&out.stdout, files)
}

/// Options for one run of `tests/js/helia-fetch.mjs`.
#[derive(Clone, Debug, Default)]
pub struct HeliaFetch {
    pub peer: String,
    pub cids: Vec<String>,
    pub expect_missing: Vec<String>,
    pub out_dir: PathBuf,
    pub idle_seconds: Option<u64>,
    /// Per-CID fetch timeout (`--timeout-seconds`; the tool's default is 60).
    pub timeout_seconds: Option<u64>,
    /// How long an `--expect-missing` CID is tried before it counts as missing (`--missing-seconds`; default 5).
    pub missing_seconds: Option<u64>,
}

/// The outcome of a Helia fetch: the process output and its JSON lines.
#[derive(Debug)]
pub struct HeliaResult {
    pub output: RunOutput,
    pub lines: Vec<Value>,
}

impl HeliaResult {
    pub fn success(&self) -> bool {
        self.output.success()
    }

    /// The JSON line reported for `cid` (`{cid, bytes, sha256, ok}` for a fetch, `{cid, missing, ok}` for
    /// `--expect-missing`, `{cid, ok: false, error}` for a failed fetch).
    pub fn line(&self, cid: &str) -> Option<&Value> {
        self.lines.iter().find(|l| l["cid"].as_str() == Some(cid))
    }

    /// The line for `cid`; panics with the run's output when there is none.
    #[track_caller]
    pub fn expect_line(&self, cid: &str) -> &Value {
        self.line(cid)
            .unwrap_or_else(|| panic!("no Helia line for {cid}\n{}", self.output.describe()))
    }

    /// Panics unless every one of `cids` was reported missing (not obtainable from the peer).
    #[track_caller]
    pub fn assert_missing(&self, cids: &[String]) {
        for cid in cids {
            let line = self.expect_line(cid);
            assert_eq!(
                line["missing"], true,
                "{cid} must not be obtainable: {line}"
            );
        }
    }
}

/// Run the Helia fetch tool (`tests/js/helia-fetch.mjs`). Bounded: the tool's own timeouts + idle time + 60 s.
#[track_caller]
pub fn helia_fetch(opts: &HeliaFetch) -> HeliaResult {
    let mut cmd = js_tool(
        "helia-fetch.mjs",
        "the Helia fetch tool; it is needed for the fetch tests",
    );
    std::fs::create_dir_all(&opts.out_dir).unwrap();
    cmd.args(["--peer", &opts.peer]);
    for c in &opts.cids {
        cmd.args(["--cid", c]);
    }
    for c in &opts.expect_missing {
        cmd.args(["--expect-missing", c]);
    }
    cmd.arg("--out-dir").arg(&opts.out_dir);
    if let Some(i) = opts.idle_seconds {
        cmd.args(["--idle-seconds", &i.to_string()]);
    }
    if let Some(t) = opts.timeout_seconds {
        cmd.args(["--timeout-seconds", &t.to_string()]);
    }
    if let Some(t) = opts.missing_seconds {
        cmd.args(["--missing-seconds", &t.to_string()]);
    }
    let per_cid = opts.timeout_seconds.unwrap_or(60) * opts.cids.len().max(1) as u64
        + opts.missing_seconds.unwrap_or(5) * opts.expect_missing.len() as u64;
    let bound = Duration::from_secs(per_cid + opts.idle_seconds.unwrap_or(0) + 60);
    let output = run(&mut cmd, bound);
    let lines = output
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.is_object())
        .collect();
    HeliaResult { output, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_cid_of_known_bytes() {
        // ipfs-unixfs-importer (unixfs-v1-2025) gives this CID for the 3 bytes "hi\n": one raw block.
        assert_eq!(
            raw_sha256_cid(&sha256_hex(b"hi\n")),
            "bafkreiey5jxe6ilpf62lnh77tm5ejbbmhbugzjuf6p2v3remlu73ced34q"
        );
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn sparse_paths() {
        use registry::sparse_index_path as p;
        assert_eq!(p("a"), "1/a");
        assert_eq!(p("ab"), "2/ab");
        assert_eq!(p("abc"), "3/a/abc");
        assert_eq!(p("Seed_Ling"), "se/ed/seed_ling");
    }

    #[test]
    fn cid_lines() {
        let f = Path::new("/tmp/a b.crate");
        assert_eq!(
            parse_cid_lines("bafkqaaa  /tmp/a b.crate\n", &[f]),
            vec!["bafkqaaa".to_string()]
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// DHT providers (tests/js/dht-providers.mjs)

/// The outcome of one `tests/js/dht-providers.mjs` run: a fresh js-libp2p DHT client (`/ipfs/kad/1.0.0`, client
/// mode, loopback addresses kept) dials `peer` and runs GET_PROVIDERS queries.
#[derive(Debug)]
pub struct DhtProviders {
    pub output: RunOutput,
    /// `{cid, providers: [peer id], responded: [peer id], ok}` per CID.
    pub lines: Vec<Value>,
}

impl DhtProviders {
    /// The providers reported for `cid`, after checking that the query ran and that `queried` (a peer id) answered
    /// it — so an empty list means "nobody", not "never asked". Panics with the tool's output otherwise.
    #[track_caller]
    pub fn providers(&self, cid: &str, queried: &str) -> Vec<String> {
        let line = self
            .lines
            .iter()
            .find(|l| l["cid"].as_str() == Some(cid))
            .unwrap_or_else(|| panic!("no DHT line for {cid}\n{}", self.output.describe()));
        let list = |field: &str| -> Vec<String> {
            line[field]
                .as_array()
                .unwrap_or_else(|| panic!("DHT line without {field}: {line}"))
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(
            line["ok"],
            Value::Bool(true),
            "DHT query for {cid} failed: {line}"
        );
        assert!(
            list("responded").iter().any(|p| p == queried),
            "{queried} did not answer GET_PROVIDERS for {cid}: {line}"
        );
        list("providers")
    }
}

/// Run `node tests/js/dht-providers.mjs --peer PEER --find-providers CID...` (each query bounded by
/// `timeout_secs`; the whole run by that per CID + 60 s).
#[track_caller]
pub fn dht_find_providers(peer: &str, cids: &[&str], timeout_secs: u64) -> DhtProviders {
    let mut cmd = js_tool("dht-providers.mjs", "the DHT providers tool");
    cmd.args([
        "--peer",
        peer,
        "--timeout-seconds",
        &timeout_secs.to_string(),
        "--routing-seconds",
        "15",
    ]);
    for c in cids {
        cmd.args(["--find-providers", c]);
    }
    let bound = Duration::from_secs(timeout_secs * cids.len().max(1) as u64 + 60);
    let output = run(&mut cmd, bound);
    let lines = output
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.is_object())
        .collect();
    DhtProviders { output, lines }
}

// A small loopback DHT (tests/js/dht-sink.mjs)

/// Run `node tests/js/dht-sink.mjs`: `nodes` js-libp2p Kademlia servers on loopback dial `dial` (a daemon's
/// `/ip4/127.0.0.1/tcp/…/p2p/…` address) and count the provider records `provider` stores with them, until
/// `expect_keys` distinct keys arrived (or `timeout_secs`). Returns the tool's summary line
/// (`{keys, records, done, …}`).
#[track_caller]
pub fn dht_sink_collect(
    dial: &str,
    provider: &str,
    expect_keys: u64,
    nodes: u32,
    timeout_secs: u64,
) -> Value {
    let mut cmd = js_tool("dht-sink.mjs", "the loopback DHT tool");
    cmd.args([
        "--dial",
        dial,
        "--provider",
        provider,
        "--expect-keys",
        &expect_keys.to_string(),
        "--nodes",
        &nodes.to_string(),
        "--timeout-seconds",
        &timeout_secs.to_string(),
    ]);
    let output = run(&mut cmd, Duration::from_secs(timeout_secs + 60));
    output
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("keys").is_some())
        .unwrap_or_else(|| panic!("dht-sink printed no summary\n{}", output.describe()))
}
