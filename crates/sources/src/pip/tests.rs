//! Fixtures are built here in pip's documented cache layout: `http-v2/<k0>/…/<k4>/<sha224(url)>{,.body}`, with
//! bodies that are real zip / tar.gz archives written by the helpers below.

use super::*;
use std::io::Write;

/// A zip archive with the given (name, data) entries, deflated when `deflate`.
fn zip(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let (method, payload) = if deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).unwrap();
            (8u16, enc.finish().unwrap())
        } else {
            (0u16, data.to_vec())
        };
        let offset = out.len() as u32;
        let crc = 0u32; // not checked by the reader
        let mut local = Vec::new();
        local.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0]);
        local.extend_from_slice(&method.to_le_bytes());
        local.extend_from_slice(&[0, 0, 0, 0]);
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(&payload);
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0]);
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn wheel(name: &str, version: &str, tags: &[&str]) -> Vec<u8> {
    let esc = name.replace('-', "_");
    let meta = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nlong description\nName: nope\n"
    );
    let mut wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n".to_string();
    for t in tags {
        wheel.push_str(&format!("Tag: {t}\n"));
    }
    zip(
        &[
            (&format!("{esc}/__init__.py"), b"x = 1\n"),
            (
                &format!("{esc}-{version}.dist-info/METADATA"),
                meta.as_bytes(),
            ),
            (
                &format!("{esc}-{version}.dist-info/WHEEL"),
                wheel.as_bytes(),
            ),
            (&format!("{esc}-{version}.dist-info/RECORD"), b""),
        ],
        true,
    )
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        tar.extend_from_slice(&h);
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&tar).unwrap();
    enc.finish().unwrap()
}

fn b2_hex(bytes: &[u8]) -> String {
    hex::encode(Blake2b::<U32>::digest(bytes))
}

struct Fixture {
    _dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("pip-cache");
        fs::create_dir_all(cache.join("http-v2")).unwrap();
        Fixture { _dir: dir, cache }
    }
    /// Writes a cache entry for `url` with `body`; returns the body path.
    fn put(&self, url: &str, body: &[u8], with_head: bool) -> PathBuf {
        let key = sha224_hex(url);
        let mut dir = self.cache.join("http-v2");
        for c in key.chars().take(5) {
            dir.push(c.to_string());
        }
        fs::create_dir_all(&dir).unwrap();
        if with_head {
            fs::write(dir.join(&key), b"cc=4,\x81").unwrap();
        }
        let body_path = dir.join(format!("{key}.body"));
        fs::write(&body_path, body).unwrap();
        body_path
    }
    fn source(
        &self,
        default: Option<PipDefaultIndex>,
        indexes: &[&str],
        marks: OriginMarks,
    ) -> PipSource {
        PipSource::new(
            PipConfig {
                cache_dir: self.cache.clone(),
                default_index: default,
                indexes: indexes.iter().map(|s| s.to_string()).collect(),
            },
            marks,
        )
    }
}

/// A default index whose host is NOT a real registry: the structure is what is under test.
fn fake_default() -> PipDefaultIndex {
    PipDefaultIndex {
        simple_url: "https://index.test/simple".into(),
        files_base: "https://files.index.test".into(),
    }
}

#[test]
fn default_index_wheel_is_public_with_sha256() {
    let fx = Fixture::new();
    let body = wheel("Foo-Bar", "1.2.0", &["py2-none-any", "py3-none-any"]);
    let url = format!(
        "https://files.index.test/{}",
        pypi_style_path(&b2_hex(&body), "Foo_Bar-1.2.0-py2.py3-none-any.whl")
    );
    let path = fx.put(&url, &body, true);
    let src = fx.source(Some(fake_default()), &[], OriginMarks::default());
    assert!(src.is_candidate(&path));
    let id = src.describe(&path).unwrap();
    assert_eq!(id.name, "Foo-Bar");
    assert_eq!(id.version, "1.2.0 (Foo_Bar-1.2.0-py2.py3-none-any.whl)");
    assert_eq!(id.origin, "pip:https://index.test/simple");
    assert!(
        matches!(id.provenance, Provenance::Public { .. }),
        "{:?}",
        id.provenance
    );
    let cs = id.checksum.unwrap();
    assert_eq!(cs.algo, ChecksumAlgo::Sha256);
    assert_eq!(cs.digest, Sha256::digest(&body).to_vec());
    // A private mark wins.
    let marked = fx.source(
        Some(fake_default()),
        &[],
        OriginMarks {
            public: vec![],
            private: vec!["pip:https://index.test/simple".into()],
        },
    );
    assert!(matches!(
        marked.describe(&path).unwrap().provenance,
        Provenance::Private { .. }
    ));
}

#[test]
fn default_index_host_learned_from_installed_pip() {
    // The default files host comes from the installed pip at run time; this fails if no python3 with pip exists.
    let cfg = pip_config(&SourceEnv::from_process()).expect("a pip config");
    let default = cfg
        .default_index
        .clone()
        .expect("python3 with pip must be installed: pip's own default index could not be read");
    assert!(default.files_base.contains("://"), "{default:?}");
    let fx = Fixture::new();
    let body = tar_gz(&[
        (
            "acme-0.1/PKG-INFO",
            b"Metadata-Version: 2.1\nName: acme\nVersion: 0.1\n",
        ),
        ("acme-0.1/setup.py", b""),
    ]);
    let url = format!(
        "{}/{}",
        default.files_base,
        pypi_style_path(&b2_hex(&body), "acme-0.1.tar.gz")
    );
    let path = fx.put(&url, &body, true);
    let src = fx.source(Some(default.clone()), &[], OriginMarks::default());
    let id = src.describe(&path).unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.as_str()),
        ("acme", "0.1 (acme-0.1.tar.gz)")
    );
    assert_eq!(id.origin, format!("pip:{}", default.simple_url));
    assert!(matches!(id.provenance, Provenance::Public { .. }));
    // The same body under a key of another URL is unknown.
    let other = fx.put("https://elsewhere.test/acme-0.1.tar.gz", &body, true);
    let id = src.describe(&other).unwrap();
    assert_eq!(id.origin, UNKNOWN_ORIGIN);
    assert!(id.checksum.is_none());
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
}

#[test]
fn configured_index_is_private_unless_marked_public() {
    let fx = Fixture::new();
    let body = wheel("acme", "2.0", &["py3-none-any"]);
    let index = "http://127.0.0.1:9/simple/";
    let tree = fx.put(
        "http://127.0.0.1:9/simple/acme/acme-2.0-py3-none-any.whl",
        &body,
        true,
    );
    let src = fx.source(Some(fake_default()), &[index], OriginMarks::default());
    let id = src.describe(&tree).unwrap();
    assert_eq!(id.origin, format!("pip:{index}"));
    assert!(matches!(id.provenance, Provenance::Private { .. }));
    assert!(id.checksum.is_some());
    let marks = OriginMarks {
        public: vec![format!("pip:{index}")],
        private: vec![],
    };
    let src = fx.source(Some(fake_default()), &[index], marks);
    assert!(matches!(
        src.describe(&tree).unwrap().provenance,
        Provenance::Public { .. }
    ));
    // The content-addressed layout on the configured index's host works too.
    let body2 = wheel("acme", "2.1", &["py3-none-any"]);
    let url = format!(
        "http://127.0.0.1:9/{}",
        pypi_style_path(&b2_hex(&body2), "acme-2.1-py3-none-any.whl")
    );
    let p2 = fx.put(&url, &body2, true);
    assert_eq!(src.describe(&p2).unwrap().origin, format!("pip:{index}"));
}

#[test]
fn incomplete_and_non_artifact_entries_are_rejected() {
    let fx = Fixture::new();
    let src = fx.source(Some(fake_default()), &[], OriginMarks::default());
    let body = wheel("acme", "1.0", &["py3-none-any"]);
    let no_head = fx.put("https://x.test/a.whl", &body, false);
    assert!(matches!(
        src.describe(&no_head),
        Err(NotAnArtifact::NoChecksum(_))
    ));
    let empty = fx.put("https://x.test/b.whl", b"", true);
    assert_eq!(src.describe(&empty), Err(NotAnArtifact::Empty));
    let html = fx.put("https://x.test/simple/acme/", b"<html>index</html>", true);
    assert!(matches!(
        src.describe(&html),
        Err(NotAnArtifact::BadName(_))
    ));
    // Temp files, metadata files, the wheels/ dir and the old http/ dir are not candidates.
    let tmp = no_head.with_file_name(format!(
        "{}abc.tmp",
        no_head.file_name().unwrap().to_str().unwrap()
    ));
    assert!(!src.is_candidate(&tmp));
    assert!(!src.is_candidate(&no_head.with_extension("")));
    let key = sha224_hex("u");
    assert!(!src.is_candidate(
        &fx.cache
            .join("wheels/a/b/c/d/e")
            .join(format!("{key}.body"))
    ));
    assert!(!src.is_candidate(&fx.cache.join("http/a/b/c/d/e").join(format!("{key}.body"))));
    // Dirs must match the key's first characters.
    assert!(!src.is_candidate(
        &fx.cache
            .join("http-v2/0/0/0/0/0")
            .join(format!("{key}.body"))
    ));
    assert!(!src.is_candidate(
        &fx.cache
            .join("http-v2")
            .join(&key[..1])
            .join(format!("{key}.body"))
    ));
}

#[test]
fn tag_compression_and_names() {
    let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        compressed_tags(&t(&["py2-none-any", "py3-none-any"])),
        vec!["py2.py3-none-any"]
    );
    assert_eq!(
        compressed_tags(&t(&[
            "cp311-cp311-manylinux_2_17_x86_64",
            "cp311-cp311-manylinux2014_x86_64"
        ])),
        vec![
            "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
            "cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64"
        ]
    );
    assert!(compressed_tags(&t(&["a-b-c", "d-e-f"])).is_empty());
    assert!(compressed_tags(&t(&["a-b"])).is_empty());
    assert_eq!(normalize_project("Foo.Bar__baz"), "foo-bar-baz");
    assert_eq!(
        pypi_style_path("abcdef", "x.whl"),
        "packages/ab/cd/ef/x.whl"
    );
    let _ = pypi_style_path("a\u{e9}", "x.whl"); // short or non-ASCII input never panics
    assert_eq!(url_authority("http://h:1/simple/"), Some("http://h:1"));
    assert_eq!(url_authority("nohost"), None);
}

#[test]
fn hostile_bodies_never_panic() {
    let good = wheel("acme", "1.0", &["py3-none-any"]);
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"PK\x03\x04".to_vec(),
        b"\x1f\x8b".to_vec(),
        b"\x1f\x8b\x08\x00garbage".to_vec(),
        tar_gz(&[("../PKG-INFO", b"Name: a\nVersion: 1\n")]),
        tar_gz(&[("a/PKG-INFO", b"no headers")]),
    ];
    for cut in [10, 100, good.len() / 2, good.len() - 10, good.len() - 1] {
        inputs.push(good[..cut].to_vec());
    }
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        inputs.push(bad);
    }
    // A huge central directory size and offset.
    let mut huge = good.clone();
    let n = huge.len();
    huge[n - 10..n - 6].copy_from_slice(&u32::MAX.to_le_bytes());
    inputs.push(huge);
    for input in inputs {
        let _ = inspect_body(&mut io::Cursor::new(input));
    }
    assert!(inspect_body(&mut io::Cursor::new(good)).is_ok());
    assert!(parse_core_metadata("Name: ../x\nVersion: 1\n").is_none());
    assert_eq!(
        parse_wheel_file("Tag: a-b-c\nBuild: 1\n"),
        (vec!["a-b-c".to_string()], Some("1".into()))
    );
}

// --- pip before 23.3: `http/<k0>/…/<k4>/<key>`, cachecontrol's `cc=4,` + msgpack with the body inline ---------

/// msgpack of a text string.
fn mp_str(out: &mut Vec<u8>, s: &str) {
    match s.len() {
        0..=31 => out.push(0xa0 | s.len() as u8),
        32..=255 => out.extend_from_slice(&[0xd9, s.len() as u8]),
        _ => {
            out.push(0xda);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// An entry as cachecontrol 0.12 (pip 23.2) writes it: `cc=4,` + {"response": {"body", "headers", "status",
/// "version", "reason", "strict", "decode_content"}, "vary": {}}, the body as bin32 (bin8/16 for short bodies).
fn inline_entry(body: &[u8], headers: &[(&str, &str)], status: u8) -> Vec<u8> {
    let mut out = b"cc=4,".to_vec();
    out.push(0x82);
    mp_str(&mut out, "response");
    out.push(0x87);
    mp_str(&mut out, "body");
    match body.len() {
        0..=255 => out.extend_from_slice(&[0xc4, body.len() as u8]),
        256..=65_535 => {
            out.push(0xc5);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc6);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    mp_str(&mut out, "headers");
    out.push(0x80 | headers.len() as u8);
    for (k, v) in headers {
        mp_str(&mut out, k);
        mp_str(&mut out, v);
    }
    mp_str(&mut out, "status");
    out.extend_from_slice(&[0xcc, status]);
    mp_str(&mut out, "version");
    out.push(11);
    mp_str(&mut out, "reason");
    mp_str(&mut out, "OK");
    mp_str(&mut out, "strict");
    out.push(0);
    mp_str(&mut out, "decode_content");
    out.push(0xc2);
    mp_str(&mut out, "vary");
    out.push(0x80);
    out
}

fn wheel_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/octet-stream".into()),
        ("Content-Length", body.len().to_string()),
        (
            "Cache-Control",
            "max-age=365000000, immutable, public".into(),
        ),
        ("ETag", "\"abc\"".into()),
    ]
}

fn entry_for(body: &[u8]) -> Vec<u8> {
    let headers = wheel_headers(body);
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    inline_entry(body, &refs, 200)
}

impl Fixture {
    /// Writes a pre-23.3 cache entry (one file) for `url`; returns its path.
    fn put_inline(&self, url: &str, entry: &[u8]) -> PathBuf {
        let key = sha224_hex(url);
        let mut dir = self.cache.join("http");
        for c in key.chars().take(5) {
            dir.push(c.to_string());
        }
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&key);
        fs::write(&path, entry).unwrap();
        path
    }
}

#[test]
fn inline_entry_of_pip_before_23_3_is_seeded_as_the_body_range() {
    let fx = Fixture::new();
    let body = wheel("Foo-Bar", "1.2.0", &["py3-none-any"]);
    let url = format!(
        "https://files.index.test/{}",
        pypi_style_path(&b2_hex(&body), "Foo_Bar-1.2.0-py3-none-any.whl")
    );
    let entry = entry_for(&body);
    let path = fx.put_inline(&url, &entry);
    let src = fx.source(Some(fake_default()), &[], OriginMarks::default());
    assert!(src.roots().contains(&fx.cache.join("http")));
    assert!(src.is_candidate(&path));
    let (id, range) = src.describe_in_file(&path).unwrap();
    let range = range.expect("an inline body is a range of its file");
    let (start, end) = (range.offset as usize, (range.offset + range.len) as usize);
    assert!(start > 0 && end < entry.len(), "{range:?}");
    assert_eq!(&entry[start..end], &body[..]);
    // The same identity, provenance and checksum as the same body in the 23.3+ layout.
    let body_path = fx.put(&url, &body, true);
    let (as_file, no_range) = src.describe_in_file(&body_path).unwrap();
    assert_eq!(no_range, None);
    assert_eq!(id, as_file);
    assert_eq!(id.version, "1.2.0 (Foo_Bar-1.2.0-py3-none-any.whl)");
    assert!(matches!(id.provenance, Provenance::Public { .. }));
    assert_eq!(
        id.checksum.unwrap().digest,
        Sha256::digest(&body).to_vec(),
        "the checksum is the body's, not the entry's"
    );
    assert_eq!(src.describe(&path).unwrap().name, "Foo-Bar");
    // Under another URL's key the same entry is unknown (never seeded).
    let elsewhere = fx.put_inline("https://elsewhere.test/x.whl", &entry);
    let (id, _) = src.describe_in_file(&elsewhere).unwrap();
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
    // An sdist body too.
    let sdist = tar_gz(&[(
        "acme-0.1/PKG-INFO",
        b"Metadata-Version: 2.1\nName: acme\nVersion: 0.1\n",
    )]);
    let url = format!(
        "https://files.index.test/{}",
        pypi_style_path(&b2_hex(&sdist), "acme-0.1.tar.gz")
    );
    let sdist_path = fx.put_inline(&url, &entry_for(&sdist));
    let (id, range) = src.describe_in_file(&sdist_path).unwrap();
    assert_eq!(id.version, "0.1 (acme-0.1.tar.gz)");
    assert_eq!(range.unwrap().len, sdist.len() as u64);
    // Names that are not entries: a `.body` under http/, pip's temp files, a key in the wrong dirs.
    let key = sha224_hex(&url);
    assert!(!src.is_candidate(&sdist_path.with_file_name(format!("{key}.body"))));
    assert!(!src.is_candidate(&sdist_path.with_file_name(format!("{key}x1y2.tmp"))));
    assert!(!src.is_candidate(&fx.cache.join("http/0/0/0/0/0").join(&key)));
}

#[test]
fn corrupt_truncated_and_hostile_inline_entries_are_clear_errors() {
    let fx = Fixture::new();
    let src = fx.source(Some(fake_default()), &[], OriginMarks::default());
    let body = wheel("acme", "1.0", &["py3-none-any"]);
    let good = entry_for(&body);
    let locate = |bytes: &[u8]| locate_inline_body(&mut io::Cursor::new(bytes.to_vec()));
    assert!(locate(&good).is_ok());
    // Cut anywhere: never an artifact (the document must end exactly at the end of the file).
    for cut in 0..good.len() {
        assert!(locate(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = good.clone();
    longer.push(0xc0);
    assert!(matches!(locate(&longer), Err(InlineError::Malformed(_))));
    // A truncated entry through the source: a clear error naming the file, and it is not seeded.
    let path = fx.put_inline("https://x.test/a.whl", &good[..good.len() - 40]);
    match src.describe_in_file(&path) {
        Err(NotAnArtifact::BadName(why)) => {
            assert!(
                why.contains("cache entry") && why.contains(path.to_str().unwrap()),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    let empty = fx.put_inline("https://x.test/empty.whl", b"");
    assert_eq!(src.describe(&empty), Err(NotAnArtifact::Empty));
    // Responses whose body is not the file as the index served it.
    let h = |len: usize| len.to_string();
    let len = h(body.len());
    for (headers, status, what) in [
        (
            vec![("Content-Length", len.as_str())],
            206,
            "partial content",
        ),
        (vec![("Content-Length", "999999")], 200, "short body"),
        (
            vec![
                ("Content-Encoding", "gzip"),
                ("Content-Length", len.as_str()),
            ],
            200,
            "content-coded body",
        ),
    ] {
        assert!(
            matches!(
                locate(&inline_entry(&body, &headers, status)),
                Err(InlineError::NoBody(_))
            ),
            "{what}"
        );
    }
    assert!(locate(&inline_entry(
        &body,
        &[("content-encoding", "identity")],
        200
    ))
    .is_ok());
    assert!(matches!(
        locate(&inline_entry(b"", &[], 200)),
        Err(InlineError::NoBody(_))
    ));
    assert!(matches!(
        locate(b"cc=2,\x80\x03}q\x00."),
        Err(InlineError::NotAnEntry)
    ));
    // Hostile structure: declared lengths and counts past the end, deep nesting, reserved markers.
    let mut hostile: Vec<Vec<u8>> = vec![
        b"cc=4,\xdf\xff\xff\xff\xff".to_vec(),
        b"cc=4,\x81\xa8response\x81\xa4body\xc6\xff\xff\xff\xff".to_vec(),
        b"cc=4,\x81\xa8response\x81\xa4body\xa3abc".to_vec(),
        b"cc=4,\x81\xa4vary\xc1".to_vec(),
        b"cc=4,\x81\xdb\xff\xff\xff\xff".to_vec(),
    ];
    let mut deep = b"cc=4,\x81\xa4vary".to_vec();
    deep.extend(std::iter::repeat_n(0x91u8, 64));
    deep.push(0xc0);
    hostile.push(deep);
    for i in (0..good.len()).step_by(3) {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        hostile.push(bad);
    }
    for input in hostile {
        let _ = locate(&input);
    }
    assert!(locate(&good).is_ok());
}
