//! Helpers for the pip and apt end-to-end tests: an HTTP server that sends cache headers (pip only caches responses
//! that allow it), wheels written with python3's `zipfile`, the pip used by the tests, and a signed local apt
//! repository (a `.deb` from `dpkg-deb --build`, hand-written `Packages`/`Release`, `InRelease` clearsigned with a
//! test key made by `gpg` in a temp `GNUPGHOME`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{run, sha256_hex, workspace_root};

#[derive(Clone)]
struct Entry {
    bytes: Vec<u8>,
    /// Send the full Content-Length but only half the body, then close (an interrupted download).
    truncated: bool,
}

type Files = Arc<Mutex<HashMap<String, Entry>>>;

/// A static HTTP/1.1 server on 127.0.0.1:0 whose 200 responses carry `Cache-Control: max-age=…, immutable,
/// public` and an `ETag`, so pip's cachecontrol stores them. Stops when dropped.
pub struct CachingServer {
    addr: SocketAddr,
    files: Files,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CachingServer {
    pub fn start() -> CachingServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let files: Files = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (files, stop) = (files.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let files = files.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &files);
                    });
                }
            })
        };
        CachingServer {
            addr,
            files,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.files.lock().unwrap().insert(
            path.to_string(),
            Entry {
                bytes: bytes.into(),
                truncated: false,
            },
        );
    }

    /// Serve `bytes` at `path` as an interrupted response (half the body, then the connection closes).
    pub fn put_truncated(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.files.lock().unwrap().insert(
            path.to_string(),
            Entry {
                bytes: bytes.into(),
                truncated: true,
            },
        );
    }
}

impl Drop for CachingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, files: &Files) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts
            .next()
            .unwrap_or("/")
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_string();
        let entry = files.lock().unwrap().get(&path).cloned();
        let Some(entry) = entry else {
            let body = b"not found\n";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )?;
            if method != "HEAD" {
                out.write_all(body)?;
            }
            out.flush()?;
            continue;
        };
        let ctype = if path.ends_with('/') {
            "text/html"
        } else {
            "application/octet-stream"
        };
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: {ctype}\r\nCache-Control: max-age=365000000, immutable, public\r\nETag: \"{}\"\r\nLast-Modified: Sun, 01 Nov 2026 00:00:00 GMT\r\n\r\n",
            entry.bytes.len(),
            &sha256_hex(&entry.bytes)[..16]
        )?;
        if method == "HEAD" {
            out.flush()?;
            continue;
        }
        if entry.truncated {
            out.write_all(&entry.bytes[..entry.bytes.len() / 2])?;
            out.flush()?;
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        out.write_all(&entry.bytes)?;
        out.flush()?;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// pip

/// The `pip.__version__` of `python` as (major, minor), with the run's output (for messages).
fn pip_version(python: &Path) -> (Option<(u32, u32)>, String, crate::RunOutput) {
    let out = run(
        Command::new(python).args(["-c", "import pip; print(pip.__version__)"]),
        Duration::from_secs(60),
    );
    let version = out.stdout.trim().to_string();
    let parts: Vec<u32> = version
        .split('.')
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    let major_minor = match parts.as_slice() {
        [major, minor] if out.success() => Some((*major, *minor)),
        _ => None,
    };
    (major_minor, version, out)
}

/// The python whose pip the tests run: `$PKGSEED_E2E_PYTHON`, else `<workspace>/target/e2e-pip/bin/python3` (made
/// by scripts/setup.sh), else `python3`. Panics unless its pip is 23.3 or later (the separate-body HTTP cache).
pub fn pip_python() -> PathBuf {
    let venv = workspace_root().join("target/e2e-pip/bin/python3");
    let python = match std::env::var_os("PKGSEED_E2E_PYTHON") {
        Some(p) => PathBuf::from(p),
        None if venv.is_file() => venv,
        None => PathBuf::from("python3"),
    };
    let (major_minor, version, out) = pip_version(&python);
    assert!(
        major_minor.is_some_and(|v| v >= (23, 3)),
        "the pip e2e test needs pip >= 23.3 (its http-v2 cache keeps bodies as files); {} has pip {version:?}.\n\
         Run scripts/setup.sh (it makes target/e2e-pip) or set PKGSEED_E2E_PYTHON.\n{}",
        python.display(),
        out.describe()
    );
    python
}

/// The pip whose HTTP cache keeps each response body inline (`http/`, before 23.3) that the tests pin.
pub const OLD_PIP_VERSION: &str = "23.2.1";

/// The python of a venv with pip [`OLD_PIP_VERSION`]: `$PKGSEED_E2E_OLD_PIP_PYTHON`, else
/// `<workspace>/target/e2e-pip-23.2/bin/python3`, made on first use (as scripts/setup.sh does) with `python3 -m venv`
/// and `pip install pip==23.2.1` through the machine's normal pip configuration. Panics with the reason when that
/// venv cannot be made or its pip is 23.3 or later: the test never skips.
pub fn old_pip_python() -> PathBuf {
    if let Some(python) = std::env::var_os("PKGSEED_E2E_OLD_PIP_PYTHON") {
        let python = PathBuf::from(python);
        let (major_minor, version, out) = pip_version(&python);
        assert!(
            major_minor.is_some_and(|v| v < (23, 3)),
            "$PKGSEED_E2E_OLD_PIP_PYTHON={} must have a pip before 23.3, it has {version:?}\n{}",
            python.display(),
            out.describe()
        );
        return python;
    }
    let venv = workspace_root().join("target/e2e-pip-23.2");
    let python = venv.join("bin/python3");
    let current = python.is_file().then(|| pip_version(&python).1);
    if current.as_deref() != Some(OLD_PIP_VERSION) {
        if !python.is_file() {
            let made = run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                Duration::from_secs(300),
            );
            assert!(
                made.success(),
                "cannot create the venv {} for pip {OLD_PIP_VERSION} (Debian package python3-venv; \
                 scripts/setup.sh installs it)\n{}",
                venv.display(),
                made.describe()
            );
        }
        let installed = run(
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .arg(format!("pip=={OLD_PIP_VERSION}")),
            Duration::from_secs(600),
        );
        assert!(
            installed.success(),
            "cannot install pip {OLD_PIP_VERSION} into {} from the package index (is the index reachable? \
             scripts/setup.sh makes this venv)\n{}",
            venv.display(),
            installed.describe()
        );
    }
    let (_, version, out) = pip_version(&python);
    assert_eq!(
        version,
        OLD_PIP_VERSION,
        "{} has the wrong pip\n{}",
        python.display(),
        out.describe()
    );
    python
}

/// A pip command isolated from the machine's pip configuration and environment.
pub fn pip_command(python: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip"])
        .env("HOME", home)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_CACHE_DIR")
        .env_remove("PIP_NO_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME");
    cmd
}

/// Writes a pure-Python wheel `<name>-<version>-py3-none-any.whl` into `dir` with python3's `zipfile`.
pub fn make_wheel(dir: &Path, name: &str, version: &str) -> PathBuf {
    make_wheel_with_random_bytes(dir, name, version, 0)
}

/// [`make_wheel`] with a stored (uncompressed) file of `random_bytes` random bytes in it, for a wheel of several
/// UnixFS chunks.
pub fn make_wheel_with_random_bytes(
    dir: &Path,
    name: &str,
    version: &str,
    random_bytes: usize,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let script = r##"
import os, sys, zipfile
path, name, version, random_bytes = sys.argv[1:5]
di = f"{name}-{version}.dist-info"
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    if int(random_bytes):
        z.writestr(f"{name}/blob.bin", os.urandom(int(random_bytes)), compress_type=zipfile.ZIP_STORED)
    z.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n" + "# padding\n" * 200)
    z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: pkgseed-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{di}/RECORD", "")
"##;
    run(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&file)
            .arg(name)
            .arg(version)
            .arg(random_bytes.to_string()),
        Duration::from_secs(60),
    )
    .expect_success("python3 zipfile wheel");
    file
}

/// The hex blake2b-256 of a file (python3's hashlib), as the content-addressed index layout uses.
pub fn blake2b_256_hex(path: &Path) -> String {
    let out = run(
        Command::new("python3")
            .arg("-c")
            .arg("import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],'rb').read(), digest_size=32).hexdigest())")
            .arg(path),
        Duration::from_secs(60),
    )
    .expect_success("python3 blake2b");
    out.stdout.trim().to_string()
}

/// Every file under `dir` (recursively) that `keep` accepts, sorted.
fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    fn walk(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, keep, out);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, keep, &mut out);
    out.sort();
    out
}

/// Every `*.body` file under `<cache>/http-v2`.
pub fn pip_bodies(cache: &Path) -> Vec<PathBuf> {
    files_under(&cache.join("http-v2"), &|p| {
        p.extension().is_some_and(|x| x == "body")
    })
}

/// Every file under `<cache>/http`: the responses pip before 23.3 cached, each with its body inline.
pub fn pip_inline_entries(cache: &Path) -> Vec<PathBuf> {
    files_under(&cache.join("http"), &|_| true)
}

// ---------------------------------------------------------------------------------------------------------------
// apt

/// Panics with a clear message unless `tool` runs.
pub fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is required (Debian package {package}); run scripts/setup.sh"
    );
}

/// A temp GnuPG home with one ed25519 signing key and no passphrase; its agent is killed on drop.
pub struct TestKey {
    pub home: PathBuf,
}

impl TestKey {
    pub fn new(dir: &Path, name: &str) -> TestKey {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = TestKey { home };
        key.gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@example.invalid>"),
            "ed25519",
            "sign",
            "never",
        ]);
        key
    }

    pub fn gpg(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--pinentry-mode", "loopback"])
            .args(args);
        run(&mut cmd, Duration::from_secs(60))
            .expect_success("gpg")
            .stdout
    }

    /// The public key as a binary keyring file.
    pub fn export(&self, to: &Path) {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--export", "-o"])
            .arg(to);
        run(&mut cmd, Duration::from_secs(60)).expect_success("gpg --export");
    }

    pub fn clearsign(&self, input: &Path, output: &Path) {
        self.gpg(&[
            "--passphrase",
            "",
            "--yes",
            "--clearsign",
            "-o",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A trivial binary package built with `dpkg-deb --build` (`Architecture: arch`); returns the `.deb` path.
pub fn make_deb(dir: &Path, name: &str, version: &str, arch: &str) -> PathBuf {
    let root = dir.join(format!("{name}-build"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/doc/{name}"))).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: test <t@example.invalid>\nDescription: pkgseed e2e package\n"),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("usr/share/doc/{name}/README")),
        format!("{name} {version}\n").repeat(50),
    )
    .unwrap();
    let out = dir.join(format!("{name}_{version}_{arch}.deb"));
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out);
    run(&mut cmd, Duration::from_secs(60)).expect_success("dpkg-deb --build");
    out
}

/// Serves a one-component repository at `<server>/debian/`: `pool/main/<deb>`, `dists/stable/main/binary-<arch>/
/// Packages` and an `InRelease` clearsigned by `key`. `truncated` debs are listed but served cut short.
pub fn serve_apt_repo(
    server: &CachingServer,
    work: &Path,
    key: &TestKey,
    arch: &str,
    debs: &[(&Path, bool)],
) {
    let mut packages = String::new();
    for (deb, truncated) in debs {
        let bytes = std::fs::read(deb).unwrap();
        let file = deb.file_name().unwrap().to_str().unwrap();
        let mut cmd = Command::new("dpkg-deb");
        cmd.arg("-f").arg(deb);
        let control = run(&mut cmd, Duration::from_secs(30))
            .expect_success("dpkg-deb -f")
            .stdout;
        packages.push_str(control.trim_end());
        packages.push_str(&format!(
            "\nFilename: pool/main/{file}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            sha256_hex(&bytes)
        ));
        if *truncated {
            server.put_truncated(&format!("/debian/pool/main/{file}"), bytes);
        } else {
            server.put(&format!("/debian/pool/main/{file}"), bytes);
        }
    }
    let date = run(
        Command::new("date").args(["-u", "-R"]),
        Duration::from_secs(10),
    )
    .expect_success("date")
    .stdout;
    let release = format!(
        "Origin: pkgseed-test\nLabel: pkgseed-test\nSuite: stable\nCodename: stable\nDate: {}\nArchitectures: {arch}\nComponents: main\nSHA256:\n {} {} main/binary-{arch}/Packages\n",
        date.trim(),
        sha256_hex(packages.as_bytes()),
        packages.len()
    );
    let dir = work.join(format!("repo-{}", server.addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Release"), &release).unwrap();
    key.clearsign(&dir.join("Release"), &dir.join("InRelease"));
    server.put(
        &format!("/debian/dists/stable/main/binary-{arch}/Packages"),
        packages,
    );
    server.put("/debian/dists/stable/Release", release);
    server.put(
        "/debian/dists/stable/InRelease",
        std::fs::read(dir.join("InRelease")).unwrap(),
    );
}
