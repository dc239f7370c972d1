//! End-to-end: the cargo slice. Real `cargo package` makes the crates, a local sparse registry serves them, the real
//! `cargo fetch` fills a temp `CARGO_HOME`, the real `pkgseed daemon` seeds it, and a Helia node fetches over loopback.
//!
//! `cargo_slice` shares one setup (one registry, three cargo runs, two daemon starts) across steps b–g of the brief;
//! each step runs on its own and reports its own failure, then the test fails listing every failed step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pkgseed_e2e::langpkg::Steps;
use pkgseed_e2e::registry::{
    cached_crates, make_crate, origin_of, CargoProject, Dep, Published, SparseRegistry,
};
use pkgseed_e2e::{
    dht_find_providers, dht_sink_collect, dial_addr, helia_fetch, js_importer_installed,
    js_unixfs_cids, poll, raw_sha256_cid, sha256_file, sha256_hex, status, wait_first_scan, Daemon,
    HeliaFetch, TestEnv,
};
use serde_json::Value;

const MIB: usize = 1024 * 1024;
/// The IPFS block limit: crates up to this size get a checksum CID.
const CHECKSUM_CID_MAX: u64 = 2 * MIB as u64;
const FIRST_SCAN_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------------
// Fixture

/// A crate to publish: registry, name, version, extra files at the package root.
type CrateSpec<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, Vec<u8>)>);

/// The world one test works in.
struct World {
    env: TestEnv,
    reg: SparseRegistry,
    project: CargoProject,
    /// Index dir name (origin id) cargo made for the `public` registry.
    public_origin: String,
    /// Index dir name cargo made for the `private` registry (absent when the test has no private crate).
    private_origin: Option<String>,
}

impl World {
    /// Registries `public` and `private`; publish `crates` (registry, name, version, extra files); a project that
    /// depends on `deps`; run `cargo fetch`; find the index dirs; write the pkgseed config (only `public` marked).
    fn build(name: &str, crates: Vec<CrateSpec>, deps: &[Dep]) -> World {
        let env = TestEnv::new(name);
        let mut reg = SparseRegistry::new();
        reg.add_registry("public").add_registry("private");
        let t = Instant::now();
        for (registry, cname, version, extra) in crates {
            let extra: Vec<(&str, &[u8])> = extra.iter().map(|(p, b)| (*p, b.as_slice())).collect();
            let bytes = make_crate(cname, version, &extra);
            reg.publish(registry, cname, version, bytes);
        }
        eprintln!(
            "[{name}] made {} crates with cargo package in {:.1?}",
            reg.published().len(),
            t.elapsed()
        );
        env.write_cargo_config(&reg.cargo_config_toml());
        let project = CargoProject::create(&env.work.join("consumer"), deps);
        let t = Instant::now();
        project.fetch(&env.cargo_home, &env.home);
        eprintln!("[{name}] cargo fetch took {:.1?}", t.elapsed());

        let public_dep = deps
            .iter()
            .find(|d| d.registry == "public")
            .expect("a public dependency");
        let public_file = reg
            .published()
            .iter()
            .find(|p| p.name == public_dep.name)
            .unwrap()
            .file_name();
        let (public_origin, _) = origin_of(&env.cargo_home, &public_file).unwrap_or_else(|| {
            panic!(
                "cargo fetch put no {public_file} under registry/cache: {:?}",
                cached_crates(&env.cargo_home)
            )
        });
        let private_origin = deps.iter().find(|d| d.registry == "private").map(|d| {
            let f = reg
                .published()
                .iter()
                .find(|p| p.name == d.name)
                .unwrap()
                .file_name();
            origin_of(&env.cargo_home, &f)
                .expect("private crate in cache")
                .0
        });
        assert_ne!(
            Some(&public_origin),
            private_origin.as_ref(),
            "public and private registries share an index dir"
        );
        eprintln!("[{name}] public origin {public_origin}, private origin {private_origin:?}");
        env.write_pkgseed_config(&[&public_origin], &[]);
        World {
            env,
            reg,
            project,
            public_origin,
            private_origin,
        }
    }

    fn published(&self, name: &str) -> &Published {
        self.reg
            .published()
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not published"))
    }

    /// Path of a crate in `$CARGO_HOME/registry/cache/<origin>/`.
    fn cache_path(&self, name: &str) -> PathBuf {
        let p = self.published(name);
        origin_of(&self.env.cargo_home, &p.file_name())
            .unwrap_or_else(|| panic!("{} not in cargo's cache", p.file_name()))
            .1
    }

    fn ls(&self) -> Vec<Value> {
        match self.env.pkgseed_json(&["ls", "--json"]) {
            Value::Array(v) => v,
            other => panic!("`ls --json` printed no array: {other:#}"),
        }
    }

    /// The daemon's dialable address, from a fresh `status`.
    fn peer(&self) -> String {
        let p = dial_addr(&status(&self.env));
        eprintln!("Helia dials {p}");
        p
    }

    fn helia(
        &self,
        peer: &str,
        cids: &[&str],
        missing: &[&str],
        fetch_secs: u64,
        missing_secs: u64,
        tag: &str,
    ) -> pkgseed_e2e::HeliaResult {
        let out_dir = self.env.work.join("helia").join(tag);
        let r = helia_fetch(&HeliaFetch {
            peer: peer.to_string(),
            cids: cids.iter().map(|s| s.to_string()).collect(),
            expect_missing: missing.iter().map(|s| s.to_string()).collect(),
            out_dir,
            idle_seconds: None,
            timeout_seconds: Some(fetch_secs),
            missing_seconds: Some(missing_secs),
        });
        eprintln!(
            "[helia {tag}] {:.1?}, exit {:?}, lines {:?}",
            r.output.elapsed, r.output.status, r.lines
        );
        r
    }
}

fn ls_find<'a>(ls: &'a [Value], name: &str) -> Option<&'a Value> {
    ls.iter().find(|e| e["name"].as_str() == Some(name))
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || (a.canonicalize().ok().is_some() && a.canonicalize().ok() == b.canonicalize().ok())
}

/// Assert that Helia reported `cid` fetched completely, with exactly `bytes` (JSON line and the file it wrote).
#[track_caller]
fn assert_line_ok(r: &pkgseed_e2e::HeliaResult, out_dir: &Path, cid: &str, bytes: &[u8]) {
    let line = r
        .line(cid)
        .unwrap_or_else(|| panic!("no JSON line for {cid}\n{}", r.output.describe()));
    assert_eq!(
        line["ok"],
        Value::Bool(true),
        "Helia could not fetch {cid}: {line}\n{}",
        r.output.describe()
    );
    assert_eq!(
        line["bytes"].as_u64(),
        Some(bytes.len() as u64),
        "size via Helia for {cid}: {line}"
    );
    assert_eq!(
        line["sha256"].as_str(),
        Some(sha256_hex(bytes).as_str()),
        "sha256 via Helia for {cid}: {line}"
    );
    let got = std::fs::read(out_dir.join(cid))
        .unwrap_or_else(|e| panic!("Helia wrote no file for {cid}: {e}"));
    assert!(
        got == bytes,
        "bytes fetched for {cid} differ from the .crate file ({} vs {} bytes)",
        got.len(),
        bytes.len()
    );
}

/// Assert that a Helia fetch succeeded and every file equals the expected bytes.
#[track_caller]
fn assert_fetched(r: &pkgseed_e2e::HeliaResult, out_dir: &Path, expected: &[(&str, &[u8])]) {
    for (cid, bytes) in expected {
        assert_line_ok(r, out_dir, cid, bytes);
    }
    assert!(r.success(), "Helia fetch failed\n{}", r.output.describe());
}

/// Assert that a Helia run with `--expect-missing` for `cids` found none of them (the root block was not obtainable).
#[track_caller]
fn assert_missing(r: &pkgseed_e2e::HeliaResult, cids: &[&str]) {
    for cid in cids {
        let line = r
            .line(cid)
            .unwrap_or_else(|| panic!("no JSON line for {cid}\n{}", r.output.describe()));
        assert_eq!(
            line["missing"],
            Value::Bool(true),
            "{cid} was obtainable but must not be: {line}"
        );
    }
    assert!(
        r.success(),
        "Helia --expect-missing run did not succeed\n{}",
        r.output.describe()
    );
}

/// Assert that a Helia fetch of `cid` (as `--cid`) failed: the file could not be reassembled.
#[track_caller]
fn assert_fetch_fails(r: &pkgseed_e2e::HeliaResult, cid: &str, forbidden: &[u8]) {
    if let Some(line) = r.line(cid) {
        assert_ne!(
            line["sha256"].as_str(),
            Some(sha256_hex(forbidden).as_str()),
            "{cid}: Helia received the tampered bytes: {line}"
        );
        assert_ne!(
            line["ok"],
            Value::Bool(true),
            "{cid} was fetched completely but must not be: {line}"
        );
    }
    assert!(
        !r.success(),
        "Helia fetch of {cid} should have failed\n{}",
        r.output.describe()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Tests

/// The local registry alone: real `cargo fetch` against two sparse registries puts every `.crate` into
/// `CARGO_HOME/registry/cache/<index dir>/` with sha256 = the index `cksum`. No pkgseed needed.
#[test]
fn local_registry_serves_cargo_fetch() {
    // Names of length 1, 2, 3 and 4+ exercise every sparse index path shape; one mixed-case name checks lowering.
    let world = World::build(
        "registry",
        vec![
            ("public", "q", "0.1.0", vec![]),
            ("public", "qz", "1.2.3", vec![]),
            ("public", "qzx", "0.0.1", vec![]),
            ("public", "Seed_Ling", "0.1.0", vec![]),
            ("private", "inhouse", "0.2.0", vec![]),
        ],
        &[
            Dep::new("q", "0.1", "public"),
            Dep::new("qz", "1", "public"),
            Dep::new("qzx", "=0.0.1", "public"),
            Dep::new("Seed_Ling", "0.1", "public"),
            Dep::new("inhouse", "0.2", "private"),
        ],
    );
    let env = &world.env;
    let cached = cached_crates(&env.cargo_home);
    eprintln!("cached: {cached:#?}");
    for p in world.reg.published() {
        let (origin, path) = origin_of(&env.cargo_home, &p.file_name())
            .unwrap_or_else(|| panic!("{} not in registry/cache: {cached:?}", p.file_name()));
        assert!(
            origin.starts_with("127.0.0.1-"),
            "unexpected index dir name {origin}"
        );
        let expected_origin = if p.registry == "public" {
            &world.public_origin
        } else {
            world.private_origin.as_ref().unwrap()
        };
        assert_eq!(
            &origin,
            expected_origin,
            "{} landed in the wrong index dir",
            p.file_name()
        );
        assert_eq!(
            sha256_file(&path),
            p.cksum,
            "{} sha256 != index cksum",
            path.display()
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            p.bytes,
            "{} differs from the served bytes",
            path.display()
        );
        // The index dir of the same name exists (that is what pkgseed calls the origin).
        assert!(
            env.cargo_home.join("registry/index").join(&origin).is_dir(),
            "no registry/index/{origin} next to registry/cache/{origin}"
        );
    }
    assert_eq!(
        cached.len(),
        world.reg.published().len(),
        "unexpected extra .crate files: {cached:?}"
    );
    let reqs = world.reg.server().requests();
    for r in &reqs {
        eprintln!("  {} {} -> {}", r.method, r.path, r.status);
    }
    assert!(reqs
        .iter()
        .any(|r| r.path == "/public/config.json" && r.status == 200));
    assert!(reqs
        .iter()
        .any(|r| r.path == "/private/config.json" && r.status == 200));
}

/// Steps a–g of the brief on one shared setup.
#[test]
fn cargo_slice() {
    pkgseed_e2e::pkgseed_bin(); // fail fast and clearly when the binary is absent
    let large_blob = pkgseed_e2e::registry::incompressible(3 * MIB, "seedling-large");
    let mid_blob = pkgseed_e2e::registry::incompressible(MIB + MIB / 2, "seedling-mid");
    // a. registries, crates, cargo fetch, origins, config.
    let mut w = World::build(
        "slice",
        vec![
            ("public", "seedling", "0.1.0", vec![]),
            (
                "public",
                "seedling-mid",
                "0.1.0",
                vec![("data.bin", mid_blob)],
            ),
            (
                "public",
                "seedling-large",
                "0.1.0",
                vec![("data.bin", large_blob)],
            ),
            ("public", "sprout", "0.1.0", vec![]),
            ("private", "inhouse", "0.1.0", vec![]),
        ],
        &[
            Dep::new("seedling", "0.1", "public"),
            Dep::new("seedling-mid", "0.1", "public"),
            Dep::new("seedling-large", "0.1", "public"),
            Dep::new("inhouse", "0.1", "private"),
        ],
    );
    let private_origin = w.private_origin.clone().unwrap();
    for n in ["seedling-mid", "seedling-large"] {
        let size = w.published(n).bytes.len();
        eprintln!("{n}: {size} bytes");
    }
    assert!(w.published("seedling").bytes.len() < MIB);
    let mid_len = w.published("seedling-mid").bytes.len() as u64;
    assert!(
        mid_len > MIB as u64 && mid_len <= CHECKSUM_CID_MAX,
        "seedling-mid is {mid_len} bytes"
    );
    assert!(w.published("seedling-large").bytes.len() as u64 > CHECKSUM_CID_MAX);

    let mut daemon = Daemon::start(&w.env, "daemon-1");
    let st = wait_first_scan(&w.env, FIRST_SCAN_TIMEOUT);
    eprintln!("status after first scan: {st:#}");

    let public_seeded = ["seedling", "seedling-mid", "seedling-large"];
    // Root CIDs from `pkgseed cid` for every crate in the cache (public and private).
    let mut root_cid: BTreeMap<String, String> = BTreeMap::new();
    {
        let names = ["seedling", "seedling-mid", "seedling-large", "inhouse"];
        let paths: Vec<PathBuf> = names.iter().map(|n| w.cache_path(n)).collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let cids = w.env.pkgseed_cids(None, &refs);
        for (n, c) in names.iter().zip(cids) {
            root_cid.insert(n.to_string(), c);
        }
        eprintln!("pkgseed cid: {root_cid:#?}");
    }
    let mut steps = Steps::new();

    // b. ls and status.
    steps.run(
        "b: ls lists exactly the public crates; status lists both origins",
        || {
            let ls = w.ls();
            eprintln!("ls: {ls:#?}");
            let names: BTreeSet<String> = ls
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["name"].as_str().unwrap_or("?"),
                        e["version"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let expected: BTreeSet<String> =
                public_seeded.iter().map(|n| format!("{n} 0.1.0")).collect();
            assert_eq!(
                names, expected,
                "ls --json must list exactly the public crates (inhouse is private)"
            );
            assert!(
                ls_find(&ls, "inhouse").is_none(),
                "private crate listed by ls"
            );
            for n in public_seeded {
                let e = ls_find(&ls, n).unwrap();
                let p = w.published(n);
                let path = w.cache_path(n);
                assert_eq!(e["ecosystem"], "cargo", "{n}: {e}");
                assert_eq!(e["version"], "0.1.0", "{n}: {e}");
                assert!(
                    same_path(Path::new(e["path"].as_str().unwrap_or("")), &path),
                    "{n}: path {} != {}",
                    e["path"],
                    path.display()
                );
                assert_eq!(
                    e["size"].as_u64(),
                    Some(p.bytes.len() as u64),
                    "{n}: size: {e}"
                );
                assert_eq!(
                    e["registry_checksum"].as_str(),
                    Some(format!("sha256:{}", sha256_file(&path)).as_str()),
                    "{n}: {e}"
                );
                assert_eq!(
                    e["origin"].as_str(),
                    Some(w.public_origin.as_str()),
                    "{n}: origin: {e}"
                );
                assert_eq!(
                    e["cid"].as_str(),
                    Some(root_cid[n].as_str()),
                    "{n}: ls cid != `pkgseed cid`: {e}"
                );
                let size = p.bytes.len() as u64;
                if size <= CHECKSUM_CID_MAX {
                    assert_eq!(
                        e["checksum_cid"].as_str(),
                        Some(raw_sha256_cid(&p.cksum).as_str()),
                        "{n}: checksum_cid: {e}"
                    );
                } else {
                    assert!(
                        e["checksum_cid"].is_null(),
                        "{n} is > 2 MiB, checksum_cid must be null: {e}"
                    );
                }
                if size <= MIB as u64 {
                    assert_eq!(
                        e["cid"], e["checksum_cid"],
                        "{n} ≤ 1 MiB: root CID and checksum CID coincide: {e}"
                    );
                }
            }
            let st = status(&w.env);
            eprintln!("status: {st:#}");
            assert!(
                st["peer_id"].as_str().is_some_and(|s| !s.is_empty()),
                "peer_id: {st}"
            );
            assert!(
                st["listen_addrs"].as_array().is_some_and(|a| !a.is_empty()),
                "listen_addrs: {st}"
            );
            assert_eq!(st["paused"], false, "paused: {st}");
            assert_eq!(st["first_scan_done"], true);
            let total: u64 = public_seeded
                .iter()
                .map(|n| w.published(n).bytes.len() as u64)
                .sum();
            assert_eq!(
                st["ecosystems"]["cargo"]["artifacts"].as_u64(),
                Some(3),
                "ecosystems.cargo.artifacts: {st}"
            );
            assert_eq!(
                st["ecosystems"]["cargo"]["bytes"].as_u64(),
                Some(total),
                "ecosystems.cargo.bytes: {st}"
            );
            let origins = st["origins"]
                .as_array()
                .unwrap_or_else(|| panic!("status.origins missing: {st}"));
            let find = |id: &str| {
                origins
                    .iter()
                    .find(|o| o["origin"].as_str() == Some(id))
                    .cloned()
            };
            let public = find(&w.public_origin)
                .unwrap_or_else(|| panic!("public origin missing from {origins:#?}"));
            assert_eq!(public["ecosystem"], "cargo", "{public}");
            assert_eq!(public["provenance"], "public", "{public}");
            assert_eq!(public["artifacts"].as_u64(), Some(3), "{public}");
            let private = find(&private_origin)
                .unwrap_or_else(|| panic!("private origin missing from {origins:#?}"));
            assert_eq!(private["ecosystem"], "cargo", "{private}");
            assert_eq!(
                private["provenance"], "private",
                "unmarked alternative registry must be private: {private}"
            );
            assert_eq!(private["artifacts"].as_u64(), Some(1), "{private}");
        },
    );

    // b'. CIDs against the JS reference importer, both profiles.
    steps.run("b: CIDs equal ipfs-unixfs-importer (both profiles)", || {
        if !js_importer_installed() {
            eprintln!("SKIP: tests/js/node_modules/ipfs-unixfs-importer not installed");
            return;
        }
        let names = ["seedling", "seedling-mid", "seedling-large", "inhouse"];
        let paths: Vec<PathBuf> = names.iter().map(|n| w.cache_path(n)).collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        for profile in ["unixfs-v1-2025", "unixfs-v0-2015"] {
            let ours = w.env.pkgseed_cids(Some(profile), &refs);
            let reference = js_unixfs_cids(profile, &refs);
            for ((n, a), b) in names.iter().zip(&ours).zip(&reference) {
                eprintln!("{profile} {n}: pkgseed {a} reference {b}");
            }
            assert_eq!(
                ours, reference,
                "{profile}: pkgseed cid vs ipfs-unixfs-importer for {names:?}"
            );
            if profile == "unixfs-v1-2025" {
                let default: Vec<String> = names.iter().map(|n| root_cid[*n].clone()).collect();
                assert_eq!(
                    default, ours,
                    "`pkgseed cid` default profile must be unixfs-v1-2025"
                );
            }
        }
    });

    // c. Helia fetches public crates by root and checksum CID; the private one is not obtainable.
    steps.run(
        "c: Helia fetches public crates by root and checksum CID",
        || {
            let peer = w.peer();
            let ls = w.ls();
            let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
            for n in public_seeded {
                let bytes = std::fs::read(w.cache_path(n)).unwrap();
                expected.push((root_cid[n].clone(), bytes.clone()));
                if let Some(c) = ls_find(&ls, n).and_then(|e| e["checksum_cid"].as_str()) {
                    if c != root_cid[n] {
                        expected.push((c.to_string(), bytes));
                    }
                } else if (bytes.len() as u64) <= CHECKSUM_CID_MAX {
                    // Fetch the checksum CID computed from the index cksum even when ls did not list it.
                    expected.push((raw_sha256_cid(&w.published(n).cksum), bytes));
                }
            }
            let cids: Vec<&str> = expected.iter().map(|(c, _)| c.as_str()).collect();
            let r = w.helia(&peer, &cids, &[], 60, 5, "public");
            let exp: Vec<(&str, &[u8])> = expected
                .iter()
                .map(|(c, b)| (c.as_str(), b.as_slice()))
                .collect();
            assert_fetched(&r, &w.env.work.join("helia/public"), &exp);
            let st = status(&w.env);
            let total: u64 = public_seeded
                .iter()
                .map(|n| w.published(n).bytes.len() as u64)
                .sum();
            eprintln!(
                "served: blocks {} bytes {}",
                st["blocks_served"], st["bytes_served"]
            );
            assert!(
                st["blocks_served"].as_u64().unwrap_or(0) > 0,
                "blocks_served did not grow: {st}"
            );
            assert!(
                st["bytes_served"].as_u64().unwrap_or(0) >= total,
                "bytes_served < bytes fetched ({total}): {st}"
            );
            // "Served most": every fetched crate with at least its own size served, and never the private one.
            let most = st["most_served"].as_array().cloned().unwrap_or_default();
            for n in public_seeded {
                let size = w.published(n).bytes.len() as u64;
                let entry = most.iter().find(|e| e["name"].as_str() == Some(n));
                assert!(
                    entry.is_some_and(|e| e["bytes_served"].as_u64().unwrap_or(0) >= size),
                    "most_served lacks {n} with >= {size} bytes: {most:?}"
                );
            }
            assert!(
                most.iter().all(|e| e["name"].as_str() != Some("inhouse")),
                "a private crate in most_served: {most:?}"
            );
        },
    );
    steps.run("c: the private crate is not obtainable", || {
        let peer = w.peer();
        let private = w.published("inhouse");
        let checksum = raw_sha256_cid(&private.cksum);
        // For a crate ≤ 1 MiB both CIDs coincide; ask once then.
        let mut missing = vec![root_cid["inhouse"].as_str()];
        if checksum != root_cid["inhouse"] {
            missing.push(checksum.as_str());
        }
        // Positive control in the same run: a public crate is obtainable from the same connection.
        let control = root_cid["seedling"].clone();
        let r = w.helia(&peer, &[&control], &missing, 30, 5, "private");
        let control_bytes = std::fs::read(w.cache_path("seedling")).unwrap();
        assert_line_ok(
            &r,
            &w.env.work.join("helia/private"),
            &control,
            &control_bytes,
        );
        assert_missing(&r, &missing);
    });

    // c'. The DHT, over the real protocol: a js-libp2p Kademlia client sends GET_PROVIDERS to the daemon.
    steps.run(
        "c: the DHT names us for public root and checksum CIDs, nobody for the private crate",
        || {
            let st = status(&w.env);
            let me = st["peer_id"].as_str().expect("peer_id").to_string();
            let peer = dial_addr(&st);
            let ls = w.ls();
            let mut public: BTreeSet<String> = BTreeSet::new();
            for n in public_seeded {
                let e = ls_find(&ls, n).unwrap_or_else(|| panic!("{n} not in ls: {ls:#?}"));
                public.extend(e["cid"].as_str().map(str::to_string));
                public.extend(e["checksum_cid"].as_str().map(str::to_string));
            }
            let private: BTreeSet<String> = [
                root_cid["inhouse"].clone(),
                raw_sha256_cid(&w.published("inhouse").cksum),
            ]
            .into();
            assert!(public.is_disjoint(&private), "public {public:?} / private {private:?}");
            // Every public key is handed to Kademlia (stored as our provider record) once the queue is empty.
            let mut last = Value::Null;
            let settled = poll(Duration::from_secs(20), Duration::from_millis(200), || {
                last = status(&w.env);
                (last["announce_queue_len"].as_u64() == Some(0)
                    && last["announced_keys"].as_u64() == Some(public.len() as u64))
                .then_some(())
            });
            assert!(
                settled.is_some(),
                "announced_keys != {} distinct public root+checksum CIDs ({public:?}) with an empty queue \
                 within 20 s: announced_keys {}, announce_queue_len {}",
                public.len(),
                last["announced_keys"],
                last["announce_queue_len"]
            );
            let cids: Vec<&str> = public.iter().chain(&private).map(|s| s.as_str()).collect();
            let r = dht_find_providers(&peer, &cids, 20);
            eprintln!(
                "[dht] {:.1?}, exit {:?}, lines {:?}",
                r.output.elapsed, r.output.status, r.lines
            );
            let mut wrong = Vec::new();
            for c in &public {
                let got = r.providers(c, &me);
                if got != [me.clone()] {
                    wrong.push(format!("public {c}: providers {got:?}, expected [{me}]"));
                }
            }
            for c in &private {
                let got = r.providers(c, &me);
                if !got.is_empty() {
                    wrong.push(format!("private {c}: providers {got:?}, expected none"));
                }
            }
            assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), r.output.describe());
            assert!(
                r.output.success(),
                "dht-providers failed\n{}",
                r.output.describe()
            );
        },
    );

    // g. Pause / resume.
    steps.run("g: pause stops serving, resume restarts it", || {
        let peer = w.peer();
        let cid = root_cid["seedling"].clone();
        let bytes = w.published("seedling").bytes.clone();
        w.env
            .pkgseed_run(&["pause"])
            .expect_success("pkgseed pause");
        let paused = poll(Duration::from_secs(2), Duration::from_millis(100), || {
            (status(&w.env)["paused"] == true).then_some(())
        });
        assert!(
            paused.is_some(),
            "status.paused not true within 2 s of `pause`: {}",
            status(&w.env)
        );
        let r = w.helia(&peer, &[], &[&cid], 30, 5, "paused");
        assert_missing(&r, &[&cid]);
        w.env
            .pkgseed_run(&["resume"])
            .expect_success("pkgseed resume");
        let resumed = poll(Duration::from_secs(2), Duration::from_millis(100), || {
            (status(&w.env)["paused"] == false).then_some(())
        });
        assert!(
            resumed.is_some(),
            "status.paused still true after `resume`: {}",
            status(&w.env)
        );
        let r = w.helia(&peer, &[&cid], &[], 30, 5, "resumed");
        assert_fetched(&r, &w.env.work.join("helia/resumed"), &[(&cid, &bytes)]);
    });

    steps.run(
        "g: paused, the DHT names nobody for our keys; resume restores it",
        || {
            let st = status(&w.env);
            let me = st["peer_id"].as_str().expect("peer_id").to_string();
            let peer = dial_addr(&st);
            let cid = root_cid["seedling"].clone();
            w.env
                .pkgseed_run(&["pause"])
                .expect_success("pkgseed pause");
            let paused = poll(Duration::from_secs(2), Duration::from_millis(100), || {
                (status(&w.env)["paused"] == true).then_some(())
            });
            // A fresh client (never connected before) asks while paused; resume before judging, so a failure here
            // does not leave the daemon paused for the later steps.
            let r = dht_find_providers(&peer, &[&cid], 20);
            w.env
                .pkgseed_run(&["resume"])
                .expect_success("pkgseed resume");
            let resumed = poll(Duration::from_secs(2), Duration::from_millis(100), || {
                (status(&w.env)["paused"] == false).then_some(())
            });
            assert!(paused.is_some(), "status.paused not true after `pause`");
            assert!(resumed.is_some(), "status.paused still true after `resume`");
            let while_paused = r.providers(&cid, &me);
            assert!(
                while_paused.is_empty(),
                "paused, yet GET_PROVIDERS named {while_paused:?} for {cid}\n{}",
                r.output.describe()
            );
            let r = dht_find_providers(&peer, &[&cid], 20);
            let after = r.providers(&cid, &me);
            assert_eq!(
                after,
                std::slice::from_ref(&me),
                "after resume\n{}",
                r.output.describe()
            );
        },
    );

    // d. Watcher: a new dependency fetched while the daemon runs shows up within 3 s.
    steps.run("d: a crate fetched while running appears in ls within 3 s", || {
        w.project.add_dep(Dep::new("sprout", "0.1", "public"));
        let t0 = Instant::now();
        w.project.fetch(&w.env.cargo_home, &w.env.home);
        let t1 = Instant::now();
        let path = w.cache_path("sprout");
        let found = poll(Duration::from_secs(10), Duration::from_millis(100), || {
            let ls = w.ls();
            ls_find(&ls, "sprout").cloned()
        });
        let latency = t1.elapsed();
        match &found {
            Some(_) => eprintln!(
                "WATCHER LATENCY: sprout in ls {:.0?} after cargo fetch finished ({:.0?} after it started)",
                latency,
                t0.elapsed()
            ),
            None => eprintln!("WATCHER LATENCY: sprout not in ls 10 s after cargo fetch"),
        }
        let e = found.unwrap_or_else(|| panic!("sprout never appeared in ls (waited 10 s); ls: {:#?}", w.ls()));
        assert!(latency <= Duration::from_millis(3000), "sprout appeared only after {latency:?} (limit 3 s)");
        assert_eq!(e["cid"].as_str(), Some(w.env.pkgseed_cids(None, &[&path])[0].as_str()), "sprout: {e}");
        assert_eq!(e["origin"].as_str(), Some(w.public_origin.as_str()), "sprout: {e}");
    });

    // f. Restart with the same data dir: no rehash, same ls.
    steps.run("f: restart needs no rehash and keeps ls", || {
        let mut before = w.ls();
        // No DHT peer so far: every key was held with only its local record (docs/bitswap.md, "No DHT peer, no
        // query"), so nothing is in the provide history yet. A loopback Kademlia network now connects: the held
        // keys go out to it, and the provides that reach it are what the history keeps.
        let st = status(&w.env);
        let keys_held = st["announced_keys"].as_u64().expect("announced_keys");
        assert!(
            keys_held >= before.len() as u64,
            "{keys_held} keys for {} artifacts",
            before.len()
        );
        let sink = dht_sink_collect(
            &dial_addr(&st),
            st["peer_id"].as_str().expect("peer_id"),
            keys_held,
            2,
            90,
        );
        assert_eq!(
            (sink["keys"].as_u64(), sink["done"].as_bool()),
            (Some(keys_held), Some(true)),
            "held keys not provided once DHT peers appeared: {sink}"
        );
        daemon.stop();
        // The node saved each provided key's last-provided time (header line + 12 bytes per key), so the restart
        // re-provides keys by age instead of all at once (docs/bitswap.md, "DHT and announcements").
        let history = std::fs::read(w.env.data_dir.join("provided"))
            .expect("provide history saved at shutdown");
        let header = b"pkgseed provided v1\n";
        assert!(history.starts_with(header), "provide history header");
        let keys = (history.len() - header.len()) / 12;
        assert_eq!(
            (history.len() - header.len()) % 12,
            0,
            "provide history entries"
        );
        assert!(
            keys >= before.len(),
            "{keys} provided keys saved for {} artifacts",
            before.len()
        );
        daemon = Daemon::start(&w.env, "daemon-2");
        let st = wait_first_scan(&w.env, FIRST_SCAN_TIMEOUT);
        eprintln!("status after restart: {st:#}");
        // Every key was provided minutes ago: none is queued again, all are provided (restored locally).
        let restored = poll(Duration::from_secs(10), Duration::from_millis(100), || {
            let st = pkgseed_e2e::status(&w.env);
            (st["announced_keys"].as_u64() >= Some(keys as u64)).then_some(st)
        })
        .unwrap_or_else(|| {
            panic!(
                "the provided keys were not restored: {}",
                pkgseed_e2e::status(&w.env)
            )
        });
        assert_eq!(
            restored["announce_queue_len"].as_u64(),
            Some(0),
            "recently provided keys queued again: {restored}"
        );
        assert_eq!(
            st["files_hashed"].as_u64(),
            Some(0),
            "restart re-hashed files: {st}"
        );
        let mut after = w.ls();
        let key = |v: &Value| v["path"].as_str().unwrap_or("").to_string();
        before.sort_by_key(key);
        after.sort_by_key(key);
        assert_eq!(before, after, "ls changed across a restart");
    });

    // e. Tamper and delete.
    steps.run(
        "e: a crate overwritten in place is not served and leaves ls",
        || {
            let peer = w.peer();
            let path = w.cache_path("seedling");
            let old = std::fs::read(&path).unwrap();
            let tampered: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
            overwrite_in_place(&path, 0, &tampered, false);
            let cid = root_cid["seedling"].clone();
            // One raw block: its root block must not be obtainable.
            let control = root_cid["seedling-mid"].clone();
            let r = w.helia(&peer, &[&control], &[&cid], 30, 5, "tampered");
            let mid = w.published("seedling-mid").bytes.clone();
            assert_line_ok(&r, &w.env.work.join("helia/tampered"), &control, &mid);
            assert_missing(&r, &[&cid]);
            wait_gone(&w, "seedling", Duration::from_secs(5));
        },
    );
    steps.run(
        "e: a multi-block crate tampered mid-file (mtime kept) is not served",
        || {
            let peer = w.peer();
            let path = w.cache_path("seedling-large");
            let old = std::fs::read(&path).unwrap();
            // Change bytes inside the second 1 MiB chunk, keep size and mtime.
            let at = MIB + 4096;
            let patch: Vec<u8> = old[at..at + 4096].iter().map(|b| !b).collect();
            overwrite_in_place(&path, at as u64, &patch, true);
            let cid = root_cid["seedling-large"].clone();
            // The root node may still be served (it does not come from the file); the tampered leaf must not, so the
            // file cannot be reassembled.
            let control = root_cid["seedling-mid"].clone();
            let r = w.helia(&peer, &[&control, &cid], &[], 15, 5, "tampered-large");
            let mid = w.published("seedling-mid").bytes.clone();
            assert_line_ok(&r, &w.env.work.join("helia/tampered-large"), &control, &mid);
            let mut now = old.clone();
            now[at..at + 4096].copy_from_slice(&patch);
            assert_fetch_fails(&r, &cid, &now);
            wait_gone(&w, "seedling-large", Duration::from_secs(5));
        },
    );
    steps.run("e: a deleted crate leaves ls", || {
        let path = w.cache_path("sprout");
        let listed = poll(Duration::from_secs(2), Duration::from_millis(100), || {
            ls_find(&w.ls(), "sprout").cloned()
        });
        assert!(
            listed.is_some(),
            "precondition: sprout must be listed before deletion (see step d)"
        );
        std::fs::remove_file(&path).unwrap();
        wait_gone(&w, "sprout", Duration::from_secs(5));
    });
    // The untouched crate is still served after all that.
    steps.run("e: an untouched crate is still served", || {
        let peer = w.peer();
        let cid = root_cid["seedling-mid"].clone();
        let bytes = w.published("seedling-mid").bytes.clone();
        let r = w.helia(&peer, &[&cid], &[], 30, 5, "untouched");
        assert_fetched(&r, &w.env.work.join("helia/untouched"), &[(&cid, &bytes)]);
    });

    assert!(
        daemon.is_running(),
        "daemon died during the test\n{}",
        daemon.logs()
    );
    steps.finish();
    drop(daemon);
}

/// h. Helia connects, idles 30 s, then fetches: must succeed (rust-ipfs's bitswap lost replies after Helia reset
/// its idle outbound stream).
#[test]
fn idle_connection_fetch() {
    pkgseed_e2e::pkgseed_bin();
    let blob = pkgseed_e2e::registry::incompressible(MIB + MIB / 4, "idle");
    let w = World::build(
        "idle",
        vec![("public", "idler", "0.1.0", vec![("data.bin", blob)])],
        &[Dep::new("idler", "0.1", "public")],
    );
    let _daemon = Daemon::start(&w.env, "daemon-idle");
    wait_first_scan(&w.env, FIRST_SCAN_TIMEOUT);
    let path = w.cache_path("idler");
    let cid = w.env.pkgseed_cids(None, &[&path])[0].clone();
    let listed = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        ls_find(&w.ls(), "idler").cloned()
    });
    assert!(listed.is_some(), "idler not seeded; ls: {:#?}", w.ls());
    let peer = dial_addr(&status(&w.env));
    let out_dir = w.env.work.join("helia/idle");
    let r = helia_fetch(&HeliaFetch {
        peer,
        cids: vec![cid.clone()],
        expect_missing: vec![],
        out_dir: out_dir.clone(),
        idle_seconds: Some(30),
        timeout_seconds: Some(30),
        missing_seconds: None,
    });
    eprintln!("[helia idle] {:.1?}, lines {:?}", r.output.elapsed, r.lines);
    let bytes = std::fs::read(&path).unwrap();
    assert_fetched(&r, &out_dir, &[(&cid, &bytes)]);
}

// ---------------------------------------------------------------------------------------------------------------

/// Write `bytes` at `offset` into an existing file without truncating it; optionally restore the mtime.
fn overwrite_in_place(path: &Path, offset: u64, bytes: &[u8], keep_mtime: bool) {
    use std::io::{Seek, SeekFrom, Write};
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    if keep_mtime {
        f.set_modified(mtime).unwrap();
    }
    drop(f);
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        meta.len(),
        "size must not change"
    );
}

#[track_caller]
fn wait_gone(w: &World, name: &str, timeout: Duration) {
    let t = Instant::now();
    let gone = poll(timeout, Duration::from_millis(100), || {
        ls_find(&w.ls(), name).is_none().then_some(())
    });
    match gone {
        Some(()) => eprintln!("{name} left ls after {:.1?}", t.elapsed()),
        None => panic!(
            "{name} still in ls {timeout:?} after the change: {:#}",
            ls_find(&w.ls(), name).unwrap()
        ),
    }
}
