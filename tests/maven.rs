//! End-to-end: the Maven local repository with the REAL `mvn`, against two Maven repositories served on 127.0.0.1
//! ("seedpub", marked public in the pkgseed config because a local server can never be Maven's built-in central
//! repository, and "seedpriv"). Jars (stored zips with a manifest and filler) and POMs are generated here, each with
//! its `.sha1` side file as a repository serves it.
//!
//! How Maven resolves without the internet: `dependency:get` needs maven-dependency-plugin, which only the public
//! repository (unreachable here) or Debian's large `libmaven-dependency-plugin-java` (57 packages) provides. Instead a
//! tiny `pom`-packaging project declares the artifacts as BUILD EXTENSIONS and runs `mvn validate`: Maven resolves
//! build extensions (and their POMs) through its resolver from the plugin repositories while reading the project,
//! exactly as it downloads any dependency (same transport, same `.sha1` download and check, same
//! `_remote.repositories` record), and `validate` of a `pom` project runs no plugin at all. Maven injects
//! `org.codehaus.plexus:plexus-utils:1.1` into every extension's class path, so the private repository serves a
//! tiny one. Central is mirrored to an empty 127.0.0.1 server, so nothing leaves loopback. The local-build case is
//! the real `install:install-file` of Debian's `libmaven-install-plugin-java` (one small package), read from
//! `/usr/share/maven-repo` as a `file://` plugin repository.
//!
//! What this proves: the public jar and POM are seeded with the registry checksum `sha1:<hex>` from the `.sha1`
//! Maven downloaded, a checksum CID keyed by the file's sha256, and a root CID equal to ipfs-unixfs-importer's;
//! the private repository's artifacts are absent from `ls` and `maven:seedpriv` is private in `status.origins`; the
//! `install:install-file` artifact (`>=` in `_remote.repositories`) is never seeded; an artifact truncated in place
//! (bytes no longer match its `.sha1`) and the `.lastUpdated` marker left by a real failed download are not seeded;
//! deleting the version directory from the local repository (Maven has no clean command of its own: users and
//! `dependency:purge-local-repository` delete these files) withdraws the jar and the POM; Helia fetches the public jar
//! by root CID and by checksum CID with exact bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pkgseed_e2e::http::serve_dir;
use pkgseed_e2e::http::StaticServer;
use pkgseed_e2e::jvmgo::{assert_jar_and_pom_seeded, jar, publish};
use pkgseed_e2e::langpkg::{self, origin_status, require_tool, Steps};
use pkgseed_e2e::{raw_sha256_cid, run, sha256_hex, wait_first_scan, Daemon, TestEnv};

const DEBIAN_MAVEN_REPO: &str = "/usr/share/maven-repo";

fn project(dir: &Path, extensions: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let ext: String = extensions
        .iter()
        .map(|a| {
            format!(
                "<extension><groupId>org.seed</groupId><artifactId>{a}</artifactId><version>1.0</version></extension>"
            )
        })
        .collect();
    std::fs::write(
        dir.join("pom.xml"),
        format!(
            "<project><modelVersion>4.0.0</modelVersion>\
             <groupId>t</groupId><artifactId>consumer</artifactId><version>1</version><packaging>pom</packaging>\
             <build><extensions>{ext}</extensions></build></project>\n"
        ),
    )
    .unwrap();
}

/// The newest version dir of maven-install-plugin in Debian's repository that has a jar.
fn install_plugin_version() -> String {
    let dir = Path::new(DEBIAN_MAVEN_REPO).join("org/apache/maven/plugins/maven-install-plugin");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let v = e.file_name().to_string_lossy().into_owned();
            e.path()
                .join(format!("maven-install-plugin-{v}.jar"))
                .is_file()
                && v != "debian"
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "no maven-install-plugin jar under {}: install the Debian package `libmaven-install-plugin-java` \
             (scripts/setup.sh does)",
            dir.display()
        )
    })
}

#[test]
fn maven() {
    require_tool("mvn", "maven");
    let install_plugin = install_plugin_version();
    let env = TestEnv::new("maven");
    let local_repo = env.root_path.join("m2repo");

    // The two remote repositories.
    let pub_dir = env.work.join("srv-public");
    let priv_dir = env.work.join("srv-private");
    let pub_jar = jar(1, 1_500_000); // > 1 MiB: a multi-block DAG, still <= 2 MiB so it has a checksum CID.
    publish(&pub_dir, "org.seed", "seedpub", "1.0", &pub_jar);
    publish(&pub_dir, "org.seed", "seedhalf", "1.0", &jar(2, 40_000));
    publish(&priv_dir, "org.seed", "seedpriv", "1.0", &jar(3, 100));
    publish(
        &priv_dir,
        "org.codehaus.plexus",
        "plexus-utils",
        "1.1",
        &jar(4, 10),
    );
    let public = serve_dir(&pub_dir);
    let private = serve_dir(&priv_dir);
    let no_central = StaticServer::start();

    let settings = env.home.join(".m2/settings.xml");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let repo =
        |id: &str, url: &str, kind: &str| format!("<{kind}><id>{id}</id><url>{url}</url></{kind}>");
    std::fs::write(
        &settings,
        format!(
            "<settings><localRepository>{local}</localRepository>\
             <mirrors><mirror><id>no-central</id><mirrorOf>central</mirrorOf><url>{nc}/</url></mirror></mirrors>\
             <profiles><profile><id>seed</id><repositories>{r1}{r2}</repositories>\
             <pluginRepositories>{p1}{p2}{p3}</pluginRepositories></profile></profiles>\
             <activeProfiles><activeProfile>seed</activeProfile></activeProfiles></settings>\n",
            local = local_repo.display(),
            nc = no_central.base_url(),
            r1 = repo("seedpub", &public.base_url(), "repository"),
            r2 = repo("seedpriv", &private.base_url(), "repository"),
            p1 = repo("seedpub", &public.base_url(), "pluginRepository"),
            p2 = repo("seedpriv", &private.base_url(), "pluginRepository"),
            p3 = repo(
                "debian",
                &format!("file://{DEBIAN_MAVEN_REPO}"),
                "pluginRepository"
            ),
        ),
    )
    .unwrap();
    let mvn = |dir: &Path, args: &[&str]| {
        let mut c = Command::new("mvn");
        c.current_dir(dir)
            .arg("-B")
            .arg("-s")
            .arg(&settings)
            .args(args)
            .env("HOME", &env.home)
            .env("MAVEN_OPTS", format!("-Duser.home={}", env.home.display()))
            .env_remove("MAVEN_ARGS")
            .env_remove("M2_HOME")
            .env_remove("MAVEN_HOME");
        run(&mut c, Duration::from_secs(180))
    };

    // Real downloads: the public and private artifacts.
    let consumer = env.work.join("consumer");
    project(&consumer, &["seedpub", "seedhalf", "seedpriv"]);
    mvn(&consumer, &["validate"]).expect_success("mvn validate (resolves the build extensions)");
    // A real failed download: seedgone exists nowhere, Maven fails and leaves `.lastUpdated` markers.
    let gone = env.work.join("gone");
    project(&gone, &["seedgone"]);
    let out = mvn(&gone, &["validate"]);
    assert!(
        !out.success(),
        "mvn resolved an artifact nobody serves?\n{}",
        out.describe()
    );
    // A real local build: install:install-file records `>=` (no repository) in _remote.repositories.
    let local_jar = env.work.join("local.jar");
    std::fs::write(&local_jar, jar(5, 200)).unwrap();
    mvn(
        &consumer,
        &[
            &format!("org.apache.maven.plugins:maven-install-plugin:{install_plugin}:install-file"),
            &format!("-Dfile={}", local_jar.display()),
            "-DgroupId=org.seed",
            "-DartifactId=seedlocal",
            "-Dversion=1.0",
            "-Dpackaging=jar",
        ],
    )
    .expect_success("mvn install:install-file");

    let art = |a: &str, ext: &str| -> PathBuf {
        local_repo
            .join("org/seed")
            .join(a)
            .join("1.0")
            .join(format!("{a}-1.0.{ext}"))
    };
    for a in ["seedpub", "seedhalf", "seedpriv", "seedlocal"] {
        assert!(
            art(a, "jar").is_file(),
            "Maven left no {}",
            art(a, "jar").display()
        );
    }
    let remote = |a: &str| {
        std::fs::read_to_string(art(a, "jar").with_file_name("_remote.repositories")).unwrap()
    };
    assert!(
        remote("seedpub").contains("seedpub-1.0.jar>seedpub="),
        "{}",
        remote("seedpub")
    );
    assert!(
        remote("seedpriv").contains("seedpriv-1.0.jar>seedpriv="),
        "{}",
        remote("seedpriv")
    );
    assert!(
        remote("seedlocal").contains("seedlocal-1.0.jar>="),
        "{}",
        remote("seedlocal")
    );
    let last_updated = art("seedgone", "pom.lastUpdated");
    assert!(
        last_updated.is_file(),
        "the failed download left no {}",
        last_updated.display()
    );
    assert_eq!(
        std::fs::read(art("seedpub", "jar")).unwrap(),
        pub_jar,
        "Maven stored other bytes than the repository served"
    );

    // An interrupted write: seedhalf's jar truncated in place (its .sha1 no longer matches).
    let half = std::fs::read(art("seedhalf", "jar")).unwrap();
    std::fs::write(art("seedhalf", "jar"), &half[..half.len() / 2]).unwrap();

    env.write_pkgseed_config(&["maven:seedpub"], &[]);
    let _daemon = Daemon::start(&env, "maven");
    wait_first_scan(&env, Duration::from_secs(60));
    let mut steps = Steps::new();
    let pub_path = art("seedpub", "jar");
    let pom_path = art("seedpub", "pom");
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
                ("maven", "org.seed:seedpub", "maven:seedpub"),
                &pub_path,
                &pom_path,
                &served_sha1,
            );
        },
    );

    steps.run(
        "private repository's artifacts absent; maven:seedpriv private",
        || {
            let ls = langpkg::ls(&env);
            for p in [art("seedpriv", "jar"), art("seedpriv", "pom")] {
                assert!(
                    langpkg::ls_by_path(&ls, &p).is_none(),
                    "{} seeded",
                    p.display()
                );
            }
            assert!(
                !ls.iter().any(|e| e["origin"] == "maven:seedpriv"
                    || e["name"] == "org.codehaus.plexus:plexus-utils"),
                "{ls:#?}"
            );
            let o = origin_status(&env, "maven:seedpriv");
            assert_eq!(o["provenance"], "private", "{o}");
        },
    );

    steps.run("install:install-file artifact (`>=`) never seeded", || {
        let ls = langpkg::ls(&env);
        assert!(
            !ls.iter().any(|e| e["name"] == "org.seed:seedlocal"),
            "{ls:#?}"
        );
        let o = origin_status(&env, "maven:(installed locally)");
        assert_eq!(o["provenance"], "private", "{o}");
    });

    steps.run("truncated jar and .lastUpdated marker not seeded", || {
        let ls = langpkg::ls(&env);
        assert!(
            langpkg::ls_by_path(&ls, &art("seedhalf", "jar")).is_none(),
            "truncated jar seeded: {ls:#?}"
        );
        assert!(
            !ls.iter().any(|e| e["name"] == "org.seed:seedgone"
                || e["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(".lastUpdated") || p.ends_with(".sha1"))),
            "{ls:#?}"
        );
        let names = langpkg::seeded_file_names(&ls, "maven");
        assert_eq!(
            names,
            ["seedhalf-1.0.pom", "seedpub-1.0.jar", "seedpub-1.0.pom"],
            "only these maven files may be seeded: {ls:#?}"
        );
    });

    steps.run(
        "Helia fetches the public jar by root and checksum CID",
        || {
            let checksum_cid = raw_sha256_cid(&sha256_hex(&pub_jar));
            assert_ne!(root_cid, "", "no root CID from the first step");
            langpkg::assert_helia_fetches(&env, &[root_cid.clone(), checksum_cid], &pub_jar);
        },
    );

    steps.run(
        "deleting the version directory withdraws jar and pom",
        || {
            langpkg::wait_seeded(&env, &pub_path, Duration::from_secs(5));
            std::fs::remove_dir_all(pub_path.parent().unwrap()).unwrap();
            langpkg::wait_withdrawn(&env, &pub_path, Duration::from_secs(15));
            langpkg::wait_withdrawn(&env, &pom_path, Duration::from_secs(5));
        },
    );
    steps.finish();
}
