//! End-to-end: the pip source. The REAL pip (>= 23.3, see `support::pipapt::pip_python`) downloads wheels made here
//! with python3's `zipfile` from two PEP 503 simple indexes served on 127.0.0.1 with cache headers, into a temp
//! `--cache-dir`; the real `pkgseed daemon` (given the same cache dir and both index URLs through `PIP_CACHE_DIR`,
//! `PIP_INDEX_URL` and `PIP_EXTRA_INDEX_URL`) proves each body's URL by hashing it back to pip's cache key.
//!
//! - public index (marked public in pkgseed's config): files in the content-addressed `/packages/<blake2b>/` layout;
//! - private index (unmarked): files next to the project page; its wheel must never be seeded;
//! - an interrupted download (the server closes mid-body) and an entry without its metadata file: not seeded;
//! - `pip cache purge`: the public wheel is withdrawn.
//!
//! And the cache of pip before 23.3 (`http/`, each response body INLINE in a msgpack file): the real pip 23.2.1
//! (`support::pipapt::old_pip_python`, a venv made on first use) fills it from the same kind of indexes, and the
//! body of the public wheel is seeded as a byte range of its cache file.
//!
//! The tests share the daemon's pip variables through this process's environment, so they run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pkgseed_e2e::langpkg::{assert_helia_fetches, origin_status, wait_seeded, wait_withdrawn};
use pkgseed_e2e::pipapt::{
    blake2b_256_hex, make_wheel, make_wheel_with_random_bytes, old_pip_python, pip_bodies,
    pip_command, pip_inline_entries, pip_python, CachingServer,
};
use pkgseed_e2e::{
    assert_sha256_identity, dial_addr, helia_fetch, ls, poll, run, sha256_file, status,
    wait_first_scan, Daemon, HeliaFetch, RunOutput, TestEnv,
};
use serde_json::Value;

/// Held for a whole test: the daemon inherits `PIP_*` from this process's environment.
static PIP_ENV: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    PIP_ENV
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn find<'a>(ls: &'a [Value], name: &str) -> Option<&'a Value> {
    ls.iter()
        .find(|e| e["ecosystem"] == "pip" && e["name"].as_str() == Some(name))
}

/// Serves `whl` on `server` in the content-addressed `/packages/<b2>/<b2>/<rest>/<file>` layout with its project page
/// under `/simple/<project>/`; returns the file name.
fn serve_content_addressed(server: &CachingServer, project: &str, whl: &Path) -> String {
    let name = whl.file_name().unwrap().to_str().unwrap().to_string();
    let b2 = blake2b_256_hex(whl);
    let path = format!("/packages/{}/{}/{}/{name}", &b2[..2], &b2[2..4], &b2[4..]);
    server.put(&path, std::fs::read(whl).unwrap());
    server.put(
        &format!("/simple/{project}/"),
        format!(
            "<html><body><a href=\"{path}#sha256={}\">{name}</a></body></html>",
            sha256_file(whl)
        ),
    );
    name
}

/// Serves `whl` on `server` next to its project page `/simple/<project>/` (a plain PEP 503 tree).
fn serve_project_tree(server: &CachingServer, project: &str, whl: &Path) -> String {
    let name = whl.file_name().unwrap().to_str().unwrap().to_string();
    server.put(
        &format!("/simple/{project}/{name}"),
        std::fs::read(whl).unwrap(),
    );
    server.put(
        &format!("/simple/{project}/"),
        format!("<html><body><a href=\"{name}\">{name}</a></body></html>"),
    );
    name
}

/// One test's world: its env, pip cache dir, wheel dir, and a public and a private index on two servers.
struct PipWorld {
    env: TestEnv,
    python: PathBuf,
    cache: PathBuf,
    wheels: PathBuf,
    public: CachingServer,
    private: CachingServer,
    public_index: String,
    private_index: String,
}

impl PipWorld {
    fn new(name: &str, python: PathBuf) -> PipWorld {
        let env = TestEnv::new(name);
        let public = CachingServer::start();
        let private = CachingServer::start();
        PipWorld {
            cache: env.root_path.join("pip-cache"),
            wheels: env.work.join("wheels"),
            public_index: format!("{}/simple/", public.base_url()),
            private_index: format!("{}/simple/", private.base_url()),
            env,
            python,
            public,
            private,
        }
    }

    /// `pip download --no-deps REQ` from `index` into the world's cache.
    fn download(&self, index: &str, req: &str) -> RunOutput {
        let mut cmd = pip_command(&self.python, &self.env.home);
        cmd.arg("--cache-dir")
            .arg(&self.cache)
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
            .arg(self.env.work.join("dl"))
            .arg(req);
        run(&mut cmd, Duration::from_secs(120))
    }

    /// `pip cache purge`; asserts it succeeded.
    fn purge(&self) {
        let mut purge = pip_command(&self.python, &self.env.home);
        purge
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["cache", "purge"]);
        run(&mut purge, Duration::from_secs(60)).expect_success("pip cache purge");
    }

    /// Marks the public index public in pkgseed's config and points the daemon (through this process's environment)
    /// at the cache and both indexes; returns the two origin ids.
    fn configure_daemon(&self) -> (String, String) {
        let public_origin = format!("pip:{}", self.public_index);
        let private_origin = format!("pip:{}", self.private_index);
        self.env.write_pkgseed_config(&[&public_origin], &[]);
        std::env::set_var("PIP_CACHE_DIR", &self.cache);
        std::env::set_var("PIP_INDEX_URL", &self.public_index);
        std::env::set_var("PIP_EXTRA_INDEX_URL", &self.private_index);
        std::env::set_var("PIP_CONFIG_FILE", "/dev/null");
        std::env::remove_var("PIP_FIND_LINKS");
        (public_origin, private_origin)
    }
}

#[test]
fn pip_cache_is_seeded_by_url_proof() {
    let _serial = serial();
    let world = PipWorld::new("pip", pip_python());
    let PipWorld {
        env,
        cache,
        wheels,
        public,
        private,
        public_index,
        private_index,
        ..
    } = &world;

    let pub_whl = make_wheel(wheels, "seedpub", "1.0");
    let pub_name = serve_content_addressed(public, "seedpub", &pub_whl);
    let part_whl = make_wheel(wheels, "seedpart", "1.0");
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

    let priv_whl = make_wheel(wheels, "seedpriv", "1.0");
    let priv_name = serve_project_tree(private, "seedpriv", &priv_whl);

    world
        .download(public_index, "seedpub==1.0")
        .expect_success("pip download seedpub");
    world
        .download(private_index, "seedpriv==1.0")
        .expect_success("pip download seedpriv");
    let partial = world.download(public_index, "seedpart==1.0");
    assert!(
        !partial.success(),
        "the truncated download must fail\n{}",
        partial.describe()
    );

    let bodies = pip_bodies(cache);
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

    // The daemon learns the cache dir and the indexes from pip's own variables.
    let (public_origin, private_origin) = world.configure_daemon();
    let _daemon = Daemon::start(env, "pip");
    wait_first_scan(env, Duration::from_secs(60));

    let entries = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let l = ls(env);
        find(&l, "seedpub").is_some().then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "seedpub not seeded; ls: {:#?}\nstatus: {:#}",
            ls(env),
            status(env)
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
    let st = status(env);
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
        peer: dial_addr(&status(env)),
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
    world.purge();
    assert!(
        !pub_body.exists(),
        "pip cache purge left {}",
        pub_body.display()
    );
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        find(&ls(env), "seedpub").is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("seedpub still listed after pip cache purge: {:#?}", ls(env)));
}

/// The byte offset of `needle` in `haystack`, if it occurs once.
fn offset_of(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut at = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let (first, _) = at.next()?;
    at.next().is_none().then_some(first)
}

/// pip 23.2.1 caches each response in ONE file under `http/`, the wheel's bytes inline between msgpack fields. The
/// public wheel is seeded as that byte range (path = the cache file, offset/size = the body), with the sha256
/// identity and a root CID equal to the reference importer's over the extracted bytes; Helia and the local gateway
/// get exactly the wheel; the private wheel is never seeded; pip's own `cache purge` withdraws it.
#[test]
fn pip_before_23_3_inline_bodies_are_seeded_as_byte_ranges() {
    let _serial = serial();
    let world = PipWorld::new("pipold", old_pip_python());
    let env = &world.env;
    // Two UnixFS chunks (1 MiB + the rest), under the 2 MiB checksum-CID limit: the second leaf and the checksum
    // block are read at the body's offset in the cache file plus their own.
    let pub_whl = make_wheel_with_random_bytes(&world.wheels, "seedold", "1.0", 1_500_000);
    let pub_name = serve_content_addressed(&world.public, "seedold", &pub_whl);
    let priv_whl = make_wheel(&world.wheels, "seedoldpriv", "1.0");
    serve_project_tree(&world.private, "seedoldpriv", &priv_whl);
    world
        .download(&world.public_index, "seedold==1.0")
        .expect_success("pip 23.2.1 download seedold");
    world
        .download(&world.private_index, "seedoldpriv==1.0")
        .expect_success("pip 23.2.1 download seedoldpriv");
    assert!(
        pip_bodies(&world.cache).is_empty(),
        "pip 23.2.1 wrote http-v2 bodies: the test needs the old layout"
    );
    let entries = pip_inline_entries(&world.cache);
    let want = std::fs::read(&pub_whl).unwrap();
    let (entry, offset) = entries
        .iter()
        .find_map(|e| offset_of(&std::fs::read(e).unwrap(), &want).map(|at| (e.clone(), at)))
        .unwrap_or_else(|| panic!("no http/ entry holds {pub_name} inline; entries: {entries:?}"));
    assert!(
        offset > 0,
        "the body is inline, after the response's header"
    );
    // The reference importer runs on the extracted bytes (what a peer receives).
    let extracted = env.work.join("extracted.whl");
    let file = std::fs::read(&entry).unwrap();
    std::fs::write(&extracted, &file[offset..offset + want.len()]).unwrap();

    let (public_origin, private_origin) = world.configure_daemon();
    let mut daemon = Daemon::start(env, "pipold");
    let first = wait_first_scan(env, Duration::from_secs(60));
    let e = wait_seeded(env, &entry, Duration::from_secs(30));
    eprintln!("ls entry: {e:#}");
    assert_eq!(e["name"], "seedold", "{e}");
    assert_eq!(
        e["version"].as_str(),
        Some(format!("1.0 ({pub_name})").as_str())
    );
    assert_eq!(e["origin"].as_str(), Some(public_origin.as_str()));
    assert_eq!(e["offset"].as_u64(), Some(offset as u64), "{e}");
    assert_eq!(e["size"].as_u64(), Some(want.len() as u64), "{e}");
    let (cid, checksum_cid) = assert_sha256_identity(&e, &pub_whl, &extracted);
    // Nothing else of pip is seeded; the private origin is listed as private.
    let all = ls(env);
    assert!(
        find(&all, "seedoldpriv").is_none(),
        "private wheel seeded: {all:#?}"
    );
    assert_eq!(
        all.iter().filter(|x| x["ecosystem"] == "pip").count(),
        1,
        "{all:#?}"
    );
    assert_eq!(origin_status(env, &private_origin)["provenance"], "private");
    // pip's old cache is seeded, so it is no longer listed as "found, not seedable".
    let unseedable = first["unseedable_caches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !unseedable.iter().any(|c| c["ecosystem"] == "pip"),
        "pip's http/ still listed as not seedable: {unseedable:#?}"
    );

    // Helia (bitswap) gets exactly the wheel's bytes by root CID and checksum CID; the local gateway serves the
    // checksum CID's raw block (the whole body, read at its offset in the cache file).
    assert_ne!(cid, checksum_cid, "a wheel of two chunks has a dag-pb root");
    assert_helia_fetches(env, &[cid.clone(), checksum_cid.clone()], &want);
    let gateway = status(env)["gateway"]["listen_addr"]
        .as_str()
        .expect("gateway address")
        .to_string();
    let raw = env.work.join("gateway.raw");
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sSf", "-o"])
        .arg(&raw)
        .arg(format!("http://{gateway}/ipfs/{checksum_cid}?format=raw"));
    run(&mut curl, Duration::from_secs(30)).expect_success("curl the gateway");
    assert!(
        std::fs::read(&raw).unwrap() == want,
        "gateway bytes differ from the wheel"
    );

    // A restart reads the range record back from the index (record format 3) and hashes nothing again.
    daemon.stop();
    let _daemon = Daemon::start(env, "pipold-2");
    let st = wait_first_scan(env, Duration::from_secs(60));
    assert_eq!(
        st["files_hashed"].as_u64(),
        Some(0),
        "restart re-hashed: {st}"
    );
    assert_eq!(wait_seeded(env, &entry, Duration::from_secs(10)), e);

    // Eviction by pip's own clean-up (pip 23.2.1 purges http/ too).
    world.purge();
    assert!(!entry.exists(), "pip cache purge left {}", entry.display());
    wait_withdrawn(env, &entry, Duration::from_secs(20));
}
