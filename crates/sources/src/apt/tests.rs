//! Fixtures: a lists dir laid out as apt writes it (`<uri>_dists_<suite>_InRelease`,
//! `<uri>_dists_<suite>_<comp>_binary-<arch>_Packages[.gz|.lz4]`), an InRelease clearsigned by a key made here
//! with the real `gpg` (required: the test fails without it), verified by the real `gpgv`.

use super::*;
use std::io::Write;
use std::process::Command;

struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(dir: &Path, name: &str) -> Gpg {
        let home = dir.join(format!("gnupg-{name}"));
        fs::create_dir_all(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let g = Gpg { home };
        g.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@example.invalid>"),
            "ed25519",
            "sign",
            "never",
        ]);
        g
    }
    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .expect("gpg must be installed (apt install gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
    fn export(&self, to: &Path) {
        fs::write(to, self.run(&["--export"])).unwrap();
    }
    fn clearsign(&self, text: &str, to: &Path) {
        let input = to.with_extension("in");
        fs::write(&input, text).unwrap();
        self.run(&[
            "--passphrase",
            "",
            "--yes",
            "--clearsign",
            "-o",
            to.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        fs::remove_file(input).unwrap();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn stanza(pkg: &str, ver: &str, body: &[u8]) -> String {
    format!(
        "Package: {pkg}\nVersion: {ver}\nArchitecture: all\nFilename: pool/{pkg}.deb\nSize: {}\nSHA256: {}\nDescription: x\n multi line\n",
        body.len(),
        hex::encode(Sha256::digest(body))
    )
}

/// Writes a repo's lists: Packages (compressed as `ext`) and a signed InRelease naming its sha256.
fn write_repo(lists: &Path, prefix: &str, packages: &str, ext: &str, gpg: &Gpg) {
    let raw = packages.as_bytes();
    let stored: Vec<u8> = match ext {
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        ".lz4" => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        _ => raw.to_vec(),
    };
    fs::write(
        lists.join(format!(
            "{prefix}_dists_stable_main_binary-all_Packages{ext}"
        )),
        stored,
    )
    .unwrap();
    let release = format!(
        "Origin: Test\nLabel: TestLabel\nSuite: stable\nDate: Sun, 29 Nov 2026 00:00:00 UTC\nSHA256:\n {} {} main/binary-all/Packages\n",
        hex::encode(Sha256::digest(raw)),
        raw.len()
    );
    gpg.clearsign(
        &release,
        &lists.join(format!("{prefix}_dists_stable_InRelease")),
    );
}

#[test]
fn trusted_untrusted_unlisted_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let (archives, lists) = (dir.path().join("archives"), dir.path().join("lists"));
    fs::create_dir_all(archives.join("partial")).unwrap();
    fs::create_dir_all(&lists).unwrap();
    let trusted = Gpg::new(dir.path(), "trusted");
    let other = Gpg::new(dir.path(), "other");
    let keyring = dir.path().join("trusted.gpg");
    trusted.export(&keyring);
    let (pub_deb, priv_deb, unlisted) = (
        b"public deb bytes".as_slice(),
        b"private deb".as_slice(),
        b"local".as_slice(),
    );
    write_repo(
        &lists,
        "127.0.0.1:1_pub",
        &stanza("hello", "1:2.0-1", pub_deb),
        ".lz4",
        &trusted,
    );
    write_repo(
        &lists,
        "127.0.0.1:2_priv",
        &stanza("secret", "1.0", priv_deb),
        ".gz",
        &other,
    );
    fs::write(archives.join("hello_1%3a2.0-1_all.deb"), pub_deb).unwrap();
    fs::write(archives.join("secret_1.0_all.deb"), priv_deb).unwrap();
    fs::write(archives.join("local_1.0_all.deb"), unlisted).unwrap();
    fs::write(archives.join("partial/hello_1%3a2.0-1_all.deb"), pub_deb).unwrap();
    let config = AptConfig {
        archives: archives.clone(),
        lists: lists.clone(),
        keyrings: vec![keyring.clone()],
        gpgv: "gpgv".into(),
    };
    let src = AptSource::new(config.clone(), OriginMarks::default());
    assert!(!src.is_candidate(&archives.join("partial/hello_1%3a2.0-1_all.deb")));
    assert!(!src.is_candidate(&archives.join("lock")));
    let id = src
        .describe(&archives.join("hello_1%3a2.0-1_all.deb"))
        .unwrap();
    assert_eq!(
        (id.name.as_str(), id.version.as_str()),
        ("hello", "1:2.0-1 all")
    );
    assert_eq!(id.origin, "apt:127.0.0.1:1_pub");
    assert!(
        matches!(&id.provenance, Provenance::Public { evidence } if evidence.contains("TestLabel")),
        "{:?}",
        id.provenance
    );
    assert_eq!(
        id.checksum.unwrap().digest,
        Sha256::digest(pub_deb).to_vec()
    );
    let id = src.describe(&archives.join("secret_1.0_all.deb")).unwrap();
    assert_eq!(id.origin, "apt:127.0.0.1:2_priv");
    assert!(matches!(id.provenance, Provenance::Private { .. }));
    let id = src.describe(&archives.join("local_1.0_all.deb")).unwrap();
    assert_eq!(id.origin, UNLISTED_ORIGIN);
    assert!(matches!(id.provenance, Provenance::Unknown { .. }));
    // Marks: public lifts the untrusted repo; private beats the trusted key.
    let marks = OriginMarks {
        public: vec!["apt:127.0.0.1:2_priv".into()],
        private: vec!["apt:127.0.0.1:1_pub".into()],
    };
    let src = AptSource::new(config.clone(), marks);
    assert!(matches!(
        src.describe(&archives.join("secret_1.0_all.deb"))
            .unwrap()
            .provenance,
        Provenance::Public { .. }
    ));
    assert!(matches!(
        src.describe(&archives.join("hello_1%3a2.0-1_all.deb"))
            .unwrap()
            .provenance,
        Provenance::Private { .. }
    ));
    // A tampered list (not the signed content) is no longer proof.
    let src = AptSource::new(config, OriginMarks::default());
    let tampered = format!(
        "{}\n{}",
        stanza("hello", "1:2.0-1", pub_deb),
        stanza("evil", "1", b"evil")
    );
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(tampered.as_bytes()).unwrap();
    fs::write(
        lists.join("127.0.0.1:1_pub_dists_stable_main_binary-all_Packages.lz4"),
        e.finish().unwrap(),
    )
    .unwrap();
    assert!(matches!(
        src.describe(&archives.join("hello_1%3a2.0-1_all.deb"))
            .unwrap()
            .provenance,
        Provenance::Private { .. }
    ));
    // Empty file.
    fs::write(archives.join("empty_1_all.deb"), b"").unwrap();
    assert_eq!(
        src.describe(&archives.join("empty_1_all.deb")),
        Err(NotAnArtifact::Empty)
    );
}

#[test]
fn parsers_on_hostile_input() {
    assert_eq!(
        split_deb_file_name("a_1%3a2_amd64.deb"),
        Some(("a".into(), "1:2".into(), "amd64".into()))
    );
    assert_eq!(split_deb_file_name("a_1%3_amd64.deb"), None);
    assert_eq!(split_deb_file_name("a_1%zz_amd64.deb"), None);
    assert_eq!(split_deb_file_name("a_1_b_c.deb"), None);
    assert_eq!(split_deb_file_name("a__b.deb"), None);
    assert_eq!(split_deb_file_name("a_1_b.udeb"), None);
    assert_eq!(split_deb_file_name("a_%e2%82_b.deb"), None);
    for text in [
        "",
        ":",
        "Package:\nSHA256: zz",
        "Package: a\nVersion: 1\nArchitecture: all\nSHA256: 00\n",
        "\n\n\n",
    ] {
        assert!(parse_packages(text).is_empty());
        let _ = parse_release(text);
        let _ = parse_apt_config_dump(text);
    }
    let r = parse_release("Origin: O\nSHA256:\n bad 1 x\n 0000000000000000000000000000000000000000000000000000000000000000 notnum x\n 0000000000000000000000000000000000000000000000000000000000000000 3 main/x\nLabel: L\n");
    assert_eq!(
        (r.origin.as_str(), r.label.as_str(), r.sha256.len()),
        ("O", "L", 1)
    );
    let cfg = parse_apt_config_dump("Dir \"/\";\nDir::Cache \"var/cache/apt\";\nDir::Cache::archives \"archives/\";\nDir::State::lists \"/abs/lists/\";\n");
    assert_eq!(
        resolve_dir(&cfg, "Dir::Cache::archives"),
        Path::new("/var/cache/apt/archives/")
    );
    assert_eq!(
        resolve_dir(&cfg, "Dir::State::lists"),
        Path::new("/abs/lists/")
    );
}
