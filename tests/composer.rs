//! End-to-end: Composer with the REAL client (Debian `composer` + `php-cli`). Two Composer repositories are served
//! on 127.0.0.1 (`packages.json` with a `metadata-url`, p2 minified metadata with `dist.url` and `dist.shasum`
//! (sha1), and `.tar` dists made with `tar`): "public" has `acme/seedpub` and `acme/seedhalf`, "private" has
//! `acme/seedpriv`. `composer install` in a temp project (with temp `COMPOSER_HOME` and `COMPOSER_CACHE_DIR`)
//! fills `<cache>/files/acme/<pkg>/<sha1 of dist URL>.tar` and `<cache>/repo/<repo dir>/`.
//!
//! What this proves: the archive is identified (name, version, sha1 `dist.shasum`) through Composer's cached
//! repository metadata; the public repo dir (marked public in the pkgseed config: a local server can never be
//! Composer's built-in default) is seeded with the reference CID; the private repository's archive is never seeded
//! and its repo dir is listed as private; a truncated archive (an interrupted copy) is not seeded; Helia fetches
//! the public archive by root CID; `composer clear-cache` (the real clean-up) withdraws it. Composer dists carry
//! sha1 only, so no sha256/sha512 checksum CID exists: `checksum_cid` is the sha256 raw-block CID the engine keys
//! sha1 artifacts by.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pkgseed_e2e::http::StaticServer;
use pkgseed_e2e::langpkg::{self, origin_status, require_tool, Steps};
use pkgseed_e2e::{js_unixfs_cids, run, wait_first_scan, Daemon, TestEnv};
use serde_json::{json, Value};

#[track_caller]
fn ok(cmd: &mut Command, what: &str) -> String {
    run(cmd, Duration::from_secs(120))
        .expect_success(what)
        .stdout
}

fn sha1_hex(bytes: &[u8]) -> String {
    // sha1 via the system tool keeps the e2e crate's dependencies unchanged.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, bytes).unwrap();
    let out = ok(Command::new("sha1sum").arg(&f), "sha1sum");
    out.split_whitespace().next().unwrap().to_string()
}

/// A `.tar` dist of package `name` (composer.json + one PHP file).
fn make_dist(dir: &Path, name: &str, filler: usize) -> Vec<u8> {
    let src = dir.join(name.replace('/', "-"));
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("composer.json"),
        json!({"name": name, "version": "1.0.0"}).to_string(),
    )
    .unwrap();
    let mut x: u32 = 0x9e37_79b9 ^ filler as u32;
    let data: String = (0..filler)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    std::fs::write(src.join("src/A.php"), format!("<?php // {data}\n")).unwrap();
    let tar = dir.join(format!("{}.tar", name.replace('/', "-")));
    ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .args(["composer.json", "src"]),
        "tar",
    );
    std::fs::read(tar).unwrap()
}

/// A Composer repository on 127.0.0.1 serving `packages` (name, dist bytes). Returns the server and, per package,
/// its dist URL.
fn serve_repo(packages: &[(&str, Vec<u8>)]) -> (StaticServer, Vec<String>) {
    let server = StaticServer::start();
    let names: Vec<&str> = packages.iter().map(|p| p.0).collect();
    server.put(
        "/packages.json",
        json!({"packages": {}, "metadata-url": "/p2/%package%.json", "available-packages": names})
            .to_string(),
    );
    let mut urls = Vec::new();
    for (name, bytes) in packages {
        let path = format!("/dist/{}-1.0.0.tar", name.replace('/', "-"));
        let url = format!("{}{path}", server.base_url());
        server.put(&path, bytes.clone());
        let meta = json!({"minified": "composer/2.0", "packages": {*name: [{
            "name": name, "version": "1.0.0", "version_normalized": "1.0.0.0", "type": "library",
            "dist": {"type": "tar", "url": url, "shasum": sha1_hex(bytes), "reference": "r1"}
        }]}});
        server.put(&format!("/p2/{name}.json"), meta.to_string());
        urls.push(url);
    }
    (server, urls)
}

#[test]
fn composer() {
    require_tool("php", "php-cli");
    require_tool("composer", "composer");
    let env = TestEnv::new("composer");
    let build = env.work.join("build");
    let pub_bytes = make_dist(&build, "acme/seedpub", 100);
    let half_bytes = make_dist(&build, "acme/seedhalf", 50_000);
    let priv_bytes = make_dist(&build, "acme/seedpriv", 100);
    let (public, pub_urls) = serve_repo(&[
        ("acme/seedpub", pub_bytes.clone()),
        ("acme/seedhalf", half_bytes),
    ]);
    let (private, priv_urls) = serve_repo(&[("acme/seedpriv", priv_bytes)]);

    // Composer's built-in default repository is switched off by its key, learned from composer itself (its
    // global config with an empty COMPOSER_HOME), so no registry name is written here and nothing leaves loopback.
    let probe_home = env.work.join("composer-probe");
    std::fs::create_dir_all(&probe_home).unwrap();
    let defaults = ok(
        Command::new("composer")
            .args(["config", "--global", "--no-interaction", "repositories"])
            .env("COMPOSER_HOME", &probe_home)
            .env("COMPOSER_CACHE_DIR", &probe_home)
            .env("HOME", &probe_home),
        "composer config --global repositories",
    );
    let defaults: Value = serde_json::from_str(defaults.trim())
        .unwrap_or_else(|e| panic!("composer printed no JSON repositories ({e}): {defaults}"));
    let default_key = defaults
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_else(|| panic!("composer lists no default repository: {defaults}"));
    let project = env.work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("composer.json"),
        json!({
            "repositories": [
                {"type": "composer", "url": public.base_url(), "only": ["acme/seedpub", "acme/seedhalf"]},
                {"type": "composer", "url": private.base_url(), "only": ["acme/seedpriv"]},
                {default_key: false}
            ],
            "require": {"acme/seedpub": "1.0.0", "acme/seedhalf": "1.0.0", "acme/seedpriv": "1.0.0"},
            "config": {"secure-http": false}
        })
        .to_string(),
    )
    .unwrap();
    // The daemon finds the cache at ~/.cache/composer (its default with HOME = the temp home, no COMPOSER_* set).
    let cache = env.home.join(".cache/composer");
    let composer = |args: &[&str]| {
        let mut c = Command::new("composer");
        c.current_dir(&project)
            .args(args)
            .arg("--no-interaction")
            .env("HOME", &env.home)
            .env("COMPOSER_HOME", env.home.join(".config/composer"))
            .env("COMPOSER_CACHE_DIR", &cache)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_CONFIG_HOME");
        c
    };
    ok(&mut composer(&["install"]), "composer install");
    let archive = |url: &str, pkg: &str| {
        cache
            .join("files")
            .join(pkg)
            .join(format!("{}.tar", sha1_hex(url.as_bytes())))
    };
    let pub_path = archive(&pub_urls[0], "acme/seedpub");
    let half_path = archive(&pub_urls[1], "acme/seedhalf");
    let priv_path = archive(&priv_urls[0], "acme/seedpriv");
    for p in [&pub_path, &half_path, &priv_path] {
        assert!(p.is_file(), "composer install left no {}", p.display());
    }
    let repo_dir = |port: u16| format!("http---127.0.0.1-{port}");
    let (public_origin, private_origin) = (repo_dir(public.port()), repo_dir(private.port()));
    for o in [&public_origin, &private_origin] {
        assert!(cache.join("repo").join(o).is_dir(), "no repo cache dir {o}");
    }
    env.write_pkgseed_config(&[&public_origin], &[]);
    // An interrupted copy into the cache: half the bytes.
    let half = std::fs::read(&half_path).unwrap();
    std::fs::write(&half_path, &half[..half.len() / 2]).unwrap();

    let _daemon = Daemon::start(&env, "composer");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();
    let mut root_cid = String::new();

    steps.run(
        "public archive seeded with the reference CID and sha1 registry checksum",
        || {
            let e = langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(20));
            assert_eq!(e["ecosystem"], "composer", "{e}");
            assert_eq!(
                (e["name"].as_str(), e["version"].as_str()),
                (Some("acme/seedpub"), Some("1.0.0")),
                "{e}"
            );
            assert_eq!(e["origin"].as_str(), Some(public_origin.as_str()), "{e}");
            let want = format!("sha1:{}", sha1_hex(&pub_bytes));
            assert_eq!(e["registry_checksum"].as_str(), Some(want.as_str()), "{e}");
            let reference = js_unixfs_cids("unixfs-v1-2025", &[&pub_path]);
            assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
            root_cid = reference[0].clone();
        },
    );

    steps.run(
        "private archive absent; private repo listed as private; truncated archive not seeded",
        || {
            let ls = langpkg::ls(&env);
            assert!(langpkg::ls_by_path(&ls, &priv_path).is_none(), "{ls:#?}");
            assert!(langpkg::ls_by_path(&ls, &half_path).is_none(), "{ls:#?}");
            assert_eq!(
                ls.iter().filter(|e| e["ecosystem"] == "composer").count(),
                1,
                "{ls:#?}"
            );
            assert_eq!(
                origin_status(&env, &private_origin)["provenance"],
                "private"
            );
            assert_eq!(origin_status(&env, &public_origin)["provenance"], "public");
        },
    );

    steps.run("Helia fetches the public archive by root CID", || {
        assert!(!root_cid.is_empty(), "no root CID (the first step failed)");
        langpkg::assert_helia_fetches(&env, std::slice::from_ref(&root_cid), &pub_bytes);
    });

    steps.run("composer clear-cache withdraws the archive", || {
        langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(5));
        ok(&mut composer(&["clear-cache"]), "composer clear-cache");
        assert!(!pub_path.exists());
        langpkg::wait_withdrawn(&env, &pub_path, Duration::from_secs(10));
    });
    steps.finish();
}
