//! Unit tests of the npm source against `_cacache` dirs built in a temp dir in cacache's format.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};

use super::*;
use crate::OriginMarks;

const PUB: &str = "https://registry.test/";
const PRIV: &str = "http://127.0.0.1:4873/private/";

fn policy() -> RegistryPolicy {
    RegistryPolicy {
        defaults: vec![(PUB.into(), "default".into())],
        scoped: vec![(PRIV.into(), "@acme".into())],
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

struct Cache {
    dir: tempfile::TempDir,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn cacache(&self) -> PathBuf {
        self.dir.path().join("_cacache")
    }
    fn source(&self, policy: RegistryPolicy) -> NpmSource {
        NpmSource::new(self.dir.path().to_owned(), policy)
    }
    fn put_content(&self, bytes: &[u8]) -> PathBuf {
        let hex = hex::encode(Sha512::digest(bytes));
        let path = self
            .cacache()
            .join("content-v2/sha512")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex[4..]);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }
    fn bucket(&self, key: &str) -> PathBuf {
        let hex = hex::encode(Sha256::digest(key.as_bytes()));
        self.cacache()
            .join("index-v5")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex[4..])
    }
    fn append_raw(&self, key: &str, raw: &str) {
        let path = self.bucket(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut old = fs::read_to_string(&path).unwrap_or_default();
        old.push_str(raw);
        fs::write(&path, old).unwrap();
    }
    fn insert(&self, key: &str, integrity: Option<&str>) {
        let json = serde_json::json!({"key": key, "integrity": integrity, "time": 1, "size": 3, "metadata": {}});
        self.append_raw(key, &bucket_line(&json.to_string()));
    }
}

/// What the engine does when npm cached something: a settled `tmp` path asks for a look at `index-v5`, and that
/// look names the blobs to look at again.
/// (The looks' spacing is left out: `looks_are_spaced_while_npm_writes_and_one_follows_the_last_write`.)
fn look(source: &NpmSource, cache: &Cache) -> Vec<PathBuf> {
    let tmp = cache.cacache().join("tmp/d8a5c0e1");
    let index_dir = cache.cacache().join("index-v5");
    assert_eq!(source.artifacts_for_sidecar(&tmp), vec![index_dir.clone()]);
    *source.looks.lock().unwrap() = Looks::default();
    source.artifacts_for_sidecar(&index_dir)
}

#[test]
fn looks_are_spaced_while_npm_writes_and_one_follows_the_last_write() {
    let cache = Cache::new();
    let source = cache.source(policy());
    let tmp = cache.cacache().join("tmp/0f3e9a21");
    let index_dir = cache.cacache().join("index-v5");
    let bytes = b"spaced";
    let path = cache.put_content(bytes);
    let key = url_key("https://registry.test/s/-/s-1.0.0.tgz");
    // No write yet: a look (a scan's, say) asks for nothing more.
    assert!(source.artifacts_for_sidecar(&index_dir).is_empty());
    assert_eq!(source.look_again_in(&index_dir), None);
    *source.looks.lock().unwrap() = Looks::default();
    // npm writes: the first look is at once, and one more is asked for a gap later.
    assert_eq!(source.artifacts_for_sidecar(&tmp), vec![index_dir.clone()]);
    assert_eq!(source.look_again_in(&tmp), None);
    cache.insert(&key, Some(&sri(bytes)));
    assert_eq!(source.artifacts_for_sidecar(&index_dir), vec![path.clone()]);
    let again = source.look_again_in(&index_dir).expect("a follow-up look");
    assert!(again > LOOK_GAP / 2 && again <= LOOK_GAP, "{again:?}");
    assert_eq!(source.look_again_in(&index_dir), None, "asked once");
    // npm writes again within the gap: that look is put off, to the end of the gap.
    source.artifacts_for_sidecar(&tmp);
    assert!(source.artifacts_for_sidecar(&index_dir).is_empty());
    assert!(source
        .look_again_in(&index_dir)
        .is_some_and(|d| d <= LOOK_GAP));
    // After the gap: the look happens, and as a write asked for it, one more follows.
    std::thread::sleep(LOOK_GAP);
    assert_eq!(source.artifacts_for_sidecar(&index_dir), vec![path.clone()]);
    assert!(source.look_again_in(&index_dir).is_some());
    // That last look, with no write since, asks for nothing more.
    std::thread::sleep(LOOK_GAP);
    source.artifacts_for_sidecar(&index_dir);
    assert_eq!(source.look_again_in(&index_dir), None);
}

/// Sets the modification time of `path` (a file or a directory).
fn set_mtime(path: &Path, at: std::time::SystemTime) {
    fs::File::open(path).unwrap().set_modified(at).unwrap();
}

fn url_key(url: &str) -> String {
    format!("{REQUEST_CACHE}{url}")
}

#[test]
fn tarball_urls_parse_into_origin_name_and_version() {
    let t = parse_tarball_url("https://registry.test/is-number/-/is-number-7.0.0.tgz").unwrap();
    assert_eq!(
        (t.origin.as_str(), t.name.as_str(), t.version.as_str()),
        (PUB, "is-number", "7.0.0")
    );
    let t =
        parse_tarball_url("http://127.0.0.1:4873/private/@acme/widget/-/widget-1.2.3-beta.1.tgz")
            .unwrap();
    assert_eq!(
        (t.origin.as_str(), t.name.as_str(), t.version.as_str()),
        (PRIV, "@acme/widget", "1.2.3-beta.1")
    );
    let t = parse_tarball_url(
        "HTTPS://user:secret@Registry.Test:443/@acme%2fwidget/-/widget-2.0.0.tgz#abc",
    )
    .unwrap();
    assert_eq!((t.origin.as_str(), t.name.as_str()), (PUB, "@acme/widget"));
    // A name containing `-` and digits.
    let t = parse_tarball_url("https://registry.test/a-1/-/a-1-1.0.0.tgz").unwrap();
    assert_eq!((t.name.as_str(), t.version.as_str()), ("a-1", "1.0.0"));
    for bad in [
        "https://registry.test/is-number",
        "https://registry.test/is-number/-/other-7.0.0.tgz",
        "https://registry.test/is-number/-/is-number-.tgz",
        "https://registry.test/is-number/-/is-number-x.tgz",
        "https://registry.test/../x/-/x-1.0.0.tgz",
        "https://registry.test/%zz/-/x-1.0.0.tgz",
        "file:///tmp/x/-/x-1.0.0.tgz",
        "git+ssh://host/x/-/x-1.0.0.tgz",
        "https:///x/-/x-1.0.0.tgz",
        "",
        "https://",
        "https://h/-/-1.tgz",
        "https://h/\u{0}/-/\u{0}-1.0.0.tgz",
    ] {
        assert_eq!(parse_tarball_url(bad), None, "{bad:?}");
    }
    assert_eq!(
        normalize_registry("https://Registry.Test").as_deref(),
        Some(PUB)
    );
    assert_eq!(
        normalize_registry("http://127.0.0.1:4873/private").as_deref(),
        Some(PRIV)
    );
    assert_eq!(normalize_registry("ftp://x/"), None);
}

#[test]
fn sri_sha512_is_decoded_to_64_raw_bytes() {
    let digest = Sha512::digest(b"abc");
    let s = format!(
        "sha1-AAAA sha512-{}?opt",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    assert_eq!(parse_sri_sha512(&s).unwrap(), digest.to_vec());
    assert_eq!(parse_sri_sha512("sha512-AAAA"), None);
    assert_eq!(parse_sri_sha512("sha512-!!!"), None);
    assert_eq!(parse_sri_sha512("sha256-abc"), None);
}

#[test]
fn bucket_parsing_keeps_the_last_valid_line_per_key_and_drops_deletions() {
    let a = r#"{"key":"a","integrity":"sha512-1","time":1}"#;
    let a2 = r#"{"key":"a","integrity":"sha512-2","time":2}"#;
    let b = r#"{"key":"b","integrity":"sha512-3","time":3}"#;
    let b_del = r#"{"key":"b","integrity":null,"time":4}"#;
    let torn = r#"{"key":"a","integrity":"sha512-9""#;
    let mut text = format!(
        "{}{}{}{}",
        bucket_line(a),
        bucket_line(b),
        bucket_line(a2),
        bucket_line(b_del)
    );
    // A line with a wrong hash and a torn append are ignored.
    text.push_str(&format!(
        "\n{}\t{}",
        "0".repeat(40),
        r#"{"key":"a","integrity":"sha512-bad"}"#
    ));
    text.push_str(&bucket_line(torn)[..20]);
    let entries = parse_index_bucket(text.as_bytes());
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].key.as_str(),
            entries[0].integrity.as_str(),
            entries[0].time
        ),
        ("a", "sha512-2", 2)
    );
}

#[test]
fn bucket_parsing_never_panics_on_hostile_input() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"\n\n\t\t\n".to_vec(),
        vec![0xff, 0xfe, b'\t', 0x80],
        bucket_line("[]").into_bytes(),
        bucket_line("{\"key\":5}").into_bytes(),
        bucket_line("{\"key\":\"k\",\"integrity\":7,\"time\":-1}").into_bytes(),
        bucket_line("\"x\"").into_bytes(),
        "a\tb\n".repeat(1000).into_bytes(),
    ];
    for input in inputs {
        let _ = parse_index_bucket(&input);
    }
    let env = SourceEnv::default();
    for text in [
        "=",
        "==",
        "[x]\nk=\"",
        "${",
        "a=${B",
        "@s:registry=${X}",
        "\u{0}=\u{0}",
    ] {
        let _ = parse_npmrc(text, &env);
    }
}

#[test]
fn a_public_tarball_is_described_with_its_integrity() {
    let cache = Cache::new();
    let bytes = b"tarball bytes";
    let path = cache.put_content(bytes);
    let url = "https://registry.test/is-number/-/is-number-7.0.0.tgz";
    cache.insert(&url_key(url), Some(&sri(bytes)));
    let source = cache.source(policy());
    assert!(source.is_candidate(&path));
    let id = source.describe(&path).unwrap();
    assert_eq!(id.ecosystem, "npm");
    assert_eq!(
        (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
        ("is-number", "7.0.0", PUB)
    );
    let sum = id.checksum.unwrap();
    assert_eq!(sum.algo, ChecksumAlgo::Sha512);
    assert_eq!(sum.digest, Sha512::digest(bytes).to_vec());
    assert!(matches!(id.provenance, Provenance::Public { .. }));
}

#[test]
fn scoped_registry_tarballs_are_private_and_marks_apply() {
    let cache = Cache::new();
    let bytes = b"private bytes";
    let path = cache.put_content(bytes);
    cache.insert(
        &url_key("http://127.0.0.1:4873/private/@acme/widget/-/widget-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    let id = cache.source(policy()).describe(&path).unwrap();
    assert_eq!(
        (id.name.as_str(), id.origin.as_str()),
        ("@acme/widget", PRIV)
    );
    assert!(
        matches!(id.provenance, Provenance::Private { .. }),
        "{:?}",
        id.provenance
    );
    // A public mark (written without the trailing slash) makes it public; a private mark beats everything.
    let mut p = policy();
    p.marks.public.push("http://127.0.0.1:4873/private".into());
    assert!(matches!(
        cache.source(p.clone()).describe(&path).unwrap().provenance,
        Provenance::Public { .. }
    ));
    p.marks.private.push(PRIV.into());
    assert!(matches!(
        cache.source(p).describe(&path).unwrap().provenance,
        Provenance::Private { .. }
    ));
    // Marking the default registry private wins over the default.
    let bytes2 = b"public";
    let path2 = cache.put_content(bytes2);
    cache.insert(
        &url_key("https://registry.test/x/-/x-1.0.0.tgz"),
        Some(&sri(bytes2)),
    );
    let mut p = policy();
    p.marks.private.push(PUB.into());
    assert!(matches!(
        cache.source(p).describe(&path2).unwrap().provenance,
        Provenance::Private { .. }
    ));
}

#[test]
fn unknown_registries_and_missing_defaults_are_unknown() {
    let cache = Cache::new();
    let bytes = b"mirror bytes";
    let path = cache.put_content(bytes);
    cache.insert(
        &url_key("https://mirror.test/npm/x/-/x-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    let id = cache.source(policy()).describe(&path).unwrap();
    assert_eq!(id.origin, "https://mirror.test/npm/");
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
    let bytes = b"default bytes";
    let path = cache.put_content(bytes);
    cache.insert(
        &url_key("https://registry.test/y/-/y-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    // npm absent: no default registry known, nothing is public.
    let id = cache
        .source(RegistryPolicy::default())
        .describe(&path)
        .unwrap();
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
}

#[test]
fn local_tarballs_are_private_and_packuments_are_not_artifacts() {
    let cache = Cache::new();
    let local = b"npm pack output";
    let path = cache.put_content(local);
    cache.insert("pacote:tarball:file:/home/me/src/pkg", Some(&sri(local)));
    let id = cache.source(policy()).describe(&path).unwrap();
    assert_eq!((id.origin.as_str(), id.name.as_str()), ("file:", "pkg"));
    assert!(matches!(id.provenance, Provenance::Private { .. }));

    let packument = br#"{"name":"is-number","versions":{}}"#;
    let path = cache.put_content(packument);
    cache.insert(
        &url_key("https://registry.test/is-number"),
        Some(&sri(packument)),
    );
    assert_eq!(
        cache.source(policy()).describe(&path),
        Err(NotAnArtifact::NotCandidate)
    );

    // Only a pacote spec entry: unknown origin, name and version from the spec.
    let spec_only = b"spec only";
    let path = cache.put_content(spec_only);
    cache.insert("pacote:tarball:@acme/thing@1.0.0", Some(&sri(spec_only)));
    let id = cache.source(policy()).describe(&path).unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
        ("@acme/thing", "1.0.0", "unknown")
    );
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
}

#[test]
fn the_same_blob_under_public_and_local_keys_is_public() {
    let cache = Cache::new();
    let bytes = b"shared";
    let path = cache.put_content(bytes);
    cache.insert("pacote:tarball:file:/tmp/x.tgz", Some(&sri(bytes)));
    cache.insert(
        &url_key("https://registry.test/x/-/x-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    let id = cache.source(policy()).describe(&path).unwrap();
    assert!(matches!(id.provenance, Provenance::Public { .. }));
}

#[test]
fn unindexed_deleted_empty_and_temp_files_are_not_seeded() {
    let cache = Cache::new();
    let source = cache.source(policy());
    // No index entry.
    let orphan = cache.put_content(b"orphan");
    assert!(matches!(
        source.describe(&orphan),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // An entry deleted by `cacache.rm` (integrity null).
    let bytes = b"removed";
    let path = cache.put_content(bytes);
    let key = url_key("https://registry.test/r/-/r-1.0.0.tgz");
    cache.insert(&key, Some(&sri(bytes)));
    // npm's write (the engine's watcher) takes it into the view.
    look(&source, &cache);
    assert!(source.describe(&path).is_ok());
    cache.insert(&key, None);
    // The same source sees the deletion at once: a lookup reads the buckets it names again.
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // Zero-length content (cannot be a real blob: its name would be the sha512 of nothing).
    let empty = cache.put_content(b"");
    assert_eq!(source.describe(&empty), Err(NotAnArtifact::Empty));
    // tmp/ and index files are not candidates.
    let tmp = cache.cacache().join("tmp/abcdef");
    fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    fs::write(&tmp, b"partial").unwrap();
    assert!(!source.is_candidate(&tmp));
    assert!(!source.is_candidate(&cache.bucket(&key)));
    assert!(!source.is_candidate(&cache.cacache().join("content-v2/sha1/ab/cd/ef")));
    assert!(!source.is_candidate(Path::new("/elsewhere/content-v2/sha512/ab/cd/x")));
}

/// A new tarball does not wait for a walk of every bucket (≈ 1.3 s at 100k tarballs): npm's write in `tmp` asks
/// for a look at the bucket directories changed since the last look, which takes the new bucket into the view and
/// names its blob. A walk is for a blob whose entry the view cannot have seen (newer than the last walk), else at
/// most once a second.
#[test]
fn a_new_tarball_is_found_through_a_look_at_changed_bucket_dirs_not_a_walk() {
    let cache = Cache::new();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let two_hours_ago = an_hour_ago - std::time::Duration::from_secs(3600);
    let older = b"an older tarball";
    let older_key = url_key("https://registry.test/o/-/o-1.0.0.tgz");
    let older_path = cache.put_content(older);
    cache.insert(&older_key, Some(&sri(older)));
    // Cached two hours before the daemon started: the first scan's, not a look's.
    set_mtime(&cache.bucket(&older_key), two_hours_ago);
    set_mtime(cache.bucket(&older_key).parent().unwrap(), two_hours_ago);
    let source = cache.source(policy());
    assert!(look(&source, &cache).is_empty());
    assert_eq!(source.describe(&older_path).unwrap().name, "o");
    let bytes = b"a blob older than the walk";
    let path = cache.put_content(bytes);
    set_mtime(&path, an_hour_ago);
    let key = url_key("https://registry.test/y/-/y-1.0.0.tgz");
    cache.insert(&key, Some(&sri(bytes)));
    // Within a second of the last walk, a miss for a blob older than that walk does not walk again.
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    assert_eq!(source.index.lock().unwrap().by_content.len(), 1);
    // npm's write: the new bucket (in a directory changed since the last look) is taken into the view, and its
    // blob is named.
    assert_eq!(look(&source, &cache), vec![path.clone()]);
    assert_eq!(source.describe(&path).unwrap().name, "y");
    // A directory not changed since the last look is not listed again.
    set_mtime(&cache.bucket(&key), two_hours_ago);
    set_mtime(cache.bucket(&key).parent().unwrap(), two_hours_ago);
    assert!(look(&source, &cache).is_empty());
    // A blob newer than the last walk, whose look has not come yet: its miss walks at once.
    let fresh = b"a blob newer than the walk";
    let fresh_path = cache.put_content(fresh);
    let fresh_key = url_key("https://registry.test/f/-/f-1.0.0.tgz");
    cache.insert(&fresh_key, Some(&sri(fresh)));
    assert_eq!(source.describe(&fresh_path).unwrap().name, "f");
    // That walk took the bucket into the view, but the look still names its blob (the walk handed it to nobody):
    // a look reaches back to the last look, however recent the last walk (here: the bucket was written half an
    // hour ago, the last walk was just now and the last look an hour ago).
    let half_an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(1800);
    set_mtime(&cache.bucket(&fresh_key), half_an_hour_ago);
    set_mtime(cache.bucket(&fresh_key).parent().unwrap(), half_an_hour_ago);
    source.index.lock().unwrap().swept_at = an_hour_ago;
    assert_eq!(look(&source, &cache), vec![fresh_path.clone()]);
    // A bucket seen again (another look, a later walk) is not added twice.
    std::thread::sleep(REFRESH_EVERY);
    assert!(matches!(
        source.describe(&cache.put_content(b"unindexed")),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    let view = source.index.lock().unwrap();
    assert_eq!((view.by_content.len(), view.buckets.len()), (3, 3));
}

#[test]
fn an_index_line_that_lands_late_points_back_at_its_blob() {
    let cache = Cache::new();
    let bytes = b"blob before index";
    let path = cache.put_content(bytes);
    let source = cache.source(policy());
    let key = url_key("https://registry.test/late/-/late-1.0.0.tgz");
    // Described before its line exists: not seeded yet.
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    cache.insert(&key, Some(&sri(bytes)));
    // The bucket names the blob, so the engine looks at it again at once.
    assert_eq!(look(&source, &cache), vec![path.clone()]);
    assert_eq!(source.describe(&path).unwrap().name, "late");
    // An entry removed (cacache.rm.entry appends a deletion): its blob is looked at again, and is no longer seeded.
    cache.insert(&key, None);
    assert_eq!(look(&source, &cache), vec![path.clone()]);
    assert!(matches!(
        source.describe(&path),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    // An entry whose blob is absent is named too (the engine finds it gone); a packument entry, a bucket and a
    // blob point at nothing.
    let packument = b"{\"name\":\"late\"}";
    cache.put_content(packument);
    let pkey = url_key("https://registry.test/late");
    cache.insert(&pkey, Some(&sri(packument)));
    let gone = url_key("https://registry.test/gone/-/gone-1.0.0.tgz");
    cache.insert(&gone, Some(&sri(b"never stored")));
    let named = look(&source, &cache);
    assert!(named.contains(&path), "{named:?}");
    let unseen: Vec<&PathBuf> = named.iter().filter(|p| **p != path).collect();
    assert_eq!(unseen.len(), 1, "only the absent tarball's blob: {named:?}");
    assert!(source.is_candidate(unseen[0]) && !unseen[0].exists());
    assert!(source.artifacts_for_sidecar(&path).is_empty());
    assert!(source
        .artifacts_for_sidecar(&cache.bucket(&gone))
        .is_empty());
    // Only tmp is watched.
    assert_eq!(source.watch_roots(), vec![cache.cacache().join("tmp")]);
    // A git clone pacote makes in tmp asks for a look, not for a scan of every root; elsewhere a new dir does.
    let clone = cache.cacache().join("tmp/git-clone-3fa1b2c4");
    assert!(!source.new_dir_needs_scan(&clone));
    assert!(!source.new_dir_needs_scan(&clone.join("lib")));
    assert_eq!(
        source.artifacts_for_sidecar(&clone),
        vec![cache.cacache().join("index-v5")]
    );
    assert!(source.artifacts_for_sidecar(&clone.join("lib")).is_empty());
    assert!(source.new_dir_needs_scan(&cache.cacache().join("content-v2/sha512/ab")));
}

#[test]
fn integrity_mismatch_with_the_content_address_is_ignored() {
    let cache = Cache::new();
    let path = cache.put_content(b"one");
    // The entry's integrity names other content: it does not describe this blob.
    cache.insert(
        &url_key("https://registry.test/o/-/o-1.0.0.tgz"),
        Some(&sri(b"two")),
    );
    assert!(cache.source(policy()).describe(&path).is_err());
}

#[cfg(unix)]
#[test]
fn symlinked_content_is_refused() {
    let cache = Cache::new();
    let bytes = b"linked";
    let real = cache.dir.path().join("outside");
    fs::write(&real, bytes).unwrap();
    let hex = hex::encode(Sha512::digest(bytes));
    let path = cache
        .cacache()
        .join("content-v2/sha512")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex[4..]);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    cache.insert(
        &url_key("https://registry.test/l/-/l-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    assert!(matches!(
        cache.source(policy()).describe(&path),
        Err(NotAnArtifact::Confinement(_))
    ));
}

#[test]
fn cache_dir_and_scoped_registries_come_from_env_and_npmrc() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let mut env = SourceEnv {
        home: Some(home.clone()),
        ..Default::default()
    };
    env.vars.insert(
        "npm_config_globalconfig".into(),
        home.join("none").display().to_string(),
    );
    assert_eq!(npm_cache_dir(&env), Some(home.join(".npm")));
    fs::write(
        home.join(".npmrc"),
        "; comment\ncache=~/c\n@acme:registry=http://127.0.0.1:4873/private\n@other:registry = \"${REG}\"\n",
    )
    .unwrap();
    env.vars
        .insert("REG".into(), "https://other.test/x/".into());
    assert_eq!(npm_cache_dir(&env), Some(home.join("c")));
    env.vars
        .insert("npm_config_@env:registry".into(), "https://env.test".into());
    let scoped = registry::scoped_registries(&env);
    assert!(
        scoped.contains(&(PRIV.into(), "@acme".into())),
        "{scoped:?}"
    );
    assert!(
        scoped.contains(&("https://other.test/x/".into(), "@other".into())),
        "{scoped:?}"
    );
    assert!(
        scoped.contains(&("https://env.test/".into(), "@env".into())),
        "{scoped:?}"
    );
    env.vars.insert("npm_config_cache".into(), "/x/y".into());
    assert_eq!(npm_cache_dir(&env), Some(PathBuf::from("/x/y")));
}

#[test]
fn scoped_tarballs_on_a_public_registry_get_a_scope_origin_and_are_not_seeded_unmarked() {
    let cache = Cache::new();
    let bytes = b"scoped on the default registry";
    let path = cache.put_content(bytes);
    cache.insert(
        &url_key("https://registry.test/@corp/secret/-/secret-1.0.0.tgz"),
        Some(&sri(bytes)),
    );
    let id = cache.source(policy()).describe(&path).unwrap();
    assert_eq!(
        (id.name.as_str(), id.origin.as_str()),
        ("@corp/secret", "https://registry.test/@corp/")
    );
    assert!(
        matches!(&id.provenance, Provenance::Unknown { reason } if reason.contains("@corp")),
        "{:?}",
        id.provenance
    );
    // Marking the scope origin public seeds it; marking the registry alone does not.
    let mut p = policy();
    p.marks.public.push(PUB.into());
    assert!(matches!(
        cache.source(p.clone()).describe(&path).unwrap().provenance,
        Provenance::Unknown { .. }
    ));
    p.marks.public.push("https://registry.test/@corp".into());
    assert!(matches!(
        cache.source(p.clone()).describe(&path).unwrap().provenance,
        Provenance::Public { .. }
    ));
    p.marks.private.push("https://registry.test/@corp/".into());
    assert!(matches!(
        cache.source(p).describe(&path).unwrap().provenance,
        Provenance::Private { .. }
    ));
    // Unscoped names on the same registry stay public.
    let plain = b"plain";
    let plain_path = cache.put_content(plain);
    cache.insert(
        &url_key("https://registry.test/plain/-/plain-1.0.0.tgz"),
        Some(&sri(plain)),
    );
    let id = cache.source(policy()).describe(&plain_path).unwrap();
    assert_eq!(id.origin, PUB);
    assert!(matches!(id.provenance, Provenance::Public { .. }));
}

#[test]
fn credentials_or_a_scope_mapping_for_the_public_registry_make_its_scopes_private() {
    let url = parse_tarball_url("https://registry.test/@corp/x/-/x-1.0.0.tgz").unwrap();
    let mut p = policy();
    p.credentialed = vec!["registry.test".into()];
    assert!(matches!(
        p.tarball_provenance(&url).1,
        Provenance::Private { .. }
    ));
    p.credentialed = vec!["*".into()];
    assert!(matches!(
        p.tarball_provenance(&url).1,
        Provenance::Private { .. }
    ));
    p.credentialed = vec!["other.test".into()];
    assert!(matches!(
        p.tarball_provenance(&url).1,
        Provenance::Unknown { .. }
    ));
    p.scoped.push((PUB.into(), "@corp".into()));
    assert!(matches!(
        p.tarball_provenance(&url).1,
        Provenance::Private { .. }
    ));
    // The user's own mark on the scope origin still wins over the hint.
    p.marks.public.push("https://registry.test/@corp/".into());
    assert!(matches!(
        p.tarball_provenance(&url).1,
        Provenance::Public { .. }
    ));
}

#[test]
fn credentialed_hosts_come_from_npmrc_auth_keys() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join(".npmrc"),
        "//registry.test/:_authToken=${TOKEN}\n//other.test:8080/npm/:_auth=abc\n//empty.test/:_authToken=\n//nocred.test/:always-auth=true\n_authToken=top\n",
    )
    .unwrap();
    let env = SourceEnv {
        home: Some(home.path().to_owned()),
        vars: [
            ("TOKEN".to_owned(), "t".to_owned()),
            ("npm_config_//env.test/:_authToken".into(), "e".into()),
            (
                "npm_config_globalconfig".into(),
                home.path().join("none").display().to_string(),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let mut hosts = registry::credentialed_hosts(&env);
    hosts.sort();
    assert_eq!(hosts, ["*", "env.test", "other.test:8080", "registry.test"]);
}

#[test]
fn a_cached_response_for_one_user_is_private_on_any_registry() {
    for (metadata, expect) in [
        (
            serde_json::json!({"resHeaders": {"cache-control": "private, max-age=300"}}),
            "cache-control: private",
        ),
        (
            serde_json::json!({"resHeaders": {"Cache-Control": "no-store"}}),
            "cache-control: no-store",
        ),
        (
            serde_json::json!({"reqHeaders": {"authorization": "Bearer x"}}),
            "authorization header",
        ),
        (
            serde_json::json!({"resHeaders": {"vary": "Accept, Authorization"}}),
            "authorization",
        ),
    ] {
        let cache = Cache::new();
        let bytes = b"unscoped but private";
        let path = cache.put_content(bytes);
        let key = url_key("https://registry.test/plain/-/plain-1.0.0.tgz");
        let json = serde_json::json!({"key": key, "integrity": sri(bytes), "time": 1, "metadata": metadata});
        cache.append_raw(&key, &bucket_line(&json.to_string()));
        let id = cache.source(policy()).describe(&path).unwrap();
        assert!(
            matches!(&id.provenance, Provenance::Private { reason } if reason.contains(expect)),
            "{metadata}: {:?}",
            id.provenance
        );
    }
    let public = serde_json::json!({"resHeaders": {"cache-control": "public, max-age=300", "vary": "accept-encoding, accept"}, "reqHeaders": {"accept": "*/*"}});
    assert_eq!(cacache::private_response_evidence(&public), None);
}

#[test]
fn a_scope_wildcard_marks_every_scope_of_its_registry_public_but_no_private_one() {
    let corp = parse_tarball_url("https://registry.test/@corp/x/-/x-1.0.0.tgz").unwrap();
    let open = parse_tarball_url("https://registry.test/@open/y/-/y-2.0.0.tgz").unwrap();
    let elsewhere = parse_tarball_url("https://mirror.test/npm/@open/y/-/y-2.0.0.tgz").unwrap();
    let mut p = policy();
    // Written without the registry's trailing slash: the same registry.
    p.marks.public.push("https://registry.test@*".into());
    for url in [&corp, &open] {
        let (origin, provenance) = p.tarball_provenance(url);
        assert_eq!(
            origin,
            format!("{PUB}{}/", url.name.split('/').next().unwrap())
        );
        assert!(
            matches!(&provenance, Provenance::Public { evidence } if evidence.contains("https://registry.test/@*")),
            "{provenance:?}"
        );
    }
    // Another registry's scopes are not covered, and the wildcard does not make a registry public.
    assert!(matches!(
        p.tarball_provenance(&elsewhere).1,
        Provenance::Unknown { .. }
    ));
    p.marks.public.push("https://mirror.test/npm/@*".into());
    assert!(matches!(
        p.tarball_provenance(&elsewhere).1,
        Provenance::Unknown { .. }
    ));
    // An explicit private scope wins over the wildcard.
    p.marks.private.push("https://registry.test/@corp/".into());
    assert!(matches!(
        p.tarball_provenance(&corp).1,
        Provenance::Private { .. }
    ));
    assert!(matches!(
        p.tarball_provenance(&open).1,
        Provenance::Public { .. }
    ));
    // Credentials for the registry's host, or a scope mapped to it, keep its scopes private under the wildcard;
    // a mark on the scope itself still speaks for that scope.
    let mut p = policy();
    p.marks.public.push("https://registry.test/@*".into());
    p.credentialed = vec!["registry.test".into()];
    assert!(
        matches!(&p.tarball_provenance(&open).1, Provenance::Private { reason } if reason.contains("@* does not cover")),
        "{:?}",
        p.tarball_provenance(&open).1
    );
    p.marks.public.push("https://registry.test/@open/".into());
    assert!(matches!(
        p.tarball_provenance(&open).1,
        Provenance::Public { .. }
    ));
    p.credentialed.clear();
    p.scoped.push((PUB.into(), "@corp".into()));
    assert!(matches!(
        p.tarball_provenance(&corp).1,
        Provenance::Private { .. }
    ));
    // Unscoped names keep the registry's provenance.
    let plain = parse_tarball_url("https://registry.test/plain/-/plain-1.0.0.tgz").unwrap();
    assert_eq!(p.tarball_provenance(&plain).0, PUB);
}

#[test]
fn a_cached_response_for_one_user_stays_private_under_a_scope_wildcard() {
    let cache = Cache::new();
    let bytes = b"scoped and for one user";
    let path = cache.put_content(bytes);
    let key = url_key("https://registry.test/@corp/x/-/x-1.0.0.tgz");
    let json = serde_json::json!({"key": key, "integrity": sri(bytes), "time": 1,
        "metadata": {"resHeaders": {"cache-control": "private"}}});
    cache.append_raw(&key, &bucket_line(&json.to_string()));
    let mut p = policy();
    p.marks.public.push("https://registry.test/@*".into());
    let id = cache.source(p).describe(&path).unwrap();
    assert!(
        matches!(&id.provenance, Provenance::Private { reason } if reason.contains("cache-control: private")),
        "{:?}",
        id.provenance
    );
}

#[test]
fn scope_wildcards_are_recognised_and_malformed_ones_refused() {
    assert_eq!(
        registry::scope_wildcard_registry("https://registry.test/"),
        None
    );
    assert_eq!(
        registry::scope_wildcard_registry("https://registry.test/@*"),
        Some(Ok(PUB.to_owned()))
    );
    assert_eq!(
        registry::scope_wildcard_registry("HTTP://127.0.0.1:4873/npm@*"),
        Some(Ok("http://127.0.0.1:4873/npm/".to_owned()))
    );
    assert_eq!(
        registry::scope_wildcard_for("https://registry.test/@corp/").as_deref(),
        Some("https://registry.test/@*")
    );
    assert_eq!(
        registry::scope_wildcard_for("http://127.0.0.1:4873/npm").as_deref(),
        Some("http://127.0.0.1:4873/npm/@*")
    );
    assert_eq!(registry::scope_wildcard_for("file:"), None);
    for bad in [
        "*",
        "@*",
        "https://registry.test/*",
        "https://registry.test/@corp*",
        "https://registry.test/@corp/@*",
        "https://*.test/@*",
        "file:/x/@*",
    ] {
        let err = registry::scope_wildcard_registry(bad)
            .expect("a * is a wildcard")
            .expect_err(bad);
        assert!(err.contains("@*"), "{bad}: {err}");
    }
}

/// The view keeps only which bucket names which content (as cacache names buckets: 32 bytes each), every lookup
/// reads the named buckets again, and a blob whose entry arrives after the view was built is found by the walk
/// that a miss starts, which reads only the buckets changed since the last walk.
#[test]
fn the_index_view_is_compact_and_finds_entries_added_later() {
    let cache = Cache::new();
    let mut blobs = Vec::new();
    for n in 0..40 {
        let bytes = format!("tarball {n}").into_bytes();
        let path = cache.put_content(&bytes);
        let key = url_key(&format!("https://registry.test/p{n}/-/p{n}-1.0.0.tgz"));
        cache.insert(&key, Some(&sri(&bytes)));
        blobs.push((path, format!("p{n}")));
    }
    // Written an hour ago, as far as a later walk can tell.
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for n in 0..40 {
        let key = url_key(&format!("https://registry.test/p{n}/-/p{n}-1.0.0.tgz"));
        fs::File::options()
            .write(true)
            .open(cache.bucket(&key))
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }
    // A stray file in the index is read like a bucket and names nothing.
    fs::write(cache.cacache().join("index-v5/stray"), b"not a bucket").unwrap();
    let source = cache.source(policy());
    for (path, name) in &blobs {
        assert_eq!(&source.describe(path).unwrap().name, name);
    }
    {
        let view = source.index.lock().unwrap();
        assert_eq!(view.by_content.len(), 40);
        assert_eq!(view.buckets.len(), 40);
        assert!(view
            .buckets
            .iter()
            .all(|bucket| matches!(bucket, BucketName::Hashed(_))));
    }
    // Added after the view was built, and no bucket event: a miss a second later walks index-v5 again.
    let bytes = b"a later tarball";
    let late = cache.put_content(bytes);
    let key = url_key("https://registry.test/later/-/later-2.0.0.tgz");
    cache.insert(&key, Some(&sri(bytes)));
    std::thread::sleep(REFRESH_EVERY);
    assert_eq!(source.describe(&late).unwrap().name, "later");
    let view = source.index.lock().unwrap();
    assert_eq!(
        view.by_content.len(),
        41,
        "the second walk read only the new bucket"
    );
}
