//! End-to-end: RubyGems / Bundler with the REAL clients. `gem build` makes three tiny gems, `gem generate_index`
//! writes the marshal indexes and a small Ruby script writes the compact index (`versions`, `info/<name>` with
//! `checksum:<sha256>`) of two gem sources served on 127.0.0.1 ("public" and "private"). The real Bundler (the
//! default gem shipped with Debian's ruby, run as `ruby -e 'load Gem.bin_path("bundler", "bundle")'`) installs from
//! both into `GEM_HOME=~/.local/share/gem/ruby/<abi>` of a temp home; it writes the `.gem` files to
//! `$GEM_HOME/cache/` and its compact-index cache to `~/.bundle/cache/compact_index/<slug>/`.
//!
//! What this proves: a cached gem is seeded only when a compact index cached by Bundler lists its sha256 under a
//! source that is RubyGems' default or marked public (here: the public server's slug is marked public in the
//! pkgseed config, because a local server can never be RubyGems' built-in default), and the file's sha256 equals
//! that checksum (the engine checks). The private source's gem is never seeded and its slug is listed as private.
//! A truncated cached gem (an interrupted write) and an empty one are not seeded. `gem uninstall` deletes the
//! cached `.gem` (checked with the real client), and that withdraws it. CIDs match ipfs-unixfs-importer, and Helia
//! fetches the public gem by root CID and by checksum CID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pkgseed_e2e::http::{serve_dir, StaticServer};
use pkgseed_e2e::langpkg::{self, origin_status, require_tool, Steps};
use pkgseed_e2e::{
    js_unixfs_cids, raw_sha256_cid, run, sha256_file, sha256_hex, wait_first_scan, Daemon, TestEnv,
};

const COMPACT_INDEX_RB: &str = r##"require "digest"; require "rubygems/package"
dir = ARGV[0]
lines = []
Dir[File.join(dir, "gems", "*.gem")].sort.group_by { |f| Gem::Package.new(f).spec.name }.each do |name, files|
  info = "---\n"
  vers = []
  files.each do |f|
    spec = Gem::Package.new(f).spec
    v = spec.platform.to_s == "ruby" ? spec.version.to_s : "#{spec.version}-#{spec.platform}"
    info << "#{v} |checksum:#{Digest::SHA256.file(f).hexdigest}\n"
    vers << v
  end
  Dir.mkdir(File.join(dir, "info")) unless Dir.exist?(File.join(dir, "info"))
  File.write(File.join(dir, "info", name), info)
  lines << "#{name} #{vers.join(",")} #{Digest::MD5.hexdigest(info)}"
end
File.write(File.join(dir, "versions"), "created_at: 2024-01-01T00:00:00Z\n---\n" + lines.join("\n") + "\n")
"##;

#[track_caller]
fn ok(cmd: &mut Command, what: &str) -> String {
    run(cmd, Duration::from_secs(120))
        .expect_success(what)
        .stdout
}

/// Builds `<name>-0.1.0.gem` with `gem build` in `dir`; `filler` bytes of data make its size.
fn build_gem(dir: &Path, name: &str, filler: usize) -> PathBuf {
    let src = dir.join(name);
    std::fs::create_dir_all(src.join("lib")).unwrap();
    // Pseudo-random filler so gzip cannot shrink it away.
    let mut x: u32 = 0x2545_f491 ^ filler as u32;
    let data: String = (0..filler)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    std::fs::write(
        src.join("lib").join(format!("{name}.rb")),
        format!("# {data}\nmodule X; end\n"),
    )
    .unwrap();
    std::fs::write(
        src.join(format!("{name}.gemspec")),
        format!(
            "Gem::Specification.new do |s|\n s.name = {name:?}; s.version = \"0.1.0\"; s.summary = \"t\"; \
             s.authors = [\"t\"]; s.license = \"MIT\"; s.files = [\"lib/{name}.rb\"]\nend\n"
        ),
    )
    .unwrap();
    ok(
        Command::new("gem")
            .current_dir(&src)
            .args(["build", &format!("{name}.gemspec")]),
        "gem build",
    );
    src.join(format!("{name}-0.1.0.gem"))
}

/// A gem source on 127.0.0.1 with the given gems: marshal indexes from `gem generate_index` plus a compact index.
fn serve_source(dir: &Path, gems: &[&Path]) -> StaticServer {
    std::fs::create_dir_all(dir.join("gems")).unwrap();
    for g in gems {
        std::fs::copy(g, dir.join("gems").join(g.file_name().unwrap())).unwrap();
    }
    ok(
        Command::new("gem")
            .args(["generate_index", "--directory"])
            .arg(dir),
        "gem generate_index",
    );
    ok(
        Command::new("ruby").args(["-e", COMPACT_INDEX_RB]).arg(dir),
        "compact index script",
    );
    serve_dir(dir)
}

#[test]
fn gems() {
    require_tool("ruby", "ruby");
    require_tool("gem", "ruby");
    let env = TestEnv::new("gems");
    let abi = ok(
        Command::new("ruby").args(["-e", "print RbConfig::CONFIG['ruby_version']"]),
        "ruby abi",
    );
    let gem_home = env.home.join(".local/share/gem/ruby").join(abi.trim());
    let build = env.work.join("build");
    let seedpub = build_gem(&build, "seedpub", 100);
    let seedhalf = build_gem(&build, "seedhalf", 40_000);
    let seedpriv = build_gem(&build, "seedpriv", 100);
    let public = serve_source(&env.work.join("srv-public"), &[&seedpub, &seedhalf]);
    let private = serve_source(&env.work.join("srv-private"), &[&seedpriv]);

    let project = env.work.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("Gemfile"),
        format!(
            "source {:?}\ngem \"seedpub\"\ngem \"seedhalf\"\nsource {:?} do\n  gem \"seedpriv\"\nend\n",
            public.base_url(),
            private.base_url()
        ),
    )
    .unwrap();
    let bundle = |args: &[&str]| {
        let mut c = Command::new("ruby");
        c.current_dir(&project)
            .args(["-e", "load Gem.bin_path('bundler', 'bundle')"])
            .args(args)
            .env("HOME", &env.home)
            .env("GEM_HOME", &gem_home)
            .env_remove("GEM_PATH")
            .env_remove("BUNDLE_USER_CACHE")
            .env_remove("BUNDLE_USER_HOME")
            .env_remove("BUNDLE_PATH")
            .env_remove("BUNDLE_GEMFILE");
        c
    };
    ok(&mut bundle(&["install"]), "bundle install");
    let cache = gem_home.join("cache");
    let cached = |name: &str| cache.join(format!("{name}-0.1.0.gem"));
    for n in ["seedpub", "seedhalf", "seedpriv"] {
        assert!(
            cached(n).is_file(),
            "bundle install left no {}",
            cached(n).display()
        );
    }
    let ci = env.home.join(".bundle/cache/compact_index");
    let slug_of = |port: u16| {
        std::fs::read_dir(&ci)
            .unwrap_or_else(|e| {
                panic!(
                    "Bundler wrote no compact-index cache at {}: {e}",
                    ci.display()
                )
            })
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|s| s.starts_with(&format!("127.0.0.1.{port}.")))
            .unwrap_or_else(|| panic!("no compact-index dir for port {port} in {}", ci.display()))
    };
    let (public_slug, private_slug) = (slug_of(public.port()), slug_of(private.port()));
    eprintln!("public slug {public_slug}, private slug {private_slug}");
    env.enable_system_ecosystem("rubygems");
    env.write_pkgseed_config(&[&public_slug], &[]);

    // Partial downloads: a truncated cached gem (bytes differ from the registry checksum) and an empty one.
    let half = std::fs::read(cached("seedhalf")).unwrap();
    std::fs::write(cached("seedhalf"), &half[..half.len() / 2]).unwrap();
    std::fs::write(cache.join("seedzero-0.1.0.gem"), b"").unwrap();

    let _daemon = Daemon::start(&env, "gems");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();
    let pub_path = cached("seedpub");
    let bytes = std::fs::read(&pub_path).unwrap();
    let mut root_cid = String::new();

    steps.run(
        "public gem seeded with CID = reference and checksum CID",
        || {
            let e = langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(20));
            assert_eq!(e["ecosystem"], "rubygems", "{e}");
            assert_eq!(
                (e["name"].as_str(), e["version"].as_str()),
                (Some("seedpub"), Some("0.1.0")),
                "{e}"
            );
            assert_eq!(e["origin"].as_str(), Some(public_slug.as_str()), "{e}");
            let sha = sha256_file(&pub_path);
            assert_eq!(
                e["registry_checksum"].as_str(),
                Some(format!("sha256:{sha}").as_str()),
                "{e}"
            );
            assert_eq!(
                e["checksum_cid"].as_str(),
                Some(raw_sha256_cid(&sha).as_str()),
                "{e}"
            );
            let reference = js_unixfs_cids("unixfs-v1-2025", &[&pub_path]);
            assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
            root_cid = reference[0].clone();
        },
    );

    steps.run(
        "private gem absent; private origin listed as private",
        || {
            let ls = langpkg::ls(&env);
            assert!(
                langpkg::ls_by_path(&ls, &cached("seedpriv")).is_none(),
                "private gem seeded: {ls:#?}"
            );
            assert!(!ls.iter().any(|e| e["name"] == "seedpriv"), "{ls:#?}");
            let o = origin_status(&env, &private_slug);
            assert_eq!(o["provenance"], "private", "{o}");
            let o = origin_status(&env, &public_slug);
            assert_eq!(o["provenance"], "public", "{o}");
        },
    );

    steps.run("truncated and empty gems are not seeded", || {
        let ls = langpkg::ls(&env);
        assert!(
            !ls.iter()
                .any(|e| e["name"] == "seedhalf" || e["name"] == "seedzero"),
            "{ls:#?}"
        );
        assert_eq!(
            ls.iter().filter(|e| e["ecosystem"] == "rubygems").count(),
            1,
            "only seedpub may be seeded: {ls:#?}"
        );
    });

    steps.run(
        "Helia fetches the public gem by root and checksum CID",
        || {
            let checksum_cid = raw_sha256_cid(&sha256_hex(&bytes));
            let mut cids = vec![checksum_cid.clone()];
            if !root_cid.is_empty() && root_cid != checksum_cid {
                cids.push(root_cid.clone());
            }
            langpkg::assert_helia_fetches(&env, &cids, &bytes);
        },
    );

    steps.run(
        "gem uninstall deletes the cached gem and withdraws it",
        || {
            langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(5));
            let mut c = Command::new("gem");
            c.args(["uninstall", "seedpub", "-x", "--install-dir"])
                .arg(&gem_home)
                .env("HOME", &env.home)
                .env("GEM_HOME", &gem_home);
            ok(&mut c, "gem uninstall");
            assert!(
                !pub_path.exists(),
                "gem uninstall kept {}",
                pub_path.display()
            );
            langpkg::wait_withdrawn(&env, &pub_path, Duration::from_secs(10));
        },
    );
    steps.finish();
}
