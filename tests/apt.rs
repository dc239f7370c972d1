//! End-to-end: the apt source. Two local repositories on 127.0.0.1 (a `.deb` made with `dpkg-deb --build`,
//! hand-written `Packages` and `Release`, `InRelease` clearsigned with test keys made by `gpg`), the REAL `apt-get
//! update` + `apt-get install --download-only` with every apt dir redirected to a temp dir through an `APT_CONFIG`
//! file (the machine's apt state is untouched), the real `pkgseed daemon` with the same `APT_CONFIG`.
//!
//! - trusted repo: its key is in the temp `Dir::Etc::trustedparts` → public by gpgv proof (no mark needed);
//! - untrusted repo: `signed-by=` a key outside the trusted keyrings → private, never seeded;
//! - a download cut short by the server stays in `archives/partial/` → not seeded;
//! - `apt-get clean` removes the `.deb` files → withdrawn.

use std::path::Path;
use std::time::Duration;

use pkgseed_e2e::pipapt::{make_deb, require_tool, serve_apt_repo, CachingServer, TestKey};
use pkgseed_e2e::{
    assert_sha256_identity, dial_addr, helia_fetch, ls, poll, run, sha256_file, status,
    wait_first_scan, Daemon, HeliaFetch, TestEnv,
};
use serde_json::Value;

fn find<'a>(ls: &'a [Value], name: &str) -> Option<&'a Value> {
    ls.iter()
        .find(|e| e["ecosystem"] == "apt" && e["name"].as_str() == Some(name))
}

fn apt_get(apt_config: &Path, args: &[&str]) -> pkgseed_e2e::RunOutput {
    let mut cmd = std::process::Command::new("apt-get");
    cmd.env("APT_CONFIG", apt_config)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(args);
    run(&mut cmd, Duration::from_secs(120))
}

#[test]
fn apt_cache_is_seeded_by_signed_lists() {
    for (tool, pkg) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("gpg", "gnupg"),
        ("gpgv", "gpgv"),
    ] {
        require_tool(tool, pkg);
    }
    let env = TestEnv::new("apt");
    let arch = run(
        std::process::Command::new("dpkg").arg("--print-architecture"),
        Duration::from_secs(10),
    )
    .expect_success("dpkg --print-architecture")
    .stdout
    .trim()
    .to_string();
    let root = env.root_path.join("apt");
    let debs = env.work.join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let trusted_key = TestKey::new(&env.root_path, "trusted");
    let other_key = TestKey::new(&env.root_path, "other");
    for d in [
        "state/lists/partial",
        "cache/archives/partial",
        "etc/sources.list.d",
        "etc/trusted.gpg.d",
        "etc/apt.conf.d",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    trusted_key.export(&root.join("etc/trusted.gpg.d/pkgseed-test.gpg"));
    let other_keyring = root.join("other.gpg");
    other_key.export(&other_keyring);

    let public = CachingServer::start();
    let private = CachingServer::start();
    let pub_deb = make_deb(&debs, "seedapt", "1:1.0-1", &arch);
    let part_deb = make_deb(&debs, "seedapt-part", "1.0", &arch);
    let priv_deb = make_deb(&debs, "seedsecret", "2.0", &arch);
    serve_apt_repo(
        &public,
        &env.work,
        &trusted_key,
        &arch,
        &[(&pub_deb, false), (&part_deb, true)],
    );
    serve_apt_repo(
        &private,
        &env.work,
        &other_key,
        &arch,
        &[(&priv_deb, false)],
    );

    std::fs::write(
        root.join("etc/sources.list"),
        format!(
            "deb {}/debian stable main\ndeb [signed-by={}] {}/debian stable main\n",
            public.base_url(),
            other_keyring.display(),
            private.base_url()
        ),
    )
    .unwrap();
    std::fs::write(root.join("status"), "").unwrap();
    let r = root.display();
    let apt_config = root.join("apt.conf");
    std::fs::write(
        &apt_config,
        format!(
            "Dir::State \"{r}/state\";\nDir::State::status \"{r}/status\";\nDir::Cache \"{r}/cache\";\n\
             Dir::Etc::sourcelist \"{r}/etc/sources.list\";\nDir::Etc::sourceparts \"{r}/etc/sources.list.d\";\n\
             Dir::Etc::trusted \"{r}/etc/trusted.gpg\";\nDir::Etc::trustedparts \"{r}/etc/trusted.gpg.d\";\n\
             Dir::Etc::preferencesparts \"{r}/etc/preferences.d\";\nDir::Etc::preferences \"{r}/etc/preferences\";\n\
             APT::Architecture \"{arch}\";\nAPT::Architectures {{ \"{arch}\"; }};\nAPT::Sandbox::User \"root\";\n\
             Debug::NoLocking \"true\";\nAcquire::Retries \"0\";\nAcquire::Check-Valid-Until \"false\";\n\
             Acquire::Languages \"none\";\nAcquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::CNF::DefaultEnabled \"false\";\n"
        ),
    )
    .unwrap();

    apt_get(&apt_config, &["update"]).expect_success("apt-get update");
    apt_get(
        &apt_config,
        &[
            "install",
            "--download-only",
            "-y",
            "--no-install-recommends",
            "seedapt",
            "seedsecret",
        ],
    )
    .expect_success("apt-get install --download-only");
    let part = apt_get(
        &apt_config,
        &["install", "--download-only", "-y", "seedapt-part"],
    );
    assert!(
        !part.success(),
        "the truncated download must fail\n{}",
        part.describe()
    );

    let archives = root.join("cache/archives");
    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    eprintln!(
        "archives: {:?}\npartial: {:?}",
        listing(&archives),
        listing(&archives.join("partial"))
    );
    eprintln!("lists: {:?}", listing(&root.join("state/lists")));
    let pub_cached = archives.join("seedapt_1%3a1.0-1_".to_string() + &arch + ".deb");
    let priv_cached = archives.join(format!("seedsecret_2.0_{arch}.deb"));
    assert!(
        pub_cached.is_file(),
        "apt did not cache {}",
        pub_cached.display()
    );
    assert!(
        priv_cached.is_file(),
        "apt did not cache {}",
        priv_cached.display()
    );
    assert!(
        !archives
            .join(format!("seedapt-part_1.0_{arch}.deb"))
            .exists(),
        "truncated deb completed"
    );
    assert!(
        listing(&archives.join("partial"))
            .iter()
            .any(|f| f.starts_with("seedapt-part")),
        "the interrupted download left nothing in partial/: {:?}",
        listing(&archives.join("partial"))
    );
    assert_eq!(sha256_file(&pub_cached), sha256_file(&pub_deb));

    env.enable_system_ecosystem("apt");

    env.write_pkgseed_config(&[], &[]);
    std::env::set_var("APT_CONFIG", &apt_config);
    let _daemon = Daemon::start(&env, "apt");
    wait_first_scan(&env, Duration::from_secs(60));
    let entries = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let l = ls(&env);
        find(&l, "seedapt").is_some().then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "seedapt not seeded; ls: {:#?}\nstatus: {:#}",
            ls(&env),
            status(&env)
        )
    });
    let e = find(&entries, "seedapt").unwrap();
    eprintln!("ls entry: {e:#}");
    assert_eq!(
        e["version"].as_str(),
        Some(format!("1:1.0-1 {arch}").as_str()),
        "{e}"
    );
    let (cid, checksum_cid) = assert_sha256_identity(e, &pub_cached, &pub_cached);
    let public_origin = e["origin"].as_str().unwrap().to_string();
    assert!(public_origin.starts_with("apt:127.0.0.1"), "{e}");
    assert!(
        find(&entries, "seedsecret").is_none(),
        "private deb seeded: {entries:#?}"
    );
    assert!(
        find(&entries, "seedapt-part").is_none(),
        "partial deb seeded"
    );
    assert_eq!(
        entries.iter().filter(|x| x["ecosystem"] == "apt").count(),
        1,
        "{entries:#?}"
    );
    let st = status(&env);
    let origins = st["origins"]
        .as_array()
        .unwrap_or_else(|| panic!("no origins: {st}"));
    let apt_origins: Vec<&Value> = origins.iter().filter(|o| o["ecosystem"] == "apt").collect();
    eprintln!("apt origins: {apt_origins:#?}");
    let private = apt_origins
        .iter()
        .find(|o| o["origin"].as_str() != Some(public_origin.as_str()))
        .unwrap_or_else(|| panic!("private origin not listed: {apt_origins:#?}"));
    assert_eq!(private["provenance"], "private", "{private}");
    assert!(
        private["origin"]
            .as_str()
            .unwrap()
            .starts_with("apt:127.0.0.1"),
        "{private}"
    );

    let out_dir = env.work.join("helia");
    let mut cids = vec![cid.clone()];
    if checksum_cid != cid {
        cids.push(checksum_cid);
    }
    let r = helia_fetch(&HeliaFetch {
        peer: dial_addr(&status(&env)),
        cids: cids.clone(),
        out_dir: out_dir.clone(),
        timeout_seconds: Some(30),
        ..Default::default()
    });
    assert!(r.success(), "Helia fetch failed\n{}", r.output.describe());
    let want = std::fs::read(&pub_cached).unwrap();
    for c in &cids {
        assert_eq!(
            std::fs::read(out_dir.join(c)).unwrap(),
            want,
            "bytes via Helia for {c}"
        );
    }

    apt_get(&apt_config, &["clean"]).expect_success("apt-get clean");
    assert!(
        !pub_cached.exists(),
        "apt-get clean left {}",
        pub_cached.display()
    );
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        find(&ls(&env), "seedapt").is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("seedapt still listed after apt-get clean: {:#?}", ls(&env)));
}
