//! Unit tests of the Maven source against local repositories built in a temp dir (the documented layout).

use super::*;

const SUPER_POM: &str = r#"<project><modelVersion>4.0.0</modelVersion><repositories><repository>
<id>central</id><name>Central</name><url>https://central.test/maven2</url></repository></repositories></project>"#;

fn settings() -> MavenSettings {
    MavenSettings {
        central: central_from_super_pom(SUPER_POM),
        ..MavenSettings::default()
    }
}

fn put(repo: &Path, rel: &str, bytes: &[u8], remote: Option<&str>, sha1: bool) -> PathBuf {
    let path = repo.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    let file = path.file_name().unwrap().to_str().unwrap().to_owned();
    if let Some(id) = remote {
        let rr = path.parent().unwrap().join("_remote.repositories");
        let mut text = fs::read_to_string(&rr).unwrap_or_else(|_| "#NOTE: internal\n".into());
        text.push_str(&format!("{file}>{id}=\n"));
        fs::write(rr, text).unwrap();
    }
    if sha1 {
        use sha1_smol_free::sha1_hex;
        fs::write(path.with_file_name(format!("{file}.sha1")), sha1_hex(bytes)).unwrap();
    }
    path
}

mod sha1_smol_free {
    pub fn sha1_hex(data: &[u8]) -> String {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(data))
    }
}

#[test]
fn central_artifacts_are_public_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let source = MavenSource::new(repo.to_owned(), settings(), OriginMarks::default());
    let jar = put(
        repo,
        "org/ex/lib/1.0-beta/lib-1.0-beta.jar",
        b"jar bytes",
        Some("central"),
        true,
    );
    let id = source.describe(&jar).unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
        ("org.ex:lib", "1.0-beta", "maven:central")
    );
    assert!(
        matches!(id.provenance, Provenance::Public { .. }),
        "{:?}",
        id.provenance
    );
    let sum = id.checksum.unwrap();
    assert_eq!(sum.algo, ChecksumAlgo::Sha1);
    assert_eq!(
        hex::encode(&sum.digest),
        sha1_smol_free::sha1_hex(b"jar bytes")
    );

    let src = put(
        repo,
        "org/ex/lib/1.0-beta/lib-1.0-beta-sources.jar",
        b"src",
        Some("central"),
        false,
    );
    let id = source.describe(&src).unwrap();
    assert_eq!(id.version, "1.0-beta:sources");
    assert!(
        matches!(id.provenance, Provenance::Unknown { .. }),
        "no .sha1: {:?}",
        id.provenance
    );

    let private = put(repo, "com/acme/x/2/x-2.jar", b"p", Some("acme"), true);
    let id = source.describe(&private).unwrap();
    assert_eq!(id.origin, "maven:acme");
    assert!(matches!(id.provenance, Provenance::Private { .. }));
    let marks = OriginMarks {
        public: vec!["maven:acme".into()],
        private: vec![],
    };
    let marked = MavenSource::new(repo.to_owned(), settings(), marks);
    assert!(matches!(
        marked.describe(&private).unwrap().provenance,
        Provenance::Public { .. }
    ));

    let local = put(repo, "com/acme/y/3/y-3.jar", b"l", Some(""), false);
    let marks = OriginMarks {
        public: vec!["maven:(installed locally)".into()],
        private: vec![],
    };
    let marked = MavenSource::new(repo.to_owned(), settings(), marks);
    assert!(
        matches!(
            marked.describe(&local).unwrap().provenance,
            Provenance::Private { .. }
        ),
        "local installs never public"
    );

    let private_mark = OriginMarks {
        public: vec![],
        private: vec!["maven:central".into()],
    };
    let src2 = MavenSource::new(repo.to_owned(), settings(), private_mark);
    assert!(matches!(
        src2.describe(&jar).unwrap().provenance,
        Provenance::Private { .. }
    ));

    // settings.xml redefining central or a mirror with that id → private; Maven missing → unknown.
    let mut s = settings();
    s.settings_repos
        .push(("central".into(), "http://corp.test/m2".into()));
    assert!(matches!(
        MavenSource::new(repo.to_owned(), s, OriginMarks::default())
            .describe(&jar)
            .unwrap()
            .provenance,
        Provenance::Private { .. }
    ));
    let mut s = settings();
    s.mirror_ids.push("central".into());
    assert!(matches!(
        MavenSource::new(repo.to_owned(), s, OriginMarks::default())
            .describe(&jar)
            .unwrap()
            .provenance,
        Provenance::Private { .. }
    ));
    let none = MavenSource::new(
        repo.to_owned(),
        MavenSettings::default(),
        OriginMarks::default(),
    );
    assert!(matches!(
        none.describe(&jar).unwrap().provenance,
        Provenance::Unknown { .. }
    ));
}

#[test]
fn sidecars_markers_and_partials_are_not_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let source = MavenSource::new(repo.to_owned(), settings(), OriginMarks::default());
    let d = repo.join("org/ex/lib/1.0");
    for name in [
        "lib-1.0.jar.sha1",
        "lib-1.0.jar.md5",
        "lib-1.0.jar.lastUpdated",
        "lib-1.0.jar.part",
        "lib-1.0.jar.123.tmp",
        "_remote.repositories",
        "maven-metadata-central.xml",
        "resolver-status.properties",
        "other-1.0.jar",
        "lib-1.0",
        "lib-1.0-.jar",
        ".lib-1.0.jar",
        "lib-1.0.",
    ] {
        assert!(!source.is_candidate(&d.join(name)), "{name}");
    }
    assert!(
        !source.is_candidate(&repo.join("lib/1.0/lib-1.0.jar")),
        "needs a group"
    );
    assert!(source.is_candidate(&d.join("lib-1.0.pom")));
    let empty = put(
        repo,
        "org/ex/lib/1.0/lib-1.0.jar",
        b"",
        Some("central"),
        false,
    );
    assert_eq!(source.describe(&empty), Err(NotAnArtifact::Empty));
    let snap = put(
        repo,
        "org/ex/lib/1.0-SNAPSHOT/lib-1.0-SNAPSHOT.jar",
        b"s",
        Some("central"),
        true,
    );
    assert!(matches!(
        source.describe(&snap).unwrap().provenance,
        Provenance::Private { .. }
    ));
}

#[test]
fn settings_and_sidecar_parsers_are_total() {
    let (local, repos, mirrors) = parse_settings(
        "<settings><localRepository>/r</localRepository><profiles><profile><repositories><repository><id>central</id>\
         <url>http://x</url></repository></repositories></profile></profiles><mirrors><mirror><id>m</id></mirror></mirrors></settings>",
    )
    .unwrap();
    assert_eq!(local.as_deref(), Some("/r"));
    assert_eq!(repos, vec![("central".to_string(), "http://x".to_string())]);
    assert_eq!(mirrors, vec!["m".to_string()]);
    assert!(parse_settings("<settings>").is_none());
    assert_eq!(
        remote_repo_id("#c\na.jar>central=\nb.jar>=\n", "b.jar").as_deref(),
        Some("")
    );
    assert_eq!(
        remote_repo_id("a.jar>central=\n", "a.jar").as_deref(),
        Some("central")
    );
    assert_eq!(remote_repo_id("garbage\n>\n=\n", "a.jar"), None);
    assert!(parse_sha1_file("A9993E364706816ABA3E25717850C26CD9CD0D89  lib.jar\n").is_some());
    assert!(parse_sha1_file("xyz").is_none());
    assert!(central_from_super_pom("<project/>").is_none());
    let env = SourceEnv {
        home: Some("/h".into()),
        vars: [("X".to_string(), "y".to_string())].into(),
    };
    assert_eq!(
        expand("${user.home}/${env.X}/${env.NOPE}/${env.", &env),
        "/h/y//${env."
    );
}

#[test]
fn local_repository_comes_from_settings_xml() {
    let home = tempfile::tempdir().unwrap();
    let env = SourceEnv {
        home: Some(home.path().to_owned()),
        vars: Default::default(),
    };
    assert_eq!(
        detect_maven(&env).unwrap().0,
        home.path().join(".m2/repository")
    );
    fs::create_dir_all(home.path().join(".m2")).unwrap();
    fs::write(
        home.path().join(".m2/settings.xml"),
        "<settings><localRepository>${user.home}/elsewhere</localRepository></settings>",
    )
    .unwrap();
    assert_eq!(detect_maven(&env).unwrap().0, home.path().join("elsewhere"));
}

#[test]
fn central_id_and_url_are_read_from_the_installed_maven() {
    let env = SourceEnv::from_process();
    let home = maven_home(&env)
        .expect("Maven (mvn) must be installed for this test: scripts/setup.sh installs it");
    let (id, url) =
        central_from_installation(&home).expect("the super-POM in maven-model-builder-*.jar");
    assert!(!id.is_empty() && url.starts_with("http"), "{id} {url}");
}
