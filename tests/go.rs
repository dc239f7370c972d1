//! End-to-end: the Go module cache with the REAL `go mod download`.
//!
//! * Public: a GOPROXY served on 127.0.0.1 (`<module>/@v/list`, `.info`, `.mod`, `.zip`; the zips are built here in
//!   Go's layout `<module>@<version>/...`; Go computes `.ziphash` itself on download). There is no public checksum
//!   database here (`GOSUMDB=off`), so the module is proven public by the user's mark of its origin,
//!   `go:<proxy URL>`, in the pkgseed config.
//! * Private: `seed.private/priv.git`, matched by `GOPRIVATE=seed.private` (so `GONOPROXY` and `GONOSUMDB` too): Go
//!   fetches it DIRECTLY with git (origin `go:direct`); a `url.<file://…>.insteadOf` rule in the temp home's
//!   `.gitconfig` points its https URL at a local git repository, so nothing leaves the machine.
//! * Settings are written with the real `go env -w` into Go's env file under the temp home, which is where the daemon
//!   (same HOME) reads them; the test removes any inherited `GO*` variables from its own environment first so the
//!   daemon and `go` see the same settings.
//!
//! What this proves: the public module zip is seeded with registry checksum = the `h1:` Go wrote in `.ziphash`, a
//! checksum CID keyed by the zip's sha256 and a root CID equal to ipfs-unixfs-importer's; the GOPRIVATE module is
//! absent from `ls` and `go:direct` is private in `status.origins`; a zip truncated in place (contents no longer
//! match `.ziphash`) and Go's in-flight download names (`<v>.zip<random>.tmp`, `.partial`) are not seeded;
//! `go clean -modcache` (Go's only eviction; it handles the 0444 files) withdraws the module; Helia fetches the
//! public zip by root CID and by checksum CID with exact bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pkgseed_e2e::http::serve_dir;
use pkgseed_e2e::jvmgo::{filler, stored_zip};
use pkgseed_e2e::langpkg::{self, origin_status, require_tool, Steps};
use pkgseed_e2e::{
    js_unixfs_cids, raw_sha256_cid, run, sha256_file, sha256_hex, wait_first_scan, Daemon, TestEnv,
};

/// Go settings that would override the env file the test writes.
const GO_VARS: &[&str] = &[
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOSUMDB",
    "GOMODCACHE",
    "GOPATH",
    "GOENV",
    "GOFLAGS",
    "GOINSECURE",
    "GOTOOLCHAIN",
    "GO111MODULE",
    "GIT_CONFIG_GLOBAL",
];

/// Publishes `<module> v0.1.0` in the proxy dir `srv`: list, info, mod and a zip with `filler_len` bytes of filler.
fn publish(srv: &Path, module: &str, filler_len: usize, seed: u32) -> Vec<u8> {
    let dir = srv.join(module).join("@v");
    std::fs::create_dir_all(&dir).unwrap();
    let gomod = format!("module {module}\n\ngo 1.16\n");
    let pkg = module.rsplit('/').next().unwrap();
    let source = format!("package {pkg}\n\nconst X = 1\n");
    let prefix = format!("{module}@v0.1.0/");
    let zip = stored_zip(&[
        (&format!("{prefix}go.mod"), gomod.as_bytes()),
        (&format!("{prefix}{pkg}.go"), source.as_bytes()),
        (&format!("{prefix}data.txt"), &filler(seed, filler_len)),
    ]);
    std::fs::write(dir.join("list"), "v0.1.0\n").unwrap();
    std::fs::write(
        dir.join("v0.1.0.info"),
        "{\"Version\":\"v0.1.0\",\"Time\":\"2024-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("v0.1.0.mod"), gomod).unwrap();
    std::fs::write(dir.join("v0.1.0.zip"), &zip).unwrap();
    zip
}

#[track_caller]
fn ok(cmd: &mut Command, what: &str) -> String {
    run(cmd, Duration::from_secs(180))
        .expect_success(what)
        .stdout
}

#[test]
fn go() {
    require_tool("git", "git");
    let go_ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        go_ok,
        "`go` is required by this test and could not be run: install the Debian package `golang-go` \
         (scripts/setup.sh does)"
    );
    // The daemon inherits this process's environment: the env file must be the only source of Go settings.
    for v in GO_VARS {
        std::env::remove_var(v);
    }
    let env = TestEnv::new("go");
    let srv = env.work.join("proxy");
    let pub_zip = publish(&srv, "seed.public/pub", 1_500_000, 1);
    publish(&srv, "seed.public/half", 40_000, 2);
    let proxy = serve_dir(&srv);
    let proxy_url = proxy.base_url();

    // The private module: a local git repository reached through an insteadOf rewrite of its https URL.
    let priv_src = env.work.join("privsrc");
    std::fs::create_dir_all(&priv_src).unwrap();
    std::fs::write(
        priv_src.join("go.mod"),
        "module seed.private/priv.git\n\ngo 1.16\n",
    )
    .unwrap();
    std::fs::write(priv_src.join("priv.go"), "package priv\n\nconst Y = 2\n").unwrap();
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.current_dir(&priv_src)
            .args(args)
            .env("HOME", &env.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CONFIG_HOME");
        ok(&mut c, &format!("git {}", args.join(" ")));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.email=t@t",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "init",
    ]);
    git(&["tag", "v0.1.0"]);
    git(&[
        "config",
        "--global",
        &format!("url.file://{}.insteadOf", priv_src.display()),
        "https://seed.private/priv",
    ]);

    let go_cmd = |dir: &Path, args: &[&str]| {
        let mut c = Command::new("go");
        c.current_dir(dir)
            .args(args)
            .env("HOME", &env.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME");
        c
    };
    let project = env.work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    ok(
        &mut go_cmd(
            &project,
            &[
                "env",
                "-w",
                &format!("GOPROXY={proxy_url}"),
                "GOSUMDB=off",
                "GOPRIVATE=seed.private",
            ],
        ),
        "go env -w",
    );
    let env_file = env.home.join(".config/go/env");
    assert!(
        std::fs::read_to_string(&env_file).is_ok_and(|t| t.contains("GOPRIVATE=seed.private")),
        "go env -w wrote no {}",
        env_file.display()
    );
    std::fs::write(
        project.join("go.mod"),
        "module consumer\n\ngo 1.16\n\nrequire (\n\tseed.public/pub v0.1.0\n\tseed.public/half v0.1.0\n\
         \tseed.private/priv.git v0.1.0\n)\n",
    )
    .unwrap();
    ok(
        &mut go_cmd(&project, &["mod", "download"]),
        "go mod download",
    );
    let modcache = PathBuf::from(
        ok(
            &mut go_cmd(&project, &["env", "GOMODCACHE"]),
            "go env GOMODCACHE",
        )
        .trim(),
    );
    assert_eq!(
        modcache,
        env.home.join("go/pkg/mod"),
        "unexpected GOMODCACHE"
    );
    let zip_of = |module: &str| {
        modcache
            .join("cache/download")
            .join(module)
            .join("@v/v0.1.0.zip")
    };
    for m in [
        "seed.public/pub",
        "seed.public/half",
        "seed.private/priv.git",
    ] {
        assert!(zip_of(m).is_file(), "go left no {}", zip_of(m).display());
        assert!(
            zip_of(m).with_extension("ziphash").is_file(),
            "go left no .ziphash for {m}"
        );
    }
    let pub_path = zip_of("seed.public/pub");
    assert_eq!(
        std::fs::read(&pub_path).unwrap(),
        pub_zip,
        "go stored other bytes than the proxy served"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| !r.path.contains("seed.private")),
        "the GOPRIVATE module went through the proxy: {:?}",
        proxy.requests()
    );

    // Partial downloads: Go's in-flight names next to the public zip, and a zip truncated in place (cache files are
    // read-only: make it writable first; root may write anyway).
    let at_v = pub_path.parent().unwrap().to_path_buf();
    std::fs::write(at_v.join("v0.1.0.zip4038123.tmp"), &pub_zip).unwrap();
    std::fs::write(at_v.join("v0.1.0.zip.partial"), &pub_zip[..1000]).unwrap();
    let half_path = zip_of("seed.public/half");
    let half = std::fs::read(&half_path).unwrap();
    let mut perm = std::fs::metadata(&half_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&half_path, perm).unwrap();
    std::fs::write(&half_path, &half[..half.len() / 2]).unwrap();

    let public_origin = format!("go:{proxy_url}");
    env.write_pkgseed_config(&[&public_origin], &[]);
    let _daemon = Daemon::start(&env, "go");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();
    let mut root_cid = String::new();

    steps.run(
        "public module zip seeded: h1 registry checksum, checksum CID, CID = reference",
        || {
            let e = langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(30));
            assert_eq!(e["ecosystem"], "go", "{e}");
            assert_eq!(
                (e["name"].as_str(), e["version"].as_str()),
                (Some("seed.public/pub"), Some("v0.1.0")),
                "{e}"
            );
            assert_eq!(e["origin"].as_str(), Some(public_origin.as_str()), "{e}");
            let ziphash = std::fs::read_to_string(pub_path.with_extension("ziphash")).unwrap();
            assert!(ziphash.starts_with("h1:"), "{ziphash}");
            assert_eq!(e["registry_checksum"].as_str(), Some(ziphash.trim()), "{e}");
            let sha = sha256_file(&pub_path);
            assert_eq!(
                e["checksum_cid"].as_str(),
                Some(raw_sha256_cid(&sha).as_str()),
                "{e}"
            );
            let reference = js_unixfs_cids("unixfs-v1-2025", &[&pub_path]);
            assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
            root_cid = reference[0].clone();
            let o = origin_status(&env, &public_origin);
            assert_eq!(o["provenance"], "public", "{o}");
        },
    );

    steps.run("GOPRIVATE module absent; go:direct private", || {
        let ls = langpkg::ls(&env);
        assert!(
            langpkg::ls_by_path(&ls, &zip_of("seed.private/priv.git")).is_none(),
            "private module seeded: {ls:#?}"
        );
        assert!(
            !ls.iter().any(|e| e["name"] == "seed.private/priv.git"),
            "{ls:#?}"
        );
        let o = origin_status(&env, "go:direct");
        assert_eq!(o["provenance"], "private", "{o}");
    });

    steps.run(
        "truncated zip and in-flight download files not seeded",
        || {
            let ls = langpkg::ls(&env);
            let go: Vec<&str> = ls
                .iter()
                .filter(|e| e["ecosystem"] == "go")
                .filter_map(|e| e["path"].as_str())
                .collect();
            assert_eq!(
                go,
                [pub_path.to_str().unwrap()],
                "only the public zip may be seeded: {ls:#?}"
            );
        },
    );

    steps.run(
        "Helia fetches the public zip by root and checksum CID",
        || {
            let checksum_cid = raw_sha256_cid(&sha256_hex(&pub_zip));
            assert_ne!(root_cid, "", "no root CID from the first step");
            langpkg::assert_helia_fetches(&env, &[root_cid.clone(), checksum_cid], &pub_zip);
        },
    );

    steps.run("go clean -modcache withdraws the module", || {
        langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(5));
        ok(
            &mut go_cmd(&project, &["clean", "-modcache"]),
            "go clean -modcache",
        );
        assert!(
            !pub_path.exists(),
            "go clean -modcache kept {}",
            pub_path.display()
        );
        langpkg::wait_withdrawn(&env, &pub_path, Duration::from_secs(15));
    });
    steps.finish();
}
