//! Unit tests of the cargo source against cargo homes built in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};

use super::index_cache::build_index_cache;
use super::*;

const DEFAULT_SPARSE: &str = "host.test-1949cf8c6b5b557f";
const ALT: &str = "127.0.0.1-91edde3cbe9c0d21";
const ALT_2: &str = "10.0.0.1-0123456789abcdef";
const SUM_A: &str = "49f1f14873335454500d68e4a9c6f1fbb7c6cd1e6c53d8ce8e7dcb10d9d0695b";
const SUM_B: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn line(name: &str, vers: &str, cksum: &str) -> String {
    format!(
        r#"{{"name":"{name}","vers":"{vers}","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
    )
}

/// A cargo home in a temp dir.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn source(&self) -> CargoSource {
        self.source_with(OriginMarks::default())
    }

    fn source_with(&self, marks: OriginMarks) -> CargoSource {
        CargoSource::new(self.path().to_owned(), marks)
    }

    fn crate_path(&self, index_dir: &str, file: &str) -> PathBuf {
        self.path()
            .join("registry/cache")
            .join(index_dir)
            .join(file)
    }

    fn put_crate(&self, index_dir: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.crate_path(index_dir, file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn put_index_cache(&self, index_dir: &str, name: &str, blob: &[u8]) {
        let path = cargo_index_cache_path(self.path(), index_dir, name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, blob).unwrap();
    }

    /// A crate plus an index cache that lists it (and a sibling version) with checksum `SUM_A`.
    fn put_listed(&self, index_dir: &str, name: &str, version: &str) -> PathBuf {
        let blob = build_index_cache(
            "etag: \"abc\"",
            &[
                ("0.0.1", &line(name, "0.0.1", SUM_B)),
                (version, &line(name, version, SUM_A)),
            ],
        );
        self.put_index_cache(index_dir, name, &blob);
        self.put_crate(
            index_dir,
            &format!("{name}-{version}.crate"),
            b"crate bytes",
        )
    }
}

fn sum_a() -> Option<RegistryChecksum> {
    Some(RegistryChecksum {
        algo: ChecksumAlgo::Sha256,
        digest: hex::decode(SUM_A).unwrap(),
    })
}

#[test]
fn index_cache_prefix_paths_follow_cargo() {
    let home = Path::new("/h");
    let base = "/h/registry/index/d/.cache";
    for (name, rel) in [
        ("a", "1/a"),
        ("Z", "1/z"),
        ("ab", "2/ab"),
        ("abc", "3/a/abc"),
        ("Abc", "3/a/abc"),
        ("itoa", "it/oa/itoa"),
        ("acme-internal", "ac/me/acme-internal"),
        ("Inflector", "in/fl/inflector"),
        ("MySQL_async", "my/sq/mysql_async"),
    ] {
        assert_eq!(
            cargo_index_cache_path(home, "d", name),
            Path::new(base).join(rel),
            "{name}"
        );
    }
    // Never panics on names cargo would not write.
    for name in ["", "é", "éa", "aé", "ééé"] {
        let _ = cargo_index_cache_path(home, "d", name);
    }
}

#[test]
fn roots_is_the_crate_cache_even_if_missing() {
    let home = Home::new();
    assert_eq!(
        home.source().roots(),
        vec![home.path().join("registry/cache")]
    );
    assert_eq!(home.source().ecosystem(), "cargo");
}

#[test]
fn candidates_are_crate_files_one_level_below_an_index_dir() {
    let home = Home::new();
    let src = home.source();
    let cache = home.path().join("registry/cache");
    assert!(src.is_candidate(&cache.join(DEFAULT_SPARSE).join("itoa-1.0.11.crate")));
    assert!(src.is_candidate(&cache.join(ALT).join("acme-internal-0.1.0.crate")));
    let not = [
        cache.join(DEFAULT_SPARSE).join("itoa-1.0.11.crate.tmp"),
        cache.join(DEFAULT_SPARSE).join("itoa-1.0.11.crate.part"),
        cache.join(DEFAULT_SPARSE).join(".itoa-1.0.11.crate"),
        cache.join(DEFAULT_SPARSE).join("itoa-1.0.11.tar.gz"),
        cache.join(DEFAULT_SPARSE).join("itoa-1.0.11.CRATE"),
        cache.join(DEFAULT_SPARSE).join(".crate"),
        cache
            .join(DEFAULT_SPARSE)
            .join("sub")
            .join("itoa-1.0.11.crate"),
        cache.join(".hidden").join("itoa-1.0.11.crate"),
        cache.join("itoa-1.0.11.crate"),
        cache.join(DEFAULT_SPARSE),
        cache.clone(),
        cache.join("..").join("itoa-1.0.11.crate"),
        cache
            .join(DEFAULT_SPARSE)
            .join("..")
            .join("itoa-1.0.11.crate"),
        home.path()
            .join("registry/src")
            .join(DEFAULT_SPARSE)
            .join("itoa-1.0.11.crate"),
        home.path()
            .join("registry/index")
            .join(DEFAULT_SPARSE)
            .join("itoa-1.0.11.crate"),
        PathBuf::from("/elsewhere/registry/cache")
            .join(DEFAULT_SPARSE)
            .join("itoa-1.0.11.crate"),
        PathBuf::from("registry/cache")
            .join(DEFAULT_SPARSE)
            .join("itoa-1.0.11.crate"),
    ];
    for path in not {
        assert!(!src.is_candidate(&path), "{}", path.display());
        assert_eq!(
            src.describe(&path),
            Err(NotAnArtifact::NotCandidate),
            "{}",
            path.display()
        );
    }
}

#[test]
fn describes_a_default_registry_crate() {
    let home = Home::new();
    let path = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    let id = home.source().describe(&path).unwrap();
    assert_eq!(
        id,
        ArtifactIdentity {
            ecosystem: "cargo",
            name: "itoa".into(),
            version: "1.0.11".into(),
            origin: DEFAULT_SPARSE.into(),
            checksum: sum_a(),
            provenance: Provenance::Public {
                evidence: DEFAULT_REGISTRY_SUFFIXES[0].1.into()
            },
        }
    );
    assert_eq!(
        id.checksum.unwrap().to_prefixed_hex(),
        format!("sha256:{SUM_A}")
    );
}

#[test]
fn describes_dashed_uppercase_names_with_prerelease_and_build() {
    let home = Home::new();
    for (name, version) in [
        ("Foo-Bar", "1.2.3-alpha.1+build.5"),
        ("a", "0.1.0"),
        ("ab", "0.1.0"),
        ("Abc", "0.1.0"),
    ] {
        let path = home.put_listed(DEFAULT_SPARSE, name, version);
        let id = home.source().describe(&path).unwrap();
        assert_eq!((id.name.as_str(), id.version.as_str()), (name, version));
        assert_eq!(id.checksum, sum_a());
    }
}

#[test]
fn build_metadata_selects_the_exact_entry() {
    // Index cache version 3 exists because versions differing only in build metadata were conflated.
    let home = Home::new();
    let blob = build_index_cache(
        "Unknown",
        &[
            // The longer version first, so that a prefix match would pick the wrong entry for `110.0.0`.
            (
                "110.0.0+1.1.0f",
                &line("openssl-src", "110.0.0+1.1.0f", SUM_A),
            ),
            ("110.0.0", &line("openssl-src", "110.0.0", SUM_B)),
        ],
    );
    home.put_index_cache(DEFAULT_SPARSE, "openssl-src", &blob);
    let path = home.put_crate(DEFAULT_SPARSE, "openssl-src-110.0.0+1.1.0f.crate", b"x");
    assert_eq!(home.source().describe(&path).unwrap().checksum, sum_a());
    let path = home.put_crate(DEFAULT_SPARSE, "openssl-src-110.0.0.crate", b"x");
    assert_eq!(
        home.source()
            .describe(&path)
            .unwrap()
            .checksum
            .unwrap()
            .digest,
        hex::decode(SUM_B).unwrap()
    );
}

#[test]
fn provenance_by_index_dir_name_and_marks() {
    let home = Home::new();
    let public = |evidence: &str| Provenance::Public {
        evidence: evidence.into(),
    };
    for (suffix, evidence) in DEFAULT_REGISTRY_SUFFIXES {
        let dir = format!("any-host.test-{suffix}");
        let path = home.put_listed(&dir, "itoa", "1.0.11");
        assert_eq!(
            home.source().describe(&path).unwrap().provenance,
            public(evidence),
            "{dir}"
        );
    }
    for dir in [
        ALT,
        "host.test-1949cf8c6b5b557e",
        "host.test-1949CF8C6B5B557F",
        "1949cf8c6b5b557f",
        "-1949cf8c6b5b557f",
        "host.test-1949cf8c6b5b557f-x",
        "host.test-01949cf8c6b5b557f",
        "plain",
    ] {
        let path = home.put_listed(dir, "itoa", "1.0.11");
        let id = home.source().describe(&path).unwrap();
        assert!(
            matches!(id.provenance, Provenance::Private { .. }),
            "{dir}: {:?}",
            id.provenance
        );
        assert_eq!(id.origin, dir);
    }

    // A user's public mark lifts an alternative registry; a private mark beats everything.
    let alt = home.put_listed(ALT, "acme-internal", "0.1.0");
    let default = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    let marked = home.source_with(OriginMarks {
        public: vec![ALT.into()],
        private: vec![],
    });
    assert_eq!(
        marked.describe(&alt).unwrap().provenance,
        public("marked public by the user")
    );
    let marked = home.source_with(OriginMarks {
        public: vec![ALT.into(), DEFAULT_SPARSE.into()],
        private: vec![ALT.into(), DEFAULT_SPARSE.into()],
    });
    for path in [alt, default] {
        assert_eq!(
            marked.describe(&path).unwrap().provenance,
            Provenance::Private {
                reason: "marked private by the user".into()
            }
        );
    }
}

#[test]
fn zero_byte_crate_is_an_interrupted_download() {
    let home = Home::new();
    let path = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    fs::write(&path, b"").unwrap();
    assert_eq!(home.source().describe(&path), Err(NotAnArtifact::Empty));
}

#[test]
fn missing_file_is_unreadable() {
    let home = Home::new();
    let path = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    fs::remove_file(&path).unwrap();
    assert!(matches!(
        home.source().describe(&path),
        Err(NotAnArtifact::Unreadable(_))
    ));
}

#[test]
fn unparseable_file_name_is_bad_name() {
    let home = Home::new();
    for file in ["itoa.crate", "itoa-1.0.crate", "it.oa-1.0.0.crate"] {
        let path = home.put_crate(DEFAULT_SPARSE, file, b"x");
        assert_eq!(
            home.source().describe(&path),
            Err(NotAnArtifact::BadName(file.into()))
        );
    }
}

#[cfg(unix)]
#[test]
fn symlinks_and_non_regular_files_are_refused() {
    use std::os::unix::fs::symlink;
    let home = Home::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("itoa-1.0.11.crate");
    fs::write(&target, b"secret").unwrap();
    let listed = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    let src = home.source();

    // A symlinked file escaping the root.
    fs::remove_file(&listed).unwrap();
    symlink(&target, &listed).unwrap();
    assert!(matches!(
        src.describe(&listed),
        Err(NotAnArtifact::Confinement(_))
    ));

    // A symlinked file pointing inside the root is refused too.
    let inside = home.put_crate(DEFAULT_SPARSE, "other-1.0.0.crate", b"x");
    fs::remove_file(&listed).unwrap();
    symlink(&inside, &listed).unwrap();
    assert!(matches!(
        src.describe(&listed),
        Err(NotAnArtifact::Confinement(_))
    ));

    // A symlinked index dir escaping the root.
    let linked_dir = home.path().join("registry/cache").join(ALT);
    symlink(outside.path(), &linked_dir).unwrap();
    home.put_listed(ALT, "itoa", "1.0.11"); // writes the index cache; the crate lands in `outside`
    fs::write(&target, b"secret").unwrap();
    let via_link = linked_dir.join("itoa-1.0.11.crate");
    assert!(src.is_candidate(&via_link));
    assert!(matches!(
        src.describe(&via_link),
        Err(NotAnArtifact::Confinement(_))
    ));

    // An index dir named like the default registry, linked to an alternative registry's dir inside the root:
    // the origin is read from the path, so this must not pass as a default-registry crate.
    let alt_crate = home.put_listed(ALT_2, "serde", "1.0.0");
    let disguised = home
        .path()
        .join("registry/cache/disguised.test-1949cf8c6b5b557f");
    symlink(alt_crate.parent().unwrap(), &disguised).unwrap();
    home.put_listed("disguised.test-1949cf8c6b5b557f", "serde", "1.0.0");
    assert!(matches!(
        src.describe(&disguised.join("serde-1.0.0.crate")),
        Err(NotAnArtifact::Confinement(_))
    ));
    assert!(src.describe(&alt_crate).is_ok());

    // A directory named like a crate.
    let dir = home.crate_path(DEFAULT_SPARSE, "dir-1.0.0.crate");
    fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        src.describe(&dir),
        Err(NotAnArtifact::Confinement(_))
    ));
}

/// A device named like a listed crate (made like /dev/null: character device 1:3) is refused, never opened. Making
/// a device needs CAP_MKNOD (CI runs as root); without it (EPERM) the test says so and checks nothing.
#[cfg(unix)]
#[test]
fn a_device_named_like_a_crate_is_refused() {
    let home = Home::new();
    let listed = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    fs::remove_file(&listed).unwrap();
    let made = std::process::Command::new("mknod")
        .arg(&listed)
        .args(["c", "1", "3"])
        .output()
        .expect("run mknod");
    if !made.status.success() {
        let err = String::from_utf8_lossy(&made.stderr);
        assert!(
            err.contains("Operation not permitted"),
            "mknod failed otherwise: {err}"
        );
        eprintln!("SKIPPED: mknod needs CAP_MKNOD here (EPERM): {err}");
        return;
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&listed)
        .unwrap()
        .file_type()
        .is_char_device());
    let src = home.source();
    assert!(src.is_candidate(&listed));
    assert!(matches!(
        src.describe(&listed),
        Err(NotAnArtifact::Confinement(_))
    ));
}

#[cfg(unix)]
#[test]
fn a_symlinked_cache_root_is_followed() {
    // Users move `registry/cache` to another disk; the real root is then the link target.
    use std::os::unix::fs::symlink;
    let home = Home::new();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir_all(home.path().join("registry")).unwrap();
    symlink(elsewhere.path(), home.path().join("registry/cache")).unwrap();
    let path = home.put_listed(DEFAULT_SPARSE, "itoa", "1.0.11");
    assert_eq!(home.source().describe(&path).unwrap().checksum, sum_a());
}

#[test]
fn checksum_problems_are_typed() {
    let home = Home::new();
    let src = home.source();
    let no_checksum =
        |r: Result<ArtifactIdentity, NotAnArtifact>| matches!(r, Err(NotAnArtifact::NoChecksum(_)));
    let unreadable =
        |r: Result<ArtifactIdentity, NotAnArtifact>| matches!(r, Err(NotAnArtifact::Unreadable(_)));

    // No index cache file at all.
    let path = home.put_crate(DEFAULT_SPARSE, "serde-1.0.0.crate", b"x");
    assert!(no_checksum(src.describe(&path)));

    // The version is not listed.
    home.put_index_cache(
        DEFAULT_SPARSE,
        "serde",
        &build_index_cache("Unknown", &[("1.0.1", &line("serde", "1.0.1", SUM_A))]),
    );
    assert_eq!(
        src.describe(&path),
        Err(NotAnArtifact::NoChecksum("serde 1.0.0".into()))
    );

    // Listed without a cksum.
    let no_cksum = r#"{"name":"serde","vers":"1.0.0","deps":[]}"#;
    home.put_index_cache(
        DEFAULT_SPARSE,
        "serde",
        &build_index_cache("Unknown", &[("1.0.0", no_cksum)]),
    );
    assert!(no_checksum(src.describe(&path)));

    // An older cargo's cache layout: a clear NoChecksum naming the format version.
    let mut old = build_index_cache("Unknown", &[("1.0.0", &line("serde", "1.0.0", SUM_A))]);
    old[0] = 2;
    home.put_index_cache(DEFAULT_SPARSE, "serde", &old);
    match src.describe(&path) {
        Err(NotAnArtifact::NoChecksum(msg)) => assert!(msg.contains("format version 2"), "{msg}"),
        other => panic!("{other:?}"),
    }

    // Corrupt: truncated header, bad JSON, a cksum that is not sha256 hex, an entry for another version or crate.
    let corrupt: [Vec<u8>; 6] = [
        vec![3, 2],
        build_index_cache("Unknown", &[("1.0.0", "{not json")]),
        build_index_cache("Unknown", &[("1.0.0", &line("serde", "1.0.0", "abcd"))]),
        build_index_cache(
            "Unknown",
            &[("1.0.0", &line("serde", "1.0.0", &"zz".repeat(32)))],
        ),
        build_index_cache("Unknown", &[("1.0.0", &line("serde", "1.0.1", SUM_A))]),
        build_index_cache("Unknown", &[("1.0.0", &line("serde_json", "1.0.0", SUM_A))]),
    ];
    for blob in corrupt {
        home.put_index_cache(DEFAULT_SPARSE, "serde", &blob);
        assert!(
            unreadable(src.describe(&path)),
            "{:?}",
            String::from_utf8_lossy(&blob)
        );
    }

    // The index cache path is a directory.
    let cache_file = cargo_index_cache_path(home.path(), DEFAULT_SPARSE, "serde");
    fs::remove_file(&cache_file).unwrap();
    fs::create_dir(&cache_file).unwrap();
    assert!(unreadable(src.describe(&path)));
}

#[test]
fn default_cargo_home_prefers_the_env() {
    // The only test in this binary that touches CARGO_HOME.
    let saved = std::env::var_os("CARGO_HOME");
    std::env::set_var("CARGO_HOME", "/some/where");
    assert_eq!(default_cargo_home(), Some(PathBuf::from("/some/where")));
    std::env::set_var("CARGO_HOME", "relative");
    assert_eq!(
        default_cargo_home(),
        Some(std::env::current_dir().unwrap().join("relative"))
    );
    std::env::remove_var("CARGO_HOME");
    let expected = directories::BaseDirs::new().map(|d| d.home_dir().join(".cargo"));
    assert_eq!(default_cargo_home(), expected);
    match saved {
        Some(v) => std::env::set_var("CARGO_HOME", v),
        None => std::env::remove_var("CARGO_HOME"),
    }
}
