//! npm and yarn v1 helpers: tarballs made by the real `npm pack`, an npm-style registry (packuments + tarballs) on
//! the [`StaticServer`](crate::http::StaticServer) under a path prefix, the clients themselves, and the CIDs an npm
//! artifact is announced under.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::StaticServer;
use serde_json::Value;

use crate::{base32_lower, poll, run, RunOutput, TestEnv};

/// A package tarball made by `npm pack`.
#[derive(Clone, Debug)]
pub struct NpmTarball {
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
}

impl NpmTarball {
    pub fn sha512(&self) -> Vec<u8> {
        use sha2::{Digest, Sha512};
        Sha512::digest(&self.bytes).to_vec()
    }
    pub fn sha512_hex(&self) -> String {
        hex::encode(self.sha512())
    }
    /// SRI `sha512-<base64>`.
    pub fn integrity(&self) -> String {
        format!("sha512-{}", base64_std(&self.sha512()))
    }
    /// The name's last part (`widget` of `@acme/widget`).
    pub fn short_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap()
    }
    /// Where npm's cacache keeps these bytes under `cache_dir` (the parent of `_cacache`).
    pub fn cacache_path(&self, cache_dir: &Path) -> PathBuf {
        let h = self.sha512_hex();
        cache_dir
            .join("_cacache/content-v2/sha512")
            .join(&h[..2])
            .join(&h[2..4])
            .join(&h[4..])
    }
    /// CIDv1(raw, sha2-512 multihash of the registry integrity): the checksum CID.
    pub fn checksum_cid(&self) -> String {
        let mut bytes = vec![0x01, 0x55, 0x13, 0x40];
        bytes.extend_from_slice(&self.sha512());
        format!("b{}", base32_lower(&bytes))
    }
}

fn base64_std(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Panics with a clear message unless `program --version` runs; returns its version output.
#[track_caller]
pub fn require_tool(program: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, Duration::from_secs(60));
    assert!(
        out.success(),
        "`{program}` is required for this test and did not run (install it: scripts/setup.sh)\n{}",
        out.describe()
    );
    out.stdout.trim().to_string()
}

/// Makes a package with the real `npm pack` in `dir/<name>` and returns its tarball. `payload` is written to
/// `data.bin` inside the package (use incompressible bytes to get a large tarball).
#[track_caller]
pub fn npm_pack(dir: &Path, name: &str, version: &str, payload: &[u8]) -> NpmTarball {
    let pkg = dir.join(name.replace('/', "+"));
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        format!("{{\"name\":\"{name}\",\"version\":\"{version}\",\"description\":\"pkgseed e2e\",\"license\":\"MIT\"}}\n"),
    )
    .unwrap();
    std::fs::write(
        pkg.join("index.js"),
        format!("module.exports = {:?};\n", name),
    )
    .unwrap();
    std::fs::write(pkg.join("data.bin"), payload).unwrap();
    let mut cmd = Command::new("npm");
    cmd.current_dir(&pkg)
        .args(["pack", "--silent", "--no-update-notifier"]);
    let out = run(&mut cmd, Duration::from_secs(60)).expect_success("npm pack");
    let file = out
        .stdout
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    let bytes =
        std::fs::read(pkg.join(&file)).unwrap_or_else(|e| panic!("npm pack wrote no {file}: {e}"));
    NpmTarball {
        name: name.into(),
        version: version.into(),
        bytes,
    }
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An npm registry under `http://127.0.0.1:<port>/<prefix>/` on a shared static server.
pub struct NpmRegistry<'s> {
    server: &'s StaticServer,
    prefix: String,
    packuments: BTreeMap<String, serde_json::Value>,
}

impl<'s> NpmRegistry<'s> {
    pub fn new(server: &'s StaticServer, prefix: &str) -> NpmRegistry<'s> {
        NpmRegistry {
            server,
            prefix: prefix.into(),
            packuments: BTreeMap::new(),
        }
    }

    /// The registry URL, ending with `/` (also the origin id pkgseed shows).
    pub fn url(&self) -> String {
        format!(
            "{}/{}/",
            self.server.base_url().trim_end_matches('/'),
            self.prefix
        )
    }

    pub fn tarball_url(&self, t: &NpmTarball) -> String {
        format!(
            "{}{}/-/{}-{}.tgz",
            self.url(),
            t.name,
            t.short_name(),
            t.version
        )
    }

    /// Serves the tarball and (re)writes the packument.
    pub fn publish(&mut self, t: &NpmTarball) {
        let tarball_path = format!(
            "/{}/{}/-/{}-{}.tgz",
            self.prefix,
            t.name,
            t.short_name(),
            t.version
        );
        self.server.put(&tarball_path, t.bytes.clone());
        let url = self.tarball_url(t);
        let doc = self.packuments.entry(t.name.clone()).or_insert_with(
            || serde_json::json!({"name": t.name, "dist-tags": {}, "versions": {}}),
        );
        doc["dist-tags"]["latest"] = t.version.clone().into();
        doc["versions"][&t.version] = serde_json::json!({
            "name": t.name, "version": t.version,
            "dist": {"tarball": url, "integrity": t.integrity(), "shasum": hex::encode(sha1_digest(&t.bytes))},
        });
        let body = doc.to_string().into_bytes();
        self.server
            .put(&format!("/{}/{}", self.prefix, t.name), body.clone());
        if t.name.starts_with('@') {
            self.server.put(
                &format!("/{}/{}", self.prefix, t.name.replacen('/', "%2f", 1)),
                body.clone(),
            );
            self.server.put(
                &format!("/{}/{}", self.prefix, t.name.replacen('/', "%2F", 1)),
                body,
            );
        }
    }
}

/// SHA-1 (for the packument's legacy `shasum`, which yarn v1 checks); small and only for test fixtures.
fn sha1_digest(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Runs a client command (bounded) with HOME set and the caller's npm/yarn config variables removed.
pub fn client(
    program: &str,
    home: &Path,
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> RunOutput {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).args(args).env("HOME", home);
    for (k, _) in std::env::vars() {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("npm_config_") || lower.starts_with("yarn_") {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd, Duration::from_secs(120))
}

/// The `ls --json` entries of one ecosystem (`npm` or `yarn`).
#[track_caller]
pub fn ls_of(env: &TestEnv, ecosystem: &str) -> Vec<Value> {
    crate::ls(env)
        .into_iter()
        .filter(|e| e["ecosystem"] == ecosystem)
        .collect()
}

/// `name@version` of each entry.
pub fn names(ls: &[Value]) -> BTreeSet<String> {
    ls.iter()
        .map(|e| {
            format!(
                "{}@{}",
                e["name"].as_str().unwrap_or("?"),
                e["version"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Waits (20 s) until `ls --json` lists exactly `want` (`name@version`) for `ecosystem`; returns those entries.
#[track_caller]
pub fn wait_ls(env: &TestEnv, ecosystem: &str, want: &[&str], what: &str) -> Vec<Value> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut last = Vec::new();
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        last = ls_of(env, ecosystem);
        (names(&last) == want).then_some(())
    })
    .unwrap_or_else(|| panic!("{what}: ls --json never listed exactly {want:?}; last: {last:#?}"));
    last
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha1_and_base64_match_known_values() {
        assert_eq!(
            hex::encode(super::sha1_digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(super::base64_std(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64_std(b"fo"), "Zm8=");
    }
}
