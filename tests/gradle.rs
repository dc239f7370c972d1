//! End-to-end: the Gradle dependency cache with the REAL `gradle` (Debian's 4.4.1, on the machine's JDK 17), against
//! Maven-layout repositories served on 127.0.0.1: "public" (marked public in the pkgseed config, because a local
//! server can never be the built-in central repository), "private", and "cut" (also marked public; it interrupts the
//! body of one jar). Jars (stored zips with a manifest and filler) and POMs are generated here, each with its `.sha1`
//! side file, exactly as the Maven test serves them. A one-file build script declares the dependencies in a custom
//! configuration and a task prints the resolved files, so Gradle downloads through its own resolver into
//! `$GRADLE_USER_HOME/caches/modules-2/files-2.1/<group>/<module>/<version>/<sha1>/<file>` and records each file's URL
//! in `metadata-2.36/resource-at-url.bin`. Gradle is run with `--no-daemon` and every repository on 127.0.0.1, so
//! nothing leaves loopback and no Gradle process outlives a run.
//!
//! What this proves: the public jar and POM are seeded with the registry checksum `sha1:<hex>` (the cache dir name,
//! equal to the `.sha1` the repository served), a checksum CID keyed by the file's sha256, and a root CID equal to
//! ipfs-unixfs-importer's, under the origin `gradle:<repository URL>` read from Gradle's `resource-at-url.bin`; the
//! private repository's artifacts are absent from `ls` and its origin is private in `status.origins`; a real
//! interrupted download (the server closes mid-body; Gradle fails) leaves nothing seeded, and a jar truncated in place
//! (its bytes no longer match the sha1 dir name) is not seeded; deleting a version directory (what Gradle's own
//! cleanup of unused entries does from 4.10 on; 4.4.1 has no cleanup of its own) withdraws the jar and the POM;
//! deleting the whole `caches` dir (the usual manual clean) withdraws everything, and the next real `gradle` run
//! that recreates it is seeded again promptly (the watcher re-arms a deleted root well before its periodic retry);
//! Helia fetches the public jar by root CID and by checksum CID with exact bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pkgseed_e2e::http::serve_dir;
use pkgseed_e2e::jvmgo::{assert_jar_and_pom_seeded, jar, pom, publish, sha1_hex};
use pkgseed_e2e::langpkg::{self, origin_status, require_tool, Steps};
use pkgseed_e2e::pipapt::CachingServer;
use pkgseed_e2e::{
    poll, raw_sha256_cid, run, sha256_hex, wait_first_scan, Daemon, RunOutput, TestEnv,
};

/// A project whose `resolve` task resolves `deps` (`group:module:version`) from `repos`, in that order.
fn project(dir: &Path, repos: &[String], deps: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let repos: String = repos
        .iter()
        .map(|url| format!("  maven {{ url '{url}/' }}\n"))
        .collect();
    let deps: String = deps.iter().map(|d| format!("  deps '{d}'\n")).collect();
    std::fs::write(
        dir.join("build.gradle"),
        format!(
            "repositories {{\n{repos}}}\nconfigurations {{ deps }}\ndependencies {{\n{deps}}}\n\
             task resolve {{ doLast {{ configurations.deps.files.each {{ println \"resolved \" + it }} }} }}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("settings.gradle"), "").unwrap();
}

/// `gradle --no-daemon resolve` in `dir`, with HOME and GRADLE_USER_HOME inside the test env.
fn gradle(env: &TestEnv, user_home: &Path, dir: &Path) -> RunOutput {
    let mut c = Command::new("gradle");
    c.current_dir(dir)
        .args(["--no-daemon", "--console=plain", "--stacktrace", "resolve"])
        .env("HOME", &env.home)
        .env("GRADLE_USER_HOME", user_home)
        .env("JAVA_OPTS", format!("-Duser.home={}", env.home.display()))
        .env_remove("GRADLE_OPTS");
    run(&mut c, Duration::from_secs(300))
}

/// Every cached file of `org.seed:<module>:1.0` with extension `ext`: `files-2.1/org.seed/<module>/1.0/*/<file>`.
fn cached(files: &Path, module: &str, ext: &str) -> Vec<PathBuf> {
    let version_dir = files.join("org.seed").join(module).join("1.0");
    let name = format!("{module}-1.0.{ext}");
    std::fs::read_dir(&version_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(&name))
        .filter(|p| p.is_file())
        .collect()
}

#[track_caller]
fn cached_one(files: &Path, module: &str, ext: &str) -> PathBuf {
    let found = cached(files, module, ext);
    assert_eq!(
        found.len(),
        1,
        "expected one cached {module}-1.0.{ext} under {}: {found:?}",
        files.display()
    );
    found[0].clone()
}

#[test]
fn gradle_cache() {
    require_tool("gradle", "gradle");
    let env = TestEnv::new("gradle");
    // Gradle's default user home under the test's HOME: the daemon finds it the same way (`~/.gradle`).
    let user_home = env.home.join(".gradle");
    let files = user_home.join("caches/modules-2/files-2.1");

    let pub_dir = env.work.join("srv-public");
    let priv_dir = env.work.join("srv-private");
    let pub_jar = jar(11, 1_500_000); // > 1 MiB: a multi-block DAG, still <= 2 MiB so it has a checksum CID.
    publish(&pub_dir, "org.seed", "seedpub", "1.0", &pub_jar);
    publish(&pub_dir, "org.seed", "seedhalf", "1.0", &jar(12, 40_000));
    publish(&priv_dir, "org.seed", "seedpriv", "1.0", &jar(13, 100));
    let public = serve_dir(&pub_dir);
    let private = serve_dir(&priv_dir);
    // The interrupted download: the POM is served whole, the jar's body is cut in half and the connection closed.
    let cut = CachingServer::start();
    let cut_jar = jar(14, 300_000);
    let cut_pom = pom("org.seed", "seedcut", "1.0");
    cut.put("/org/seed/seedcut/1.0/seedcut-1.0.pom", cut_pom.clone());
    cut.put(
        "/org/seed/seedcut/1.0/seedcut-1.0.pom.sha1",
        sha1_hex(cut_pom.as_bytes()),
    );
    cut.put_truncated("/org/seed/seedcut/1.0/seedcut-1.0.jar", cut_jar.clone());
    cut.put(
        "/org/seed/seedcut/1.0/seedcut-1.0.jar.sha1",
        sha1_hex(&cut_jar),
    );
    let repos = vec![public.base_url(), private.base_url(), cut.base_url()];

    // Real downloads: the public and private artifacts.
    let consumer = env.work.join("consumer");
    project(
        &consumer,
        &repos,
        &[
            "org.seed:seedpub:1.0",
            "org.seed:seedhalf:1.0",
            "org.seed:seedpriv:1.0",
        ],
    );
    let out = gradle(&env, &user_home, &consumer).expect_success("gradle resolve");
    let pub_path = cached_one(&files, "seedpub", "jar");
    let pom_path = cached_one(&files, "seedpub", "pom");
    let half_path = cached_one(&files, "seedhalf", "jar");
    let priv_path = cached_one(&files, "seedpriv", "jar");
    assert!(
        out.stdout
            .contains(&format!("resolved {}", pub_path.display())),
        "{}",
        out.describe()
    );
    assert_eq!(
        std::fs::read(&pub_path).unwrap(),
        pub_jar,
        "Gradle stored other bytes than the repository served"
    );
    // The layout the source reads: the dir name is the file's sha1 without leading zeros.
    assert_eq!(
        pub_path.parent().unwrap().file_name().unwrap().to_str(),
        Some(sha1_hex(&pub_jar).trim_start_matches('0')),
        "{}",
        pub_path.display()
    );
    let resource_at_url = user_home.join("caches/modules-2/metadata-2.36/resource-at-url.bin");
    let urls = std::fs::read(&resource_at_url)
        .unwrap_or_else(|e| panic!("Gradle 4.4 wrote no {}: {e}", resource_at_url.display()));
    let pub_url = format!("{}/org/seed/seedpub/1.0/seedpub-1.0.jar", public.base_url());
    assert!(
        urls.windows(pub_url.len()).any(|w| w == pub_url.as_bytes()),
        "{pub_url} not recorded in resource-at-url.bin"
    );

    // A real interrupted download: Gradle fails and must leave no complete-looking jar.
    let cutter = env.work.join("cut");
    project(&cutter, &repos, &["org.seed:seedcut:1.0"]);
    let out = gradle(&env, &user_home, &cutter);
    assert!(
        !out.success(),
        "Gradle accepted a cut download?\n{}",
        out.describe()
    );
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("seedcut-1.0.jar"),
        "Gradle failed for another reason than the cut jar\n{}",
        out.describe()
    );
    // An interrupted in-place write: seedhalf's jar truncated (its sha1 dir name no longer matches).
    let half = std::fs::read(&half_path).unwrap();
    std::fs::write(&half_path, &half[..half.len() / 2]).unwrap();

    let pub_origin = format!("gradle:{}", public.base_url());
    let priv_origin = format!("gradle:{}", private.base_url());
    let cut_origin = format!("gradle:{}", cut.base_url());
    env.write_pkgseed_config(&[&pub_origin, &cut_origin], &[]);
    let _daemon = Daemon::start(&env, "gradle");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();
    let mut root_cid = String::new();

    steps.run(
        "public jar and pom seeded: sha1 registry checksum, checksum CID, CID = reference",
        || {
            let served_sha1 = String::from_utf8(
                public
                    .get("/org/seed/seedpub/1.0/seedpub-1.0.jar.sha1")
                    .unwrap(),
            )
            .unwrap();
            root_cid = assert_jar_and_pom_seeded(
                &env,
                ("gradle", "org.seed:seedpub", &pub_origin),
                &pub_path,
                &pom_path,
                &served_sha1,
            );
        },
    );

    steps.run(
        "private repository's artifacts absent; its origin private",
        || {
            let ls = langpkg::ls(&env);
            for p in [priv_path.clone(), cached_one(&files, "seedpriv", "pom")] {
                assert!(
                    langpkg::ls_by_path(&ls, &p).is_none(),
                    "{} seeded",
                    p.display()
                );
            }
            assert!(
                !ls.iter().any(
                    |e| e["origin"] == priv_origin.as_str() || e["name"] == "org.seed:seedpriv"
                ),
                "{ls:#?}"
            );
            let o = origin_status(&env, &priv_origin);
            assert_eq!(o["provenance"], "private", "{o}");
        },
    );

    steps.run(
        "interrupted download and jar truncated in place not seeded",
        || {
            let ls = langpkg::ls(&env);
            assert!(
                !ls.iter().any(|e| e["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("seedcut-1.0.jar"))),
                "the cut download was seeded; cached: {:?}\n{ls:#?}",
                cached(&files, "seedcut", "jar")
            );
            assert!(
                langpkg::ls_by_path(&ls, &half_path).is_none(),
                "truncated jar seeded: {ls:#?}"
            );
            let names = langpkg::seeded_file_names(&ls, "gradle");
            // seedcut's POM arrived whole from a public-marked repository: it is a real, complete artifact.
            let mut expected = vec!["seedhalf-1.0.pom", "seedpub-1.0.jar", "seedpub-1.0.pom"];
            if !cached(&files, "seedcut", "pom").is_empty() {
                expected.push("seedcut-1.0.pom");
                expected.sort();
            }
            assert_eq!(
                names, expected,
                "only these gradle files may be seeded: {ls:#?}"
            );
        },
    );

    steps.run(
        "Helia fetches the public jar by root and checksum CID",
        || {
            let checksum_cid = raw_sha256_cid(&sha256_hex(&pub_jar));
            assert_ne!(root_cid, "", "no root CID from the first step");
            langpkg::assert_helia_fetches(&env, &[root_cid.clone(), checksum_cid], &pub_jar);
        },
    );

    steps.run(
        "deleting the version directory (Gradle's cleanup) withdraws jar and pom",
        || {
            langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(5));
            std::fs::remove_dir_all(files.join("org.seed/seedpub/1.0")).unwrap();
            langpkg::wait_withdrawn(&env, &pub_path, Duration::from_secs(15));
            langpkg::wait_withdrawn(&env, &pom_path, Duration::from_secs(5));
        },
    );

    steps.run(
        "caches dir deleted, then recreated by gradle: seeded again without a restart",
        || {
            std::fs::remove_dir_all(user_home.join("caches")).unwrap();
            let mut last = Vec::new();
            poll(Duration::from_secs(15), Duration::from_millis(200), || {
                last = langpkg::ls(&env);
                (!last.iter().any(|e| e["ecosystem"] == "gradle")).then_some(())
            })
            .unwrap_or_else(|| panic!("gradle entries left after deleting caches/: {last:#?}"));
            gradle(&env, &user_home, &consumer).expect_success("gradle resolve (again)");
            assert_eq!(cached_one(&files, "seedpub", "jar"), pub_path);
            // Well under the watcher's 30 s retry of missing roots: the deleted root is re-armed from its parent.
            let e = langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(20));
            assert_eq!(e["cid"].as_str(), Some(root_cid.as_str()), "{e}");
        },
    );
    steps.finish();
}
