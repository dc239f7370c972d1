//! End-to-end: the pip source. The REAL pip (>= 23.3, see `support::pipapt::pip_python`) downloads wheels made here
//! with python3's `zipfile` from two PEP 503 simple indexes served on 127.0.0.1 with cache headers, into a temp
//! `--cache-dir`; the real `pkgseed daemon` (given the same cache dir and both index URLs through `PIP_CACHE_DIR`,
//! `PIP_INDEX_URL` and `PIP_EXTRA_INDEX_URL`) proves each body's URL by hashing it back to pip's cache key.
//!
//! - public index (marked public in pkgseed's config): files in the content-addressed `/packages/<blake2b>/` layout;
//! - private index (unmarked): files next to the project page; its wheel must never be seeded;
//! - an interrupted download (the server closes mid-body) and an entry without its metadata file: not seeded;
//! - `pip cache purge`: the public wheel is withdrawn.

use std::path::PathBuf;
use std::time::Duration;

use pkgseed_e2e::pipapt::{
    blake2b_256_hex, make_wheel, pip_bodies, pip_command, pip_python, CachingServer,
};
use pkgseed_e2e::{
    assert_sha256_identity, dial_addr, helia_fetch, ls, poll, run, sha256_file, status,
    wait_first_scan, Daemon, HeliaFetch, TestEnv,
};
use serde_json::Value;

fn find<'a>(ls: &'a [Value], name: &str) -> Option<&'a Value> {
    ls.iter()
        .find(|e| e["ecosystem"] == "pip" && e["name"].as_str() == Some(name))
}

#[test]
fn pip_cache_is_seeded_by_url_proof() {
    let python = pip_python();
    let env = TestEnv::new("pip");
    let cache = env.root_path.join("pip-cache");
    let wheels = env.work.join("wheels");

    // Two indexes on two servers.
    let public = CachingServer::start();
    let private = CachingServer::start();
    let public_index = format!("{}/simple/", public.base_url());
    let private_index = format!("{}/simple/", private.base_url());

    let pub_whl = make_wheel(&wheels, "seedpub", "1.0");
    let pub_name = pub_whl.file_name().unwrap().to_str().unwrap().to_string();
    let b2 = blake2b_256_hex(&pub_whl);
    let pub_path = format!(
        "/packages/{}/{}/{}/{pub_name}",
        &b2[..2],
        &b2[2..4],
        &b2[4..]
    );
    public.put(&pub_path, std::fs::read(&pub_whl).unwrap());
    public.put(
        "/simple/seedpub/",
        format!(
            "<html><body><a href=\"{pub_path}#sha256={}\">{pub_name}</a></body></html>",
            sha256_file(&pub_whl)
        ),
    );
    let part_whl = make_wheel(&wheels, "seedpart", "1.0");
    let part_name = part_whl.file_name().unwrap().to_str().unwrap().to_string();
    let b2p = blake2b_256_hex(&part_whl);
    let part_path = format!(
        "/packages/{}/{}/{}/{part_name}",
        &b2p[..2],
        &b2p[2..4],
        &b2p[4..]
    );
    public.put_truncated(&part_path, std::fs::read(&part_whl).unwrap());
    public.put(
        "/simple/seedpart/",
        format!("<html><body><a href=\"{part_path}\">{part_name}</a></body></html>"),
    );

    let priv_whl = make_wheel(&wheels, "seedpriv", "1.0");
    let priv_name = priv_whl.file_name().unwrap().to_str().unwrap().to_string();
    private.put(
        &format!("/simple/seedpriv/{priv_name}"),
        std::fs::read(&priv_whl).unwrap(),
    );
    private.put(
        "/simple/seedpriv/",
        format!("<html><body><a href=\"{priv_name}\">{priv_name}</a></body></html>"),
    );

    let download = |index: &str, req: &str| {
        let mut cmd = pip_command(&python, &env.home);
        cmd.arg("--cache-dir")
            .arg(&cache)
            .args([
                "download",
                "--no-deps",
                "--no-build-isolation",
                "--index-url",
                index,
            ])
            .args([
                "--trusted-host",
                "127.0.0.1",
                "--retries",
                "0",
                "--timeout",
                "10",
                "-d",
            ])
            .arg(env.work.join("dl"))
            .arg(req);
        run(&mut cmd, Duration::from_secs(120))
    };
    download(&public_index, "seedpub==1.0").expect_success("pip download seedpub");
    download(&private_index, "seedpriv==1.0").expect_success("pip download seedpriv");
    let partial = download(&public_index, "seedpart==1.0");
    assert!(
        !partial.success(),
        "the truncated download must fail\n{}",
        partial.describe()
    );

    let bodies = pip_bodies(&cache);
    let body_of = |whl: &PathBuf| {
        let want = std::fs::read(whl).unwrap();
        bodies
            .iter()
            .find(|b| std::fs::read(b).unwrap() == want)
            .cloned()
    };
    let pub_body = body_of(&pub_whl)
        .unwrap_or_else(|| panic!("pip cached no body equal to {pub_name}; bodies: {bodies:?}"));
    let priv_body =
        body_of(&priv_whl).unwrap_or_else(|| panic!("pip cached no body for {priv_name}"));
    assert!(
        body_of(&part_whl).is_none(),
        "the interrupted download left a complete body"
    );
    // An entry whose metadata file is missing (pip writes both; only one is there mid-write): a copy of the public
    // body under another key, without its metadata file.
    let orphan_dir = cache.join("http-v2/0/0/0/0/0");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let orphan = orphan_dir.join(format!("{}.body", "0".repeat(56)));
    std::fs::copy(&pub_body, &orphan).unwrap();

    let public_origin = format!("pip:{public_index}");
    let private_origin = format!("pip:{private_index}");
    env.write_pkgseed_config(&[&public_origin], &[]);
    // The daemon learns the cache dir and the indexes from pip's own variables.
    std::env::set_var("PIP_CACHE_DIR", &cache);
    std::env::set_var("PIP_INDEX_URL", &public_index);
    std::env::set_var("PIP_EXTRA_INDEX_URL", &private_index);
    std::env::set_var("PIP_CONFIG_FILE", "/dev/null");
    std::env::remove_var("PIP_FIND_LINKS");
    let _daemon = Daemon::start(&env, "pip");
    wait_first_scan(&env, Duration::from_secs(60));

    let entries = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let l = ls(&env);
        find(&l, "seedpub").is_some().then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "seedpub not seeded; ls: {:#?}\nstatus: {:#}",
            ls(&env),
            status(&env)
        )
    });
    let e = find(&entries, "seedpub").unwrap();
    eprintln!("ls entry: {e:#}");
    assert_eq!(e["origin"].as_str(), Some(public_origin.as_str()), "{e}");
    assert_eq!(
        e["version"].as_str(),
        Some(format!("1.0 ({pub_name})").as_str()),
        "{e}"
    );
    assert_eq!(
        std::path::Path::new(e["path"].as_str().unwrap()),
        pub_body.as_path(),
        "{e}"
    );
    let (cid, checksum_cid) = assert_sha256_identity(e, &pub_whl, &pub_body);
    // Private, partial and orphan entries are never seeded.
    assert!(
        find(&entries, "seedpriv").is_none(),
        "private wheel seeded: {entries:#?}"
    );
    assert!(find(&entries, "seedpart").is_none(), "partial wheel seeded");
    assert!(
        !entries
            .iter()
            .any(|x| x["path"].as_str() == Some(orphan.to_str().unwrap())),
        "entry without metadata file seeded"
    );
    assert_eq!(
        entries.iter().filter(|x| x["ecosystem"] == "pip").count(),
        1,
        "{entries:#?}"
    );
    let st = status(&env);
    let origins = st["origins"]
        .as_array()
        .unwrap_or_else(|| panic!("no origins: {st}"));
    let origin = |id: &str| {
        origins
            .iter()
            .find(|o| o["origin"].as_str() == Some(id))
            .cloned()
    };
    let p = origin(&private_origin)
        .unwrap_or_else(|| panic!("private origin not listed: {origins:#?}"));
    assert_eq!(p["provenance"], "private", "{p}");
    assert_eq!(p["ecosystem"], "pip", "{p}");
    assert_eq!(origin(&public_origin).unwrap()["provenance"], "public");
    let _ = priv_body;

    // Helia fetches the public wheel by root CID and checksum CID (equal for a file of one chunk).
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
    let want = std::fs::read(&pub_whl).unwrap();
    for c in &cids {
        assert_eq!(
            std::fs::read(out_dir.join(c)).unwrap(),
            want,
            "bytes via Helia for {c}"
        );
    }

    // Eviction by pip's own clean-up.
    let mut purge = pip_command(&python, &env.home);
    purge
        .arg("--cache-dir")
        .arg(&cache)
        .args(["cache", "purge"]);
    run(&mut purge, Duration::from_secs(60)).expect_success("pip cache purge");
    assert!(
        !pub_body.exists(),
        "pip cache purge left {}",
        pub_body.display()
    );
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        find(&ls(&env), "seedpub").is_none().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "seedpub still listed after pip cache purge: {:#?}",
            ls(&env)
        )
    });
}
