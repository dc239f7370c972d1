//! End-to-end: NuGet and Conda caches through the real daemon. No NuGet (dotnet) or conda client can run on this
//! machine, so the caches are FIXTURES written in the documented layouts (see the module docs of
//! `crates/sources/src/nuget.rs` and `conda.rs`):
//! - NuGet global-packages folder `~/.nuget/packages/<id>/<ver>/<id>.<ver>.nupkg` with `<file>.sha512` (base64
//!   sha512) and `.nupkg.metadata` (`{"version":2,"contentHash":…,"source":…}`) written LAST, as NuGet does;
//! - Conda pkgs dir `~/.conda/pkgs/<name>-<ver>-<build>.conda` with the extracted
//!   `<name>-<ver>-<build>/info/repodata_record.json` (`url`, `channel`, `fn`, `sha256`, `md5`, `size`).
//!
//! Checked: a public-marked origin is seeded with the reference CID and the checksum CID of the registry's own
//! algorithm (sha2-512 for NuGet, sha2-256 for Conda); a private origin is absent and listed as private; a NuGet
//! package without `.nupkg.metadata` and a conda `.partial` download are not seeded; a package written while the
//! daemon runs is seeded; deleting the files (what `dotnet nuget locals global-packages --clear` and
//! `conda clean --tarballs` do) withdraws them; Helia fetches the NuGet package by its sha512 checksum CID.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pkgseed_e2e::langpkg::{self, origin_status, Steps};
use pkgseed_e2e::{
    base32_lower, js_unixfs_cids, raw_sha256_cid, sha256_hex, wait_first_scan, Daemon, TestEnv,
};
use serde_json::json;
use sha2::{Digest, Sha512};

const NUGET_PUBLIC: &str = "http://127.0.0.1:9/public/v3/index.json";
const NUGET_PRIVATE: &str = "http://127.0.0.1:9/private/v3/index.json";
const CONDA_PUBLIC: &str = "http://127.0.0.1:9/pubchannel";
const CONDA_PRIVATE: &str = "http://127.0.0.1:9/privchannel";

fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes a NuGet package like NuGet's extractor: nupkg, `.sha512`, then (optionally) `.nupkg.metadata` last.
fn nuget_install(
    root: &Path,
    id: &str,
    ver: &str,
    data: &[u8],
    source: &str,
    complete: bool,
) -> PathBuf {
    let dir = root.join(id).join(ver);
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("{id}.{ver}.nupkg");
    let tmp = dir.join("k3j2x1ab.qzv");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, dir.join(&file)).unwrap();
    let b64 = base64_std(&Sha512::digest(data));
    std::fs::write(dir.join(format!("{file}.sha512")), b64).unwrap();
    if complete {
        let meta = json!({"version": 2, "contentHash": "unused", "source": source});
        std::fs::write(dir.join(".nupkg.metadata"), meta.to_string()).unwrap();
    }
    dir.join(file)
}

/// Writes a conda package: the extracted dir's record first, then the archive (via `.partial` unless `partial`
/// is set, in which case only the `.partial` download exists).
fn conda_put(pkgs: &Path, name: &str, data: &[u8], channel: &str, partial: bool) -> PathBuf {
    let (ver, build) = ("1.0", "py_0");
    let stem = format!("{name}-{ver}-{build}");
    let file = format!("{stem}.conda");
    let info = pkgs.join(&stem).join("info");
    std::fs::create_dir_all(&info).unwrap();
    let record = json!({"name": name, "version": ver, "build": build, "fn": file, "channel": channel,
        "url": format!("{channel}/noarch/{file}"), "sha256": sha256_hex(data), "md5": "0", "size": data.len()});
    std::fs::write(info.join("repodata_record.json"), record.to_string()).unwrap();
    let part = pkgs.join(format!("{file}.partial"));
    std::fs::write(&part, data).unwrap();
    if partial {
        return part;
    }
    std::fs::rename(&part, pkgs.join(&file)).unwrap();
    pkgs.join(file)
}

/// Standard base64 with padding (what NuGet writes into `.nupkg.sha512`).
fn base64_std(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sha512_cid(data: &[u8]) -> String {
    let mut b = vec![0x01, 0x55, 0x13, 0x40];
    b.extend_from_slice(&Sha512::digest(data));
    format!("b{}", base32_lower(&b))
}

#[test]
fn nuget_conda() {
    let env = TestEnv::new("nugetconda");
    let nuget = env.home.join(".nuget/packages");
    let pkgs = env.home.join(".conda/pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let n_pub = bytes(1, 300_000);
    let n_pub_path = nuget_install(&nuget, "tiny.pkg", "1.0.0", &n_pub, NUGET_PUBLIC, true);
    let n_priv_path = nuget_install(
        &nuget,
        "corp.pkg",
        "2.0.0",
        &bytes(2, 1000),
        NUGET_PRIVATE,
        true,
    );
    let n_part_path = nuget_install(
        &nuget,
        "half.pkg",
        "1.0.0",
        &bytes(3, 1000),
        NUGET_PUBLIC,
        false,
    );
    let c_pub = bytes(4, 1_500_000);
    let c_pub_path = conda_put(&pkgs, "tinyc", &c_pub, CONDA_PUBLIC, false);
    let c_priv_path = conda_put(&pkgs, "corpc", &bytes(5, 1000), CONDA_PRIVATE, false);
    let c_part_path = conda_put(&pkgs, "halfc", &bytes(6, 1000), CONDA_PUBLIC, true);
    env.write_pkgseed_config(
        &[NUGET_PUBLIC, CONDA_PUBLIC],
        &[NUGET_PRIVATE, CONDA_PRIVATE],
    );

    let _daemon = Daemon::start(&env, "nugetconda");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();

    steps.run(
        "public NuGet package seeded with sha512 checksum CID and reference CID",
        || {
            let e = langpkg::wait_seeded(&env, &n_pub_path, Duration::from_secs(20));
            assert_eq!(e["ecosystem"], "nuget", "{e}");
            assert_eq!(
                (e["name"].as_str(), e["version"].as_str()),
                (Some("tiny.pkg"), Some("1.0.0")),
                "{e}"
            );
            assert_eq!(e["origin"].as_str(), Some(NUGET_PUBLIC), "{e}");
            assert_eq!(
                e["checksum_cid"].as_str(),
                Some(sha512_cid(&n_pub).as_str()),
                "{e}"
            );
            let reference = js_unixfs_cids("unixfs-v1-2025", &[&n_pub_path]);
            assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
        },
    );

    steps.run(
        "public conda package seeded with sha256 checksum CID and reference CID",
        || {
            let e = langpkg::wait_seeded(&env, &c_pub_path, Duration::from_secs(20));
            assert_eq!(e["ecosystem"], "conda", "{e}");
            assert_eq!(
                (e["name"].as_str(), e["version"].as_str()),
                (Some("tinyc"), Some("1.0-py_0")),
                "{e}"
            );
            assert_eq!(e["origin"].as_str(), Some(CONDA_PUBLIC), "{e}");
            assert_eq!(
                e["checksum_cid"].as_str(),
                Some(raw_sha256_cid(&sha256_hex(&c_pub)).as_str()),
                "{e}"
            );
            let reference = js_unixfs_cids("unixfs-v1-2025", &[&c_pub_path]);
            assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
        },
    );

    steps.run(
        "private absent and listed private; partial downloads not seeded",
        || {
            let ls = langpkg::ls(&env);
            for p in [&n_priv_path, &c_priv_path, &n_part_path, &c_part_path] {
                assert!(
                    langpkg::ls_by_path(&ls, p).is_none(),
                    "{} seeded: {ls:#?}",
                    p.display()
                );
            }
            assert_eq!(
                ls.iter()
                    .filter(|e| e["ecosystem"] == "nuget" || e["ecosystem"] == "conda")
                    .count(),
                2,
                "{ls:#?}"
            );
            assert_eq!(origin_status(&env, NUGET_PRIVATE)["provenance"], "private");
            assert_eq!(origin_status(&env, CONDA_PRIVATE)["provenance"], "private");
        },
    );

    steps.run("packages written while the daemon runs are seeded", || {
        let n = nuget_install(
            &nuget,
            "late.pkg",
            "3.0.0",
            &bytes(7, 5000),
            NUGET_PUBLIC,
            true,
        );
        let c = conda_put(&pkgs, "latec", &bytes(8, 5000), CONDA_PUBLIC, false);
        langpkg::wait_seeded(&env, &n, Duration::from_secs(10));
        langpkg::wait_seeded(&env, &c, Duration::from_secs(10));
    });

    steps.run(
        "Helia fetches the NuGet package by sha512 checksum CID",
        || {
            let cid = sha512_cid(&n_pub);
            langpkg::assert_helia_fetches(&env, &[cid], &n_pub);
        },
    );

    steps.run(
        "deleting the files (the clients' clean-up) withdraws them",
        || {
            langpkg::wait_seeded(&env, &n_pub_path, Duration::from_secs(5));
            langpkg::wait_seeded(&env, &c_pub_path, Duration::from_secs(5));
            std::fs::remove_dir_all(&nuget).unwrap();
            std::fs::remove_file(&c_pub_path).unwrap();
            langpkg::wait_withdrawn(&env, &n_pub_path, Duration::from_secs(10));
            langpkg::wait_withdrawn(&env, &c_pub_path, Duration::from_secs(10));
        },
    );
    steps.finish();
}
