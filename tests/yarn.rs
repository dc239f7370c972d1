//! End-to-end: the yarn v1 source. The real `npm pack` makes the packages, a registry on 127.0.0.1 serves them under
//! `/public/` (marked public in the pkgseed config) and `/private/` (the `@acme` scope registry of the temp home's
//! `.npmrc`), the real yarn v1 (`yarnpkg`/`yarn`, run with `NODE_PATH=/usr/share/nodejs` for Debian's package) fills
//! `YARN_CACHE_FOLDER` (a temp dir, also given to the daemon), and the real `pkgseed daemon` seeds it.
//!
//! Checked: only the public tarballs are listed (sha512 checksum from `.yarn-metadata.json`, origin id, the JS
//! reference CID); the private scope registry is private in `status.origins` and its tarball is not obtainable;
//! a partial download (a `v6/.tmp/` staging dir, and a package dir whose `.yarn-metadata.json` is not written yet)
//! is not seeded; Helia fetches a public tarball by root and sha512 checksum CID; `yarn cache clean` withdraws
//! everything. The partial download is made by writing the files yarn stages (yarn cannot be stopped mid-body).

use std::path::{Path, PathBuf};
use std::time::Duration;

use pkgseed_e2e::http::StaticServer;
use pkgseed_e2e::npm::{self, client, noise, npm_pack, require_tool, NpmRegistry, NpmTarball};
use pkgseed_e2e::{
    dial_addr, helia_fetch, js_importer_installed, js_unixfs_cids, raw_sha256_cid, sha256_hex,
    status, wait_first_scan, Daemon, HeliaFetch, TestEnv,
};
use serde_json::Value;

const NODE_PATH: (&str, &str) = ("NODE_PATH", "/usr/share/nodejs");
const NO_UPDATE: (&str, &str) = ("YARN_DISABLE_SELF_UPDATE_CHECK", "true");

fn ls(env: &TestEnv) -> Vec<Value> {
    npm::ls_of(env, "yarn")
}

#[track_caller]
fn wait_ls(env: &TestEnv, want: &[&str], what: &str) -> Vec<Value> {
    npm::wait_ls(env, "yarn", want, what)
}

/// `yarnpkg` (Debian) or `yarn`, whichever runs and is version 1.
fn yarn_program() -> &'static str {
    for program in ["yarnpkg", "yarn"] {
        let mut cmd = std::process::Command::new(program);
        cmd.arg("--version").env(NODE_PATH.0, NODE_PATH.1);
        let out = pkgseed_e2e::run(&mut cmd, Duration::from_secs(60));
        if out.success() && out.stdout.trim().starts_with("1.") {
            return program;
        }
    }
    require_tool("yarnpkg", &[NODE_PATH]);
    panic!("yarn v1 is required (Debian package `yarnpkg`: scripts/setup.sh); `yarnpkg --version` is not 1.x");
}

/// The `.yarn-tarball.tgz` of `t` in the cache folder.
fn cached_tarball(folder: &Path, t: &NpmTarball) -> PathBuf {
    let v6 = folder.join("v6");
    let prefix = format!("npm-{}-{}-", t.name.replace('/', "-"), t.version);
    let dir = std::fs::read_dir(&v6)
        .unwrap_or_else(|e| panic!("{}: {e}", v6.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("yarn did not cache {} under {}", t.name, v6.display()));
    v6.join(dir)
        .join("node_modules")
        .join(&t.name)
        .join(".yarn-tarball.tgz")
}

#[test]
fn yarn_v1_cache_is_seeded_public_only() {
    let yarn = yarn_program();
    require_tool("npm", &[]);
    assert!(
        js_importer_installed(),
        "tests/js/node_modules is missing: run scripts/setup.sh (the JS reference importer and Helia are required)"
    );
    let env = TestEnv::new("yarn");
    let server = StaticServer::start();
    let mut public = NpmRegistry::new(&server, "public");
    let mut private = NpmRegistry::new(&server, "private");
    let packs = env.work.join("packs");
    let small = npm_pack(&packs, "yseed-small", "1.0.0", b"small payload\n");
    let big = npm_pack(&packs, "yseed-big", "1.2.0", &noise(1_300_000, 3));
    let secret = npm_pack(&packs, "@acme/ywidget", "1.0.0", b"private payload\n");
    public.publish(&small);
    public.publish(&big);
    private.publish(&secret);

    let folder = env.root_path.join("yarn-cache");
    // The daemon inherits this process's environment (TestEnv sets only its own variables).
    std::env::set_var("YARN_CACHE_FOLDER", &folder);
    std::fs::write(
        env.home.join(".npmrc"),
        format!("@acme:registry={}\n", private.url()),
    )
    .unwrap();
    env.write_pkgseed_config(&[&public.url()], &[]);

    let project = env.work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"consumer","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    let folder_s = folder.display().to_string();
    let envs = [
        NODE_PATH,
        NO_UPDATE,
        ("YARN_CACHE_FOLDER", folder_s.as_str()),
    ];
    let registry = public.url();
    client(
        yarn,
        &env.home,
        &project,
        &[
            "add",
            "--non-interactive",
            "--no-progress",
            "--ignore-scripts",
            "--registry",
            &registry,
            "yseed-small@1.0.0",
            "yseed-big@1.2.0",
            "@acme/ywidget@1.0.0",
        ],
        &envs,
    )
    .expect_success("yarn add");
    for t in [&small, &big, &secret] {
        let path = cached_tarball(&folder, t);
        assert!(
            std::fs::read(&path).unwrap() == t.bytes,
            "{}: cached bytes differ from the registry's",
            t.name
        );
    }

    let _daemon = Daemon::start(&env, "yarn");
    wait_first_scan(&env, Duration::from_secs(60));
    let listed = wait_ls(
        &env,
        &["yseed-small@1.0.0", "yseed-big@1.2.0"],
        "after the first scan",
    );
    let paths: Vec<PathBuf> = [&small, &big]
        .iter()
        .map(|t| cached_tarball(&folder, t))
        .collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let reference = js_unixfs_cids("unixfs-v1-2025", &refs);
    for ((t, path), cid) in [&small, &big].iter().zip(&paths).zip(&reference) {
        let e = listed
            .iter()
            .find(|e| e["name"] == t.name.as_str())
            .unwrap();
        assert_eq!(
            e["path"].as_str().map(Path::new),
            Some(path.as_path()),
            "{e}"
        );
        assert_eq!(e["origin"].as_str(), Some(public.url().as_str()), "{e}");
        assert_eq!(
            e["registry_checksum"].as_str(),
            Some(format!("sha512:{}", t.sha512_hex()).as_str()),
            "{e}"
        );
        assert_eq!(
            e["cid"].as_str(),
            Some(cid.as_str()),
            "root CID differs from ipfs-unixfs-importer: {e}"
        );
        assert_eq!(
            e["checksum_cid"].as_str(),
            Some(t.checksum_cid().as_str()),
            "{e}"
        );
    }
    let st = status(&env);
    let find = |id: &str| {
        st["origins"].as_array().and_then(|a| {
            a.iter()
                .find(|o| o["origin"] == id && o["ecosystem"] == "yarn")
                .cloned()
        })
    };
    let o = find(&public.url()).unwrap_or_else(|| panic!("public origin missing: {st:#}"));
    assert_eq!(
        (o["provenance"].as_str(), o["artifacts"].as_u64()),
        (Some("public"), Some(2)),
        "{o}"
    );
    let o =
        find(&private.url()).unwrap_or_else(|| panic!("private scope registry missing: {st:#}"));
    assert_eq!(o["provenance"], "private", "{o}");

    // Partial downloads: yarn's staging dir, and a package dir whose metadata is not written yet.
    let partial = npm_pack(&packs, "yseed-partial", "1.0.0", b"partial\n");
    let staged = folder.join("v6/.tmp/abc123/node_modules/yseed-partial");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(
        staged.join(".yarn-tarball.tgz"),
        &partial.bytes[..partial.bytes.len() / 2],
    )
    .unwrap();
    let unfinished =
        folder.join("v6/npm-yseed-partial-1.0.0-0123-integrity/node_modules/yseed-partial");
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::write(unfinished.join(".yarn-tarball.tgz"), &partial.bytes).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        npm::names(&ls(&env)),
        ["yseed-small@1.0.0", "yseed-big@1.2.0"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "a partial download was seeded"
    );

    // Helia: the big public tarball by root and checksum CID; the private one is not obtainable.
    let out_dir = env.work.join("helia");
    let want: Vec<String> = vec![reference[1].clone(), big.checksum_cid()];
    let missing = vec![
        secret.checksum_cid(),
        raw_sha256_cid(&sha256_hex(&secret.bytes)),
    ];
    let r = helia_fetch(&HeliaFetch {
        peer: dial_addr(&status(&env)),
        cids: want.clone(),
        expect_missing: missing.clone(),
        out_dir: out_dir.clone(),
        timeout_seconds: Some(30),
        missing_seconds: Some(3),
        ..Default::default()
    });
    for cid in &want {
        let line = r
            .line(cid)
            .unwrap_or_else(|| panic!("no Helia line for {cid}\n{}", r.output.describe()));
        assert_eq!(line["ok"], true, "{cid}: {line}\n{}", r.output.describe());
        assert_eq!(
            line["sha256"].as_str(),
            Some(sha256_hex(&big.bytes).as_str()),
            "{cid}: {line}"
        );
        assert!(
            std::fs::read(out_dir.join(cid)).unwrap() == big.bytes,
            "{cid}: bytes differ"
        );
    }
    for cid in &missing {
        let line = r
            .line(cid)
            .unwrap_or_else(|| panic!("no Helia line for {cid}\n{}", r.output.describe()));
        assert_eq!(
            line["missing"], true,
            "{cid} must not be obtainable: {line}"
        );
    }
    assert!(r.success(), "Helia run failed\n{}", r.output.describe());

    // yarn's own clean-up withdraws everything.
    client(yarn, &env.home, &project, &["cache", "clean"], &envs)
        .expect_success("yarn cache clean");
    assert!(
        !paths[0].exists(),
        "yarn cache clean left {}",
        paths[0].display()
    );
    wait_ls(&env, &[], "after yarn cache clean");
}
