//! Helpers for the Maven, Gradle and Go end-to-end tests: a stored (uncompressed) zip writer (jars and Go module zips
//! are zips), deterministic filler bytes, SHA-1 hex for Maven's `.sha1` side files, a Maven-layout repository tree
//! (jar, POM and their `.sha1` files), and serving a directory tree with [`StaticServer`].

use std::path::Path;

use crate::langpkg::{origin_status, wait_seeded};
use crate::{js_unixfs_cids, raw_sha256_cid, sha256_file, TestEnv};

/// CRC-32 (IEEE, reflected, as zip uses it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip archive of `(name, bytes)` entries, all STORED (method 0), no data descriptors, fixed timestamps.
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    // 1980-01-01 00:00 in DOS format.
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let len = data.len() as u32;
        let mut local = Vec::new();
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes()); // version needed
        local.extend_from_slice(&0u16.to_le_bytes()); // flags
        local.extend_from_slice(&0u16.to_le_bytes()); // stored
        local.extend_from_slice(&time.to_le_bytes());
        local.extend_from_slice(&date.to_le_bytes());
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&len.to_le_bytes());
        local.extend_from_slice(&len.to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // extra
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&20u16.to_le_bytes()); // version needed
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// `len` deterministic pseudo-random lowercase letters (xorshift), different for each `seed`.
pub fn filler(seed: u32, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491 ^ seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// A jar: a manifest plus `filler_len` bytes of deterministic filler (stored, so the size is what we ask).
pub fn jar(seed: u32, filler_len: usize) -> Vec<u8> {
    stored_zip(&[
        (
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\r\nCreated-By: pkgseed-e2e\r\n\r\n",
        ),
        ("data/filler.txt", &filler(seed, filler_len)),
    ])
}

/// A minimal POM for `group:artifact:version`.
pub fn pom(group: &str, artifact: &str, version: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<project><modelVersion>4.0.0</modelVersion>\
         <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version></project>\n"
    )
}

/// Writes `<repo>/<group path>/<artifact>/<version>/` with the jar, the POM and their `.sha1` files, as a Maven
/// repository serves them.
pub fn publish(repo: &Path, group: &str, artifact: &str, version: &str, jar_bytes: &[u8]) {
    let dir = repo
        .join(group.replace('.', "/"))
        .join(artifact)
        .join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let base = format!("{artifact}-{version}");
    let pom = pom(group, artifact, version);
    for (name, bytes) in [
        (format!("{base}.jar"), jar_bytes),
        (format!("{base}.pom"), pom.as_bytes()),
    ] {
        std::fs::write(dir.join(&name), bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.sha1")), sha1_hex(bytes)).unwrap();
    }
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(bytes))
}

/// Waits until a jar and its POM (version `1.0`) are seeded and checks them as their repository served them:
/// `ecosystem`, `name`, `origin` (public in `status.origins`), registry checksum `sha1:<jar_sha1>` / the POM's sha1,
/// checksum CID = raw sha256 of the file, root CIDs = ipfs-unixfs-importer's. Returns the jar's root CID.
#[track_caller]
pub fn assert_jar_and_pom_seeded(
    env: &TestEnv,
    (ecosystem, name, origin): (&str, &str, &str),
    jar: &Path,
    pom: &Path,
    jar_sha1: &str,
) -> String {
    let e = wait_seeded(env, jar, std::time::Duration::from_secs(30));
    assert_eq!(e["ecosystem"], ecosystem, "{e}");
    assert_eq!(
        (e["name"].as_str(), e["version"].as_str()),
        (Some(name), Some("1.0")),
        "{e}"
    );
    assert_eq!(e["origin"].as_str(), Some(origin), "{e}");
    assert_eq!(
        e["registry_checksum"].as_str(),
        Some(format!("sha1:{jar_sha1}").as_str()),
        "{e}"
    );
    assert_eq!(
        e["checksum_cid"].as_str(),
        Some(raw_sha256_cid(&sha256_file(jar)).as_str()),
        "{e}"
    );
    let reference = js_unixfs_cids("unixfs-v1-2025", &[jar, pom]);
    assert_eq!(e["cid"].as_str(), Some(reference[0].as_str()), "{e}");
    let p = wait_seeded(env, pom, std::time::Duration::from_secs(10));
    assert_eq!(p["cid"].as_str(), Some(reference[1].as_str()), "{p}");
    assert_eq!(
        p["registry_checksum"].as_str(),
        Some(format!("sha1:{}", sha1_hex(&std::fs::read(pom).unwrap())).as_str()),
        "{p}"
    );
    let o = origin_status(env, origin);
    assert_eq!(o["provenance"], "public", "{o}");
    reference[0].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn zip_layout() {
        let z = stored_zip(&[("a/b.txt", b"hello")]);
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(&z[z.len() - 22..z.len() - 18], b"PK\x05\x06");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
