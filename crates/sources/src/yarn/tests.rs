//! Unit tests of the yarn v1 source against cache folders built in a temp dir in yarn's format.

use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use sha2::{Digest, Sha512};

use super::*;
use crate::OriginMarks;

const PUB: &str = "https://registry.test/";

fn policy() -> RegistryPolicy {
    RegistryPolicy {
        defaults: vec![(PUB.into(), "default".into())],
        scoped: vec![],
        credentialed: vec![],
        marks: OriginMarks::default(),
    }
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

/// Writes a cache entry the way yarn v1 does and returns the tarball path.
fn put(
    root: &Path,
    name: &str,
    version: &str,
    url: &str,
    bytes: &[u8],
    metadata: Option<String>,
) -> PathBuf {
    let dir = root
        .join("v6")
        .join(format!(
            "npm-{}-{version}-0123abcd-integrity",
            name.replace('/', "-")
        ))
        .join("node_modules")
        .join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(TARBALL), bytes).unwrap();
    let metadata = metadata.unwrap_or_else(|| {
        serde_json::json!({
            "manifest": {"name": name, "version": version},
            "artifacts": [],
            "remote": {"resolved": format!("{url}#0123abcd"), "type": "tarball", "reference": url,
                       "hash": "0123abcd", "integrity": sri(bytes), "registry": "npm", "packageName": name},
            "registry": "npm",
            "hash": "0123abcd"
        })
        .to_string()
    });
    fs::write(dir.join(METADATA), metadata).unwrap();
    dir.join(TARBALL)
}

#[test]
fn a_public_tarball_is_described_from_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let source = YarnSource::new(vec![dir.path().to_owned()], policy());
    let bytes = b"yarn tarball";
    let path = put(
        dir.path(),
        "is-number",
        "7.0.0",
        "https://registry.test/is-number/-/is-number-7.0.0.tgz",
        bytes,
        None,
    );
    assert!(source.is_candidate(&path));
    let id = source.describe(&path).unwrap();
    assert_eq!(
        (
            id.ecosystem,
            id.name.as_str(),
            id.version.as_str(),
            id.origin.as_str()
        ),
        ("yarn", "is-number", "7.0.0", PUB)
    );
    assert_eq!(id.checksum.unwrap().digest, Sha512::digest(bytes).to_vec());
    assert!(matches!(id.provenance, Provenance::Public { .. }));

    let scoped = put(
        dir.path(),
        "@acme/w",
        "1.0.0",
        "http://127.0.0.1:9/p/@acme/w/-/w-1.0.0.tgz",
        b"s",
        None,
    );
    assert!(source.is_candidate(&scoped));
    let id = source.describe(&scoped).unwrap();
    assert_eq!(
        (id.name.as_str(), id.origin.as_str()),
        ("@acme/w", "http://127.0.0.1:9/p/")
    );
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
}

#[test]
fn incomplete_mismatched_and_non_tarball_entries_are_not_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let source = YarnSource::new(vec![dir.path().to_owned()], policy());
    let url = "https://registry.test/a/-/a-1.0.0.tgz";
    // No metadata yet.
    let path = put(dir.path(), "a", "1.0.0", url, b"a", None);
    fs::remove_file(path.with_file_name(METADATA)).unwrap();
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // Empty tarball.
    let path = put(
        dir.path(),
        "b",
        "1.0.0",
        "https://registry.test/b/-/b-1.0.0.tgz",
        b"",
        None,
    );
    assert_eq!(source.describe(&path), Err(NotAnArtifact::Empty));
    // Manifest disagrees with the URL.
    let meta = serde_json::json!({"manifest": {"name": "c", "version": "9.9.9"},
        "remote": {"resolved": "https://registry.test/c/-/c-1.0.0.tgz", "type": "tarball", "integrity": sri(b"c")}});
    let path = put(dir.path(), "c", "1.0.0", "", b"c", Some(meta.to_string()));
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::BadName(_))
    ));
    // Only a sha1 recorded.
    let meta = serde_json::json!({"remote": {"resolved": "https://registry.test/d/-/d-1.0.0.tgz", "type": "tarball", "hash": "00"}});
    let path = put(dir.path(), "d", "1.0.0", "", b"d", Some(meta.to_string()));
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // A git dependency is never public even on the default host.
    let meta = serde_json::json!({"remote": {"resolved": "https://registry.test/e/-/e-1.0.0.tgz", "type": "git", "integrity": sri(b"e")}});
    let path = put(dir.path(), "e", "1.0.0", "", b"e", Some(meta.to_string()));
    assert!(matches!(
        source.describe(&path).unwrap().provenance,
        Provenance::Private { .. }
    ));
    // Hostile metadata.
    for bad in [
        "",
        "[]",
        "{",
        "{\"remote\":5}",
        "{\"remote\":{\"resolved\":7}}",
        "\u{0}",
    ] {
        let path = put(dir.path(), "f", "1.0.0", "", b"f", Some(bad.to_owned()));
        assert!(source.describe(&path).is_err(), "{bad:?}");
        let _ = parse_yarn_metadata(bad.as_bytes());
    }
    // Staging dirs and other files are not candidates.
    assert!(!source.is_candidate(
        &dir.path()
            .join("v6/.tmp/x/node_modules/a/.yarn-tarball.tgz")
    ));
    assert!(!source.is_candidate(
        &dir.path()
            .join("v6/npm-a-1.0.0-x/node_modules/a/.yarn-metadata.json")
    ));
    assert!(!source.is_candidate(&dir.path().join("v6/npm-a-1.0.0-x/node_modules/a/index.js")));
    assert!(!source.is_candidate(
        &dir.path()
            .join("other/npm-a-1.0.0-x/node_modules/a/.yarn-tarball.tgz")
    ));
}

#[test]
fn cache_folders_follow_the_environment() {
    let mut env = SourceEnv {
        home: Some(PathBuf::from("/home/u")),
        ..Default::default()
    };
    env.vars
        .insert("YARN_CACHE_FOLDER".into(), "/tmp/yc".into());
    assert_eq!(yarn_cache_folders(&env), vec![PathBuf::from("/tmp/yc")]);
    env.vars.clear();
    if cfg!(all(unix, not(target_os = "macos"))) {
        assert_eq!(
            yarn_cache_folders(&env),
            vec![PathBuf::from("/home/u/.cache/yarn")]
        );
        env.vars.insert("XDG_CACHE_HOME".into(), "/x".into());
        assert_eq!(yarn_cache_folders(&env), vec![PathBuf::from("/x/yarn")]);
    }
}

#[test]
fn scoped_packages_on_the_default_registry_are_not_seeded_unless_their_scope_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let scoped = put(
        dir.path(),
        "@corp/y",
        "1.0.0",
        "https://registry.test/@corp/y/-/y-1.0.0.tgz",
        b"corp",
        None,
    );
    let id = YarnSource::new(vec![dir.path().to_owned()], policy())
        .describe(&scoped)
        .unwrap();
    assert_eq!(id.origin, "https://registry.test/@corp/");
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
    let mut p = policy();
    p.marks.public.push("https://registry.test/@corp/".into());
    let id = YarnSource::new(vec![dir.path().to_owned()], p)
        .describe(&scoped)
        .unwrap();
    assert!(matches!(id.provenance, Provenance::Public { .. }));
}
