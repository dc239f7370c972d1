//! Unit tests of the Go source against module caches built in a temp dir (Go's documented layout).

use super::*;
use crate::zipread::tests::make_zip;

const SUMDB: &str = "sumdb.test";

fn settings(goprivate: &str, gonosumdb: &str) -> GoSettings {
    GoSettings {
        goproxy: "http://proxy.test,direct".into(),
        goprivate: goprivate.into(),
        gonosumdb: if gonosumdb.is_empty() {
            goprivate.into()
        } else {
            gonosumdb.into()
        },
        gonoproxy: goprivate.into(),
        default_sumdb: Some(SUMDB.into()),
    }
}

struct Cache {
    dir: tempfile::TempDir,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn source(&self, settings: GoSettings, marks: OriginMarks) -> GoSource {
        GoSource::new(self.dir.path().to_owned(), settings, marks)
    }
    /// Writes `<esc>/@v/<v>.zip` + `.ziphash`; returns the zip path and its h1.
    fn put_module(&self, esc_module: &str, module: &str, version: &str) -> (PathBuf, String) {
        let prefix = format!("{module}@{version}");
        let files = [
            (
                format!("{prefix}/go.mod"),
                format!("module {module}\n").into_bytes(),
            ),
            (format!("{prefix}/a.go"), b"package a\n".to_vec()),
        ];
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let zip = make_zip(&refs, true);
        let h1 = zip_h1(&zip).unwrap();
        let h1_text = format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(h1)
        );
        let dir = self
            .dir
            .path()
            .join("cache/download")
            .join(esc_module)
            .join("@v");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{version}.zip"));
        fs::write(&path, &zip).unwrap();
        fs::write(dir.join(format!("{version}.ziphash")), &h1_text).unwrap();
        (path, h1_text)
    }
    fn put_lookup(&self, esc_module: &str, module: &str, version: &str, h1: &str) {
        let dir = self
            .dir
            .path()
            .join("cache/download/sumdb")
            .join(SUMDB)
            .join("lookup");
        let file = dir.join(format!("{esc_module}@{version}"));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let record = format!(
            "1234\n{module} {version} {h1}\n{module} {version}/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— {SUMDB} sig\n"
        );
        fs::write(file, record).unwrap();
    }
}

#[test]
fn public_when_the_default_sumdb_lookup_has_the_same_h1() {
    let cache = Cache::new();
    let (path, h1) = cache.put_module("example.test/!big/lib", "example.test/Big/lib", "v1.2.3");
    let source = cache.source(settings("", ""), OriginMarks::default());
    assert!(source.is_candidate(&path));
    // No lookup record: unknown.
    let id = source.describe(&path).unwrap();
    assert!(
        matches!(id.provenance, Provenance::Unknown { .. }),
        "{:?}",
        id.provenance
    );
    assert_eq!(id.name, "example.test/Big/lib");
    assert_eq!(id.version, "v1.2.3");
    assert_eq!(id.origin, "go:http://proxy.test");
    assert_eq!(id.checksum.as_ref().unwrap().algo, ChecksumAlgo::GoH1);
    assert_eq!(id.checksum.unwrap().to_prefixed_hex(), h1);
    cache.put_lookup(
        "example.test/!big/lib",
        "example.test/Big/lib",
        "v1.2.3",
        &h1,
    );
    let id = source.describe(&path).unwrap();
    assert!(
        matches!(id.provenance, Provenance::Public { .. }),
        "{:?}",
        id.provenance
    );
    // A different h1 in the public database: private.
    cache.put_lookup(
        "example.test/!big/lib",
        "example.test/Big/lib",
        "v1.2.3",
        "h1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    );
    let id = source.describe(&path).unwrap();
    assert!(
        matches!(id.provenance, Provenance::Private { .. }),
        "{:?}",
        id.provenance
    );
}

#[test]
fn goprivate_and_gonosumdb_win_even_over_a_public_mark() {
    let cache = Cache::new();
    let (path, h1) = cache.put_module("corp.test/x", "corp.test/x", "v0.1.0");
    cache.put_lookup("corp.test/x", "corp.test/x", "v0.1.0", &h1);
    let marks = OriginMarks {
        public: vec!["go:direct".into(), "go:http://proxy.test".into()],
        private: vec![],
    };
    for (p, n) in [
        ("corp.test", ""),
        ("", "*.test"),
        ("other.test,corp.*/x", ""),
    ] {
        let id = cache
            .source(settings(p, n), marks.clone())
            .describe(&path)
            .unwrap();
        assert!(
            matches!(id.provenance, Provenance::Private { .. }),
            "{p} {n}: {:?}",
            id.provenance
        );
    }
    // GOPRIVATE → fetched direct.
    assert_eq!(
        cache
            .source(settings("corp.test", ""), OriginMarks::default())
            .describe(&path)
            .unwrap()
            .origin,
        "go:direct"
    );
    // A private origin mark wins over the sumdb proof.
    let marks = OriginMarks {
        public: vec![],
        private: vec!["go:http://proxy.test".into()],
    };
    let id = cache
        .source(settings("", ""), marks)
        .describe(&path)
        .unwrap();
    assert!(matches!(id.provenance, Provenance::Private { .. }));
    // A public origin mark makes an unproven module public.
    let (path2, _) = cache.put_module("pub.test/y", "pub.test/y", "v1.0.0");
    let marks = OriginMarks {
        public: vec!["go:http://proxy.test".into()],
        private: vec![],
    };
    let id = cache
        .source(settings("", ""), marks)
        .describe(&path2)
        .unwrap();
    assert!(matches!(id.provenance, Provenance::Public { .. }));
}

#[test]
fn partial_temp_and_corrupt_files_are_not_artifacts() {
    let cache = Cache::new();
    let (path, _) = cache.put_module("m.test/a", "m.test/a", "v1.0.0");
    let source = cache.source(settings("", ""), OriginMarks::default());
    let dir = path.parent().unwrap();
    for name in [
        "v1.0.0.zip123.tmp",
        "v1.0.0.ziphash",
        "v1.0.0.mod",
        "v1.0.0.info",
        "v1.0.0.lock",
        "list",
        ".zip",
        "v1.0.0.partial",
    ] {
        assert!(!source.is_candidate(&dir.join(name)), "{name}");
    }
    let root = cache.dir.path().join("cache/download");
    assert!(!source.is_candidate(&root.join("sumdb/x/@v/v1.zip")));
    assert!(!source.is_candidate(&cache.dir.path().join("m.test/a@v1.0.0/x.zip")));
    assert!(!source.is_candidate(&root.join("@v/v1.zip")));
    // Contents that do not match .ziphash (a different zip under the same name).
    fs::write(
        &path,
        make_zip(&[("m.test/a@v1.0.0/go.mod", b"evil")], false),
    )
    .unwrap();
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::Unreadable(_))
    ));
    fs::write(&path, b"").unwrap();
    assert_eq!(source.describe(&path), Err(NotAnArtifact::Empty));
    fs::write(&path, b"not a zip at all").unwrap();
    assert!(source.describe(&path).is_err());
    fs::remove_file(dir.join("v1.0.0.ziphash")).unwrap();
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // Bad escapes.
    let (bad, _) = cache.put_module("m.test/B", "m.test/B", "v1.0.0");
    assert!(matches!(
        source.describe(&bad),
        Err(NotAnArtifact::BadName(_))
    ));
}

#[test]
fn go_glob_matching_follows_path_prefix_rules() {
    assert!(match_prefix_patterns("corp.test", "corp.test/a/b"));
    assert!(match_prefix_patterns("*.corp.test", "git.corp.test/a"));
    assert!(!match_prefix_patterns("*.corp.test", "corp.test/a"));
    assert!(match_prefix_patterns("corp.test/a", "corp.test/a/b"));
    assert!(!match_prefix_patterns("corp.test/a/b/c", "corp.test/a/b"));
    assert!(!match_prefix_patterns("corp.test/a", "corp.test/ab"));
    assert!(match_prefix_patterns(" x ,corp.test/", "corp.test"));
    assert!(!match_prefix_patterns(",,", "corp.test"));
    assert!(match_prefix_patterns("c?rp.[a-t]est", "corp.test/x"));
    assert!(!match_prefix_patterns("corp.[^t]est", "corp.test"));
    assert!(go_path_match("a\\*b", "a*b"));
    assert!(!go_path_match("[", "a"));
    assert!(!go_path_match("a*", "a/b"));
    // Pathological backtracking is bounded (no hang): a no-match pattern over a long name returns.
    assert!(!go_path_match(
        &format!("{}c", "*a".repeat(30)),
        &"a".repeat(200)
    ));
}

#[test]
fn helpers_never_panic_on_hostile_input() {
    assert_eq!(unescape_module("!a!b"), Some("AB".into()));
    for bad in ["!", "!A", "A", "", "a!"] {
        assert_eq!(unescape_module(bad), None, "{bad}");
    }
    assert_eq!(parse_h1("h1:short"), None);
    assert_eq!(parse_h1("sha256:x"), None);
    assert_eq!(parse_sumdb_lookup("garbage\n\n\u{0}", "m", "v"), None);
    assert_eq!(sumdb_name("name+key http://u"), Some("name".into()));
    assert_eq!(sumdb_name("off"), None);
    assert_eq!(
        parse_go_env_file("# c\nGOPRIVATE=a.test\nbad\n"),
        vec![("GOPRIVATE".to_string(), "a.test".to_string())]
    );
    for s in ["[", "[]", "[^", "[a-", "[a-]", "\\", "[\\", "*[", "?"] {
        let _ = go_path_match(s, "abc");
        let _ = match_prefix_patterns(s, "a/b");
    }
}

#[test]
fn roots_come_from_env_then_go_env_file_then_home() {
    let home = tempfile::tempdir().unwrap();
    let mut env = SourceEnv {
        home: Some(home.path().to_owned()),
        vars: Default::default(),
    };
    assert_eq!(go_modcache(&env), Some(home.path().join("go/pkg/mod")));
    fs::create_dir_all(home.path().join(".config/go")).unwrap();
    fs::write(home.path().join(".config/go/env"), "GOPATH=/gp1:/gp2\n").unwrap();
    if !cfg!(windows) && !cfg!(target_os = "macos") {
        assert_eq!(go_modcache(&env), Some(PathBuf::from("/gp1/pkg/mod")));
    }
    env.vars.insert("GOMODCACHE".into(), "/mc".into());
    assert_eq!(go_modcache(&env), Some(PathBuf::from("/mc")));
}

#[test]
fn default_sumdb_and_proxy_are_learned_from_the_installed_go() {
    let env = SourceEnv::from_process();
    let (proxy, sumdb) = go_defaults(&env);
    let sumdb = sumdb
        .expect("Go (golang-go) must be installed for this test: scripts/setup.sh installs it");
    assert!(
        sumdb_name(&sumdb).is_some_and(|n| n.contains('.')),
        "{sumdb}"
    );
    assert!(proxy.is_some_and(|p| p.contains("://")));
}
