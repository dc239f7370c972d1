//! End-to-end: the npm source. The real `npm pack` makes three packages, a registry on 127.0.0.1 serves them under
//! two prefixes (`/public/` marked public in the pkgseed config, `/private/` the `@acme` scope registry of the
//! user's `.npmrc`), the real `npm install` and `npm cache add` fill a temp cache (`cache=` in the temp home's
//! `.npmrc`, which the daemon reads too), and the real `pkgseed daemon` seeds it; a Helia node fetches over loopback.
//!
//! Checked: only the public tarballs are listed (with sha512 checksum, origin id and the JS reference CID); the
//! private scope registry and a local `npm pack` tarball (`npm cache add ./x.tgz`, key `pacote:tarball:file:`) are
//! private in `status.origins` and not obtainable; a tarball added while the daemon runs is seeded by the watcher;
//! a partial download (cacache's `tmp/` staging file, and a content blob with no index entry) is not seeded; Helia
//! fetches public tarballs by root CID and by sha512 checksum CID; `npm cache clean --force` withdraws everything,
//! and a tarball cached after that is seeded again.
//! The partial download is made by writing the files cacache would leave (npm cannot be stopped mid-body here).
//!
//! A second test covers private packages hosted ON a public registry: the public-marked registry serves one scoped
//! package only to a bearer token (401 without), given to the real `npm install` by `//host:port/path/:_authToken`
//! in the user's `.npmrc`. Its cache entry has the same registry origin as the public tarballs and npm keeps no
//! trace of the token; it is listed under its scope's origin as private, never in `ls`, and not obtainable, while an
//! unscoped package and a scoped one whose scope origin the user marked public are seeded.
//!
//! A third test marks every scope of a registry public at once (`pkgseed origins mark --all-scopes`, the config
//! entry `<registry>@*`) while the daemon runs: the scoped packages nobody marked become seeded, while a scope the
//! user marked private and a package served only to a token (given on npm's command line, which pkgseed cannot
//! see) with `Cache-Control: private` stay unseeded.

use std::path::Path;
use std::time::Duration;

use pkgseed_e2e::http::StaticServer;
use pkgseed_e2e::npm::{self, client, noise, npm_pack, require_tool, NpmRegistry, NpmTarball};
use pkgseed_e2e::{
    dial_addr, helia_fetch, js_importer_installed, js_unixfs_cids, raw_sha256_cid, sha256_hex,
    status, wait_first_scan, Daemon, HeliaFetch, TestEnv,
};
use serde_json::Value;

fn ls(env: &TestEnv) -> Vec<Value> {
    npm::ls_of(env, "npm")
}

#[track_caller]
fn wait_ls(env: &TestEnv, want: &[&str], what: &str) -> Vec<Value> {
    npm::wait_ls(env, "npm", want, what)
}

/// Runs the real `npm install FLAGS` in a fresh project under `env.work` depending on `dependencies` (a JSON
/// object); returns the project dir.
#[track_caller]
fn npm_install(env: &TestEnv, dependencies: &str, flags: &[&str]) -> std::path::PathBuf {
    let project = env.work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        format!(r#"{{"name":"consumer","version":"1.0.0","private":true,"dependencies":{dependencies}}}"#),
    )
    .unwrap();
    client(
        "npm",
        &env.home,
        &project,
        &[&["install", "--ignore-scripts"], flags].concat(),
        &[],
    )
    .expect_success("npm install");
    project
}

/// The private tarball was fetched (200), so npm sent the token the server asks for.
#[track_caller]
fn assert_fetched_with_token(server: &StaticServer, secret: &NpmTarball) {
    let tgz = format!("/public/@corp/secret/-/secret-{}.tgz", secret.version);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == tgz && r.status == 200),
        "npm never fetched {tgz} with the token: {:#?}",
        server.requests()
    );
}

/// [`npm_install`] of exactly `tarballs`; asserts npm cached each one in `cache`.
#[track_caller]
fn npm_install_all(
    env: &TestEnv,
    cache: &Path,
    tarballs: &[&NpmTarball],
    flags: &[&str],
) -> std::path::PathBuf {
    let dependencies: serde_json::Map<String, Value> = tarballs
        .iter()
        .map(|t| (t.name.clone(), Value::from(t.version.clone())))
        .collect();
    let project = npm_install(env, &Value::Object(dependencies).to_string(), flags);
    for t in tarballs {
        assert_eq!(
            std::fs::read(t.cacache_path(cache)).ok().as_deref(),
            Some(&t.bytes[..]),
            "npm did not cache {}",
            t.name
        );
    }
    project
}

/// Makes each (name, version, payload) with the real `npm pack` and publishes it on `registry`.
fn pack_and_publish<const N: usize>(
    env: &TestEnv,
    registry: &mut NpmRegistry,
    specs: [(&str, &str, &str); N],
) -> [NpmTarball; N] {
    let packs = env.work.join("packs");
    specs.map(|(name, version, payload)| {
        let tarball = npm_pack(&packs, name, version, payload.as_bytes());
        registry.publish(&tarball);
        tarball
    })
}

/// Helia (the foreign peer) fetches every `served` tarball by its checksum CID, and none of `private` under its
/// checksum CID or its raw sha256 CID.
#[track_caller]
fn assert_helia_serves_only(env: &TestEnv, served: &[&NpmTarball], private: &[&NpmTarball]) {
    let want: Vec<String> = served.iter().map(|t| t.checksum_cid()).collect();
    let missing: Vec<String> = private
        .iter()
        .flat_map(|t| [t.checksum_cid(), raw_sha256_cid(&sha256_hex(&t.bytes))])
        .collect();
    let r = helia_fetch(&HeliaFetch {
        peer: dial_addr(&status(env)),
        cids: want.clone(),
        expect_missing: missing.clone(),
        out_dir: env.work.join("helia"),
        timeout_seconds: Some(30),
        missing_seconds: Some(3),
        ..Default::default()
    });
    for cid in &want {
        let line = r.expect_line(cid);
        assert_eq!(line["ok"], true, "{cid}: {line}\n{}", r.output.describe());
    }
    r.assert_missing(&missing);
    assert!(r.success(), "Helia run failed\n{}", r.output.describe());
}

fn origin<'a>(st: &'a Value, id: &str) -> Option<&'a Value> {
    st["origins"]
        .as_array()?
        .iter()
        .find(|o| o["origin"].as_str() == Some(id) && o["ecosystem"] == "npm")
}

#[test]
fn npm_cache_is_seeded_public_only() {
    let npm_version = require_tool("npm", &[]);
    eprintln!("npm {npm_version}");
    assert!(
        js_importer_installed(),
        "tests/js/node_modules is missing: run scripts/setup.sh (the JS reference importer and Helia are required)"
    );
    let env = TestEnv::new("npm");
    let server = StaticServer::start();
    let mut public = NpmRegistry::new(&server, "public");
    let mut private = NpmRegistry::new(&server, "private");
    let packs = env.work.join("packs");
    let small = npm_pack(&packs, "seed-small", "1.0.0", b"small payload\n");
    // > 1 MiB and <= 2 MiB: several chunks (root CID != checksum CID) and still a checksum CID.
    let big = npm_pack(&packs, "seed-big", "2.1.0", &noise(1_400_000, 7));
    let late = npm_pack(
        &packs,
        "seed-late",
        "0.3.0",
        b"added while the daemon runs\n",
    );
    let secret = npm_pack(&packs, "@acme/widget", "1.0.0", b"private payload\n");
    let local = npm_pack(&packs, "local-thing", "0.0.1", b"local build\n");
    assert!(
        big.bytes.len() > 1024 * 1024 && big.bytes.len() <= 2 * 1024 * 1024,
        "big tarball is {} bytes",
        big.bytes.len()
    );
    for t in [&small, &big, &late] {
        public.publish(t);
    }
    private.publish(&secret);

    let cache = env.root_path.join("npm-cache");
    std::fs::write(
        env.home.join(".npmrc"),
        format!(
            "cache={}\n@acme:registry={}\nupdate-notifier=false\naudit=false\nfund=false\n",
            cache.display(),
            private.url()
        ),
    )
    .unwrap();
    env.write_pkgseed_config(&[&public.url()], &[]);

    // Fill the cache with the real npm before the daemon starts.
    let registry_flag = format!("--registry={}", public.url());
    let project = npm_install(
        &env,
        r#"{"seed-small":"1.0.0","seed-big":"2.1.0","@acme/widget":"1.0.0"}"#,
        &[&registry_flag],
    );
    let local_tgz = packs.join("local-thing.tgz");
    std::fs::write(&local_tgz, &local.bytes).unwrap();
    client(
        "npm",
        &env.home,
        &project,
        &["cache", "add", local_tgz.to_str().unwrap()],
        &[],
    )
    .expect_success("npm cache add ./local-thing.tgz");
    for t in [&small, &big, &secret, &local] {
        let path = t.cacache_path(&cache);
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(&t.bytes[..]),
            "npm did not cache {} at {}",
            t.name,
            path.display()
        );
    }

    let _daemon = Daemon::start(&env, "npm");
    wait_first_scan(&env, Duration::from_secs(60));
    let listed = wait_ls(
        &env,
        &["seed-small@1.0.0", "seed-big@2.1.0"],
        "after the first scan",
    );

    // ls: identity, checksum, origin, and CIDs equal to the JS reference importer's.
    let paths: Vec<std::path::PathBuf> = [&small, &big]
        .iter()
        .map(|t| t.cacache_path(&cache))
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
        assert_eq!(e["size"].as_u64(), Some(t.bytes.len() as u64), "{e}");
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

    // status: the public origin, the private scope registry and the local tarball.
    let st = status(&env);
    let o = origin(&st, &public.url()).unwrap_or_else(|| panic!("public origin missing: {st:#}"));
    assert_eq!(
        (o["provenance"].as_str(), o["artifacts"].as_u64()),
        (Some("public"), Some(2)),
        "{o}"
    );
    let o = origin(&st, &private.url())
        .unwrap_or_else(|| panic!("private scope registry missing: {st:#}"));
    assert_eq!(o["provenance"], "private", "{o}");
    let o = origin(&st, "file:").unwrap_or_else(|| panic!("local tarball origin missing: {st:#}"));
    assert_eq!(o["provenance"], "private", "{o}");

    // A tarball cached while the daemon runs is seeded by the watcher.
    client(
        "npm",
        &env.home,
        &project,
        &["cache", "add", "seed-late@0.3.0", &registry_flag],
        &[],
    )
    .expect_success("npm cache add seed-late");
    wait_ls(
        &env,
        &["seed-small@1.0.0", "seed-big@2.1.0", "seed-late@0.3.0"],
        "after npm cache add",
    );

    // A partial download is never seeded: cacache's staging file, and a blob whose index entry was never written.
    let partial = npm_pack(&packs, "seed-partial", "1.0.0", &noise(200_000, 9));
    let tmp = cache.join("_cacache/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("5e3d2a1f"),
        &partial.bytes[..partial.bytes.len() / 2],
    )
    .unwrap();
    let orphan = partial.cacache_path(&cache);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, &partial.bytes).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        npm::names(&ls(&env)),
        ["seed-small@1.0.0", "seed-big@2.1.0", "seed-late@0.3.0"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "a partial download was seeded"
    );

    // Helia: public by root and checksum CID; the private and local tarballs are not obtainable.
    let peer = dial_addr(&status(&env));
    let mut want: Vec<(String, &NpmTarball)> = Vec::new();
    for (t, cid) in [&small, &big].into_iter().zip(&reference) {
        want.push((cid.clone(), t));
        want.push((t.checksum_cid(), t));
    }
    // Both CIDs of the private and the local tarball (each < 1 MiB: its root CID is the raw sha256 CID).
    let missing = vec![
        secret.checksum_cid(),
        raw_sha256_cid(&sha256_hex(&secret.bytes)),
        local.checksum_cid(),
        raw_sha256_cid(&sha256_hex(&local.bytes)),
    ];
    let out_dir = env.work.join("helia");
    let r = helia_fetch(&HeliaFetch {
        peer,
        cids: want.iter().map(|(c, _)| c.clone()).collect(),
        expect_missing: missing.clone(),
        out_dir: out_dir.clone(),
        timeout_seconds: Some(30),
        missing_seconds: Some(3),
        ..Default::default()
    });
    for (cid, t) in &want {
        let line = r
            .line(cid)
            .unwrap_or_else(|| panic!("no Helia line for {cid}\n{}", r.output.describe()));
        assert_eq!(line["ok"], true, "{cid}: {line}\n{}", r.output.describe());
        assert_eq!(
            line["sha256"].as_str(),
            Some(sha256_hex(&t.bytes).as_str()),
            "{cid}: {line}"
        );
        assert!(
            std::fs::read(out_dir.join(cid)).unwrap() == t.bytes,
            "{cid}: bytes differ"
        );
    }
    r.assert_missing(&missing);
    assert!(r.success(), "Helia run failed\n{}", r.output.describe());

    // npm's own clean-up withdraws everything.
    client(
        "npm",
        &env.home,
        &project,
        &["cache", "clean", "--force"],
        &[],
    )
    .expect_success("npm cache clean --force");
    assert!(
        !cache.join("_cacache").exists(),
        "npm cache clean left _cacache"
    );
    wait_ls(&env, &[], "after npm cache clean --force");

    // The cache comes back after the clean-up and is watched again.
    client(
        "npm",
        &env.home,
        &project,
        &["cache", "add", "seed-late@0.3.0", &registry_flag],
        &[],
    )
    .expect_success("npm cache add seed-late after the clean-up");
    wait_ls(
        &env,
        &["seed-late@0.3.0"],
        "after npm cache add following the clean-up",
    );
}

#[test]
fn npm_private_scoped_package_on_a_public_registry_is_never_seeded() {
    require_tool("npm", &[]);
    let env = TestEnv::new("npm-scoped");
    let server = StaticServer::start();
    let mut public = NpmRegistry::new(&server, "public");
    let [open, marked, secret] = pack_and_publish(
        &env,
        &mut public,
        [
            ("seed-open", "1.0.0", "public payload\n"),
            ("@openorg/lib", "1.0.0", "public scoped payload\n"),
            ("@corp/secret", "1.0.0", "private payload\n"),
        ],
    );
    // The private package's packument and tarball answer only to the token, like a private package on a public
    // registry; the answer itself carries nothing else that would tell it apart.
    let token = "e2e-private-token";
    server.require_bearer("/public/@corp", token);
    let scope_origin = |scope: &str| format!("{}{scope}/", public.url());

    let cache = env.root_path.join("npm-cache");
    let registry_nerf = public.url().trim_start_matches("http:").to_string();
    std::fs::write(
        env.home.join(".npmrc"),
        format!(
            "cache={}\n{registry_nerf}:_authToken={token}\nupdate-notifier=false\naudit=false\nfund=false\n",
            cache.display(),
        ),
    )
    .unwrap();
    env.write_pkgseed_config(&[&public.url(), &scope_origin("@openorg")], &[]);

    let registry_flag = format!("--registry={}", public.url());
    let project = npm_install_all(&env, &cache, &[&open, &marked, &secret], &[&registry_flag]);
    // The private tarball really was refused without the token and fetched with it.
    assert_fetched_with_token(&server, &secret);
    let anonymous = client(
        "npm",
        &env.work,
        &project,
        &[
            "view",
            "@corp/secret",
            &registry_flag,
            "--cache",
            env.work.join("c2").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !anonymous.success(),
        "the private package was readable without the token"
    );

    let _daemon = Daemon::start(&env, "npm");
    wait_first_scan(&env, Duration::from_secs(60));
    let listed = wait_ls(
        &env,
        &["seed-open@1.0.0", "@openorg/lib@1.0.0"],
        "after the first scan",
    );
    let by_name = |name: &str| listed.iter().find(|e| e["name"] == name).unwrap();
    assert_eq!(
        by_name("seed-open")["origin"].as_str(),
        Some(public.url().as_str())
    );
    assert_eq!(
        by_name("@openorg/lib")["origin"].as_str(),
        Some(scope_origin("@openorg").as_str())
    );

    let st = status(&env);
    let o = origin(&st, &scope_origin("@corp"))
        .unwrap_or_else(|| panic!("the private scope's origin is missing: {st:#}"));
    assert_eq!(
        (o["provenance"].as_str(), o["artifacts"].as_u64()),
        (Some("private"), Some(1)),
        "{o}"
    );
    let o = origin(&st, &scope_origin("@openorg"))
        .unwrap_or_else(|| panic!("the marked scope's origin is missing: {st:#}"));
    assert_eq!(o["provenance"], "public", "{o}");

    // Helia: the public ones are served, the private one under neither of its CIDs.
    assert_helia_serves_only(&env, &[&open, &marked], &[&secret]);
}

#[test]
fn npm_scope_wildcard_seeds_every_public_scope_but_no_private_one() {
    require_tool("npm", &[]);
    let env = TestEnv::new("npm-scope-wildcard");
    let server = StaticServer::start();
    let mut public = NpmRegistry::new(&server, "public");
    let [open, lib, tool, hidden, secret] = pack_and_publish(
        &env,
        &mut public,
        [
            ("seed-open", "1.0.0", "public payload\n"),
            ("@openorg/lib", "1.0.0", "public scoped payload\n"),
            ("@tools/cli", "2.0.0", "another public scope\n"),
            ("@hidden/thing", "1.0.0", "a scope marked private\n"),
            ("@corp/secret", "1.0.0", "private payload\n"),
        ],
    );
    // The private package answers only to the token, as a response for one user. The token is given on npm's
    // command line, so pkgseed finds no credentials for the registry in the user's config.
    let token = "e2e-private-token";
    server.require_bearer("/public/@corp", token);
    server.answer_cache_control_private("/public/@corp");
    let scope_origin = |scope: &str| format!("{}{scope}/", public.url());

    let cache = env.root_path.join("npm-cache");
    std::fs::write(
        env.home.join(".npmrc"),
        format!(
            "cache={}\nupdate-notifier=false\naudit=false\nfund=false\n",
            cache.display()
        ),
    )
    .unwrap();
    env.write_pkgseed_config(&[&public.url()], &[&scope_origin("@hidden")]);

    let registry_flag = format!("--registry={}", public.url());
    let token_flag = format!(
        "--{}:_authToken={token}",
        public.url().trim_start_matches("http:")
    );
    npm_install_all(
        &env,
        &cache,
        &[&open, &lib, &tool, &hidden, &secret],
        &[&registry_flag, &token_flag],
    );

    assert_fetched_with_token(&server, &secret);

    let _daemon = Daemon::start(&env, "npm");
    wait_first_scan(&env, Duration::from_secs(60));
    wait_ls(&env, &["seed-open@1.0.0"], "before the wildcard");
    let st = status(&env);
    for scope in ["@openorg", "@tools"] {
        let o = origin(&st, &scope_origin(scope))
            .unwrap_or_else(|| panic!("{scope}'s origin is missing: {st:#}"));
        assert_eq!(o["provenance"], "unknown", "{o}");
    }

    // One command marks every scope of the registry; the engine applies it at once.
    env.pkgseed_run(&[
        "origins",
        "mark",
        "--all-scopes",
        &scope_origin("@tools"),
        "public",
    ])
    .expect_success("pkgseed origins mark --all-scopes");
    let wildcard = format!("{}@*", public.url());
    let saved = std::fs::read_to_string(env.config_dir.join("config.toml")).unwrap();
    assert!(saved.contains(&format!("{wildcard:?}")), "{saved}");
    let listed = wait_ls(
        &env,
        &["seed-open@1.0.0", "@openorg/lib@1.0.0", "@tools/cli@2.0.0"],
        "after the wildcard",
    );
    for name in ["@openorg/lib", "@tools/cli"] {
        let scope = name.split('/').next().unwrap();
        let entry = listed.iter().find(|e| e["name"] == name).unwrap();
        assert_eq!(entry["origin"].as_str(), Some(scope_origin(scope).as_str()));
    }

    // Status says which rule decided each scope.
    let origins = env.pkgseed_json(&["origins", "--json"]);
    let by_id = |id: &str| {
        origins
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["origin"].as_str() == Some(id) && o["ecosystem"] == "npm")
            .unwrap_or_else(|| panic!("{id} is missing: {origins:#}"))
            .clone()
    };
    for scope in ["@openorg", "@tools"] {
        let o = by_id(&scope_origin(scope));
        assert_eq!(o["provenance"], "public", "{o}");
        assert!(o["evidence"].as_str().unwrap().contains(&wildcard), "{o}");
    }
    let o = by_id(&scope_origin("@hidden"));
    assert_eq!(o["provenance"], "private", "{o}");
    assert!(
        o["evidence"].as_str().unwrap().contains("marked private"),
        "{o}"
    );
    let o = by_id(&scope_origin("@corp"));
    assert_eq!(o["provenance"], "private", "{o}");
    assert!(
        o["evidence"]
            .as_str()
            .unwrap()
            .contains("cache-control: private"),
        "{o}"
    );
    let text = env
        .pkgseed_run(&["origins"])
        .expect_success("pkgseed origins");
    assert!(
        text.stdout.contains(&wildcard),
        "the text list names the wildcard rule\n{}",
        text.describe()
    );

    // Helia: the seeded scopes are served, the private ones under none of their CIDs.
    assert_helia_serves_only(&env, &[&lib, &tool], &[&secret, &hidden]);

    // A malformed wildcard is refused with a clear error and changes nothing.
    let bad = env.pkgseed_run(&["origins", "mark", &format!("{}*", public.url()), "public"]);
    assert!(!bad.success(), "{}", bad.describe());
    assert!(bad.stderr.contains("@*"), "{}", bad.describe());
    assert_eq!(
        std::fs::read_to_string(env.config_dir.join("config.toml")).unwrap(),
        saved
    );
}
