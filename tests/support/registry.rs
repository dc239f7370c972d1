//! Cargo side: real `.crate` files made by the real `cargo package`, and sparse registries served from
//! [`StaticServer`](crate::http::StaticServer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::StaticServer;
use crate::proc::run;
use crate::sha256_hex;

/// The cargo binary: `$CARGO` (set by `cargo test`, the real toolchain binary) or `cargo` from PATH.
pub fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// A cargo command with the environment of this test process cleaned of what `cargo test` set for us, so the child
/// cargo behaves like one a user runs.
pub fn clean_cargo_command() -> Command {
    let mut cmd = Command::new(cargo_bin());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME")
            || k.starts_with("RUSTC_")
            || k == "RUSTFLAGS"
        {
            cmd.env_remove(k.as_ref());
        }
    }
    // rustup proxies find toolchains through RUSTUP_HOME; pin it so changing HOME does not break them.
    if std::env::var_os("RUSTUP_HOME").is_none() {
        if let Some(home) = std::env::var_os("HOME") {
            let rh = Path::new(&home).join(".rustup");
            if rh.is_dir() {
                cmd.env("RUSTUP_HOME", rh);
            }
        }
    }
    cmd.env_remove("CARGO_NET_OFFLINE");
    cmd
}

/// Make a REAL `.crate` file: generate a tiny library crate in a temp dir and run
/// `cargo package --no-verify --allow-dirty --offline` on it. `extra_files` are added at the package root
/// (e.g. a large incompressible blob). Returns the `.crate` bytes.
pub fn make_crate(name: &str, version: &str, extra_files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::Builder::new()
        .prefix("pkgseed-mkcrate-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join(format!("{name}-src"));
    std::fs::create_dir_all(root.join("src")).unwrap();
    let ident = name.replace('-', "_");
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n\
             description = \"pkgseed end-to-end test crate {name}\"\nlicense = \"MIT\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        format!(
            "//! {name} {version}\npub fn {ident}() -> &'static str {{ \"{name} {version}\" }}\n"
        ),
    )
    .unwrap();
    for (path, bytes) in extra_files {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, bytes).unwrap();
    }
    let target = dir.path().join("target");
    let mut cmd = clean_cargo_command();
    cmd.current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "package",
            "--no-verify",
            "--allow-dirty",
            "--offline",
            "--quiet",
        ]);
    run(&mut cmd, Duration::from_secs(120))
        .expect_success(&format!("cargo package {name} {version}"));
    let file = target
        .join("package")
        .join(format!("{name}-{version}.crate"));
    std::fs::read(&file).unwrap_or_else(|e| panic!("cargo package made no {}: {e}", file.display()))
}

/// `n` bytes that no compressor can shrink (sha256 in counter mode, seeded).
pub fn incompressible(n: usize, seed: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(n + 32);
    let mut i: u64 = 0;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Where cargo's sparse protocol looks for a crate's index file (relative, lower-cased).
pub fn sparse_index_path(name: &str) -> String {
    let n = name.to_lowercase();
    match n.len() {
        0 => panic!("empty crate name"),
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// One crate version published to a [`SparseRegistry`].
#[derive(Clone, Debug)]
pub struct Published {
    pub registry: String,
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
    /// sha256 hex of `bytes`, as written to the index `cksum`.
    pub cksum: String,
}

impl Published {
    pub fn file_name(&self) -> String {
        format!("{}-{}.crate", self.name, self.version)
    }
}

/// One or more cargo sparse registries served by one local HTTP server, each under its own path prefix
/// (`/<name>/`): `config.json`, index files at the sparse paths, and downloads at `/<name>/dl/{crate}/{version}/download`.
pub struct SparseRegistry {
    server: StaticServer,
    registries: Vec<String>,
    index: BTreeMap<(String, String), Vec<String>>,
    published: Vec<Published>,
}

impl Default for SparseRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl SparseRegistry {
    pub fn new() -> SparseRegistry {
        SparseRegistry {
            server: StaticServer::start(),
            registries: Vec::new(),
            index: BTreeMap::new(),
            published: Vec::new(),
        }
    }

    pub fn server(&self) -> &StaticServer {
        &self.server
    }

    /// Add a registry served under `/<name>/`.
    pub fn add_registry(&mut self, name: &str) -> &mut Self {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "bad registry name {name}"
        );
        let base = self.server.base_url();
        // `dl` is the only required key; `api` is optional (only publish/yank/owner need it).
        let config = serde_json::json!({
            "dl": format!("{base}/{name}/dl/{{crate}}/{{version}}/download"),
        });
        self.server.put(
            &format!("/{name}/config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        );
        self.registries.push(name.to_string());
        self
    }

    /// `sparse+http://127.0.0.1:PORT/<name>/` — the index URL cargo is given.
    pub fn index_url(&self, registry: &str) -> String {
        assert!(
            self.registries.iter().any(|r| r == registry),
            "unknown registry {registry}"
        );
        format!("sparse+{}/{registry}/", self.server.base_url())
    }

    /// Publish a `.crate` (no dependencies) to `registry`: append its index line, serve its download.
    pub fn publish(
        &mut self,
        registry: &str,
        name: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> Published {
        assert!(
            self.registries.iter().any(|r| r == registry),
            "unknown registry {registry}"
        );
        let cksum = sha256_hex(&bytes);
        let line = serde_json::json!({
            "name": name,
            "vers": version,
            "deps": [],
            "cksum": cksum,
            "features": {},
            "yanked": false,
        });
        let key = (registry.to_string(), name.to_lowercase());
        let lines = self.index.entry(key).or_default();
        lines.push(serde_json::to_string(&line).unwrap());
        let mut body = lines.join("\n");
        body.push('\n');
        self.server
            .put(&format!("/{registry}/{}", sparse_index_path(name)), body);
        self.server.put(
            &format!("/{registry}/dl/{name}/{version}/download"),
            bytes.clone(),
        );
        let p = Published {
            registry: registry.into(),
            name: name.into(),
            version: version.into(),
            bytes,
            cksum,
        };
        self.published.push(p.clone());
        p
    }

    pub fn published(&self) -> &[Published] {
        &self.published
    }

    /// `[registries.<name>] index = "..."` for every registry, for `$CARGO_HOME/config.toml`.
    pub fn cargo_config_toml(&self) -> String {
        let mut s = String::new();
        for r in &self.registries {
            s.push_str(&format!(
                "[registries.{r}]\nindex = \"{}\"\n\n",
                self.index_url(r)
            ));
        }
        s
    }
}

/// A dependency of a [`CargoProject`]: name, version requirement, registry name.
#[derive(Clone, Debug)]
pub struct Dep {
    pub name: String,
    pub req: String,
    pub registry: String,
}

impl Dep {
    pub fn new(name: &str, req: &str, registry: &str) -> Dep {
        Dep {
            name: name.into(),
            req: req.into(),
            registry: registry.into(),
        }
    }
}

/// A throw-away library project whose dependencies come from the local registries.
pub struct CargoProject {
    pub dir: PathBuf,
    deps: Vec<Dep>,
}

impl CargoProject {
    pub fn create(dir: &Path, deps: &[Dep]) -> CargoProject {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "//! pkgseed e2e consumer\n").unwrap();
        let p = CargoProject {
            dir: dir.to_path_buf(),
            deps: deps.to_vec(),
        };
        p.write_manifest();
        p
    }

    pub fn add_dep(&mut self, dep: Dep) {
        self.deps.push(dep);
        self.write_manifest();
    }

    fn write_manifest(&self) {
        let mut s = String::from(
            "[package]\nname = \"pkgseed-e2e-consumer\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [workspace]\n\n[dependencies]\n",
        );
        for d in &self.deps {
            s.push_str(&format!(
                "{} = {{ version = \"{}\", registry = \"{}\" }}\n",
                d.name, d.req, d.registry
            ));
        }
        std::fs::write(self.dir.join("Cargo.toml"), s).unwrap();
    }

    /// Run the real `cargo fetch` with `CARGO_HOME=cargo_home` (and `HOME=home`).
    pub fn fetch(&self, cargo_home: &Path, home: &Path) -> crate::proc::RunOutput {
        let mut cmd = clean_cargo_command();
        cmd.current_dir(&self.dir)
            .env("CARGO_HOME", cargo_home)
            .env("HOME", home)
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .env("CARGO_TERM_COLOR", "never")
            .args(["fetch"]);
        run(&mut cmd, Duration::from_secs(180)).expect_success("cargo fetch")
    }
}

/// Where cargo put the `.crate` files: `registry/cache/<index dir>/<name>-<version>.crate`.
/// Returns `(index dir name, path)` for every `.crate` found.
pub fn cached_crates(cargo_home: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let cache = cargo_home.join("registry").join("cache");
    let Ok(dirs) = std::fs::read_dir(&cache) else {
        return out;
    };
    for d in dirs.flatten() {
        let origin = d.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "crate") {
                out.push((origin.clone(), f.path()));
            }
        }
    }
    out.sort();
    out
}

/// The index dir (origin id) under `registry/cache/` holding `file_name`.
pub fn origin_of(cargo_home: &Path, file_name: &str) -> Option<(String, PathBuf)> {
    cached_crates(cargo_home)
        .into_iter()
        .find(|(_, p)| p.file_name().is_some_and(|f| f == file_name))
}
