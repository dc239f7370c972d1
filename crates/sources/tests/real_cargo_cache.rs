//! Checks the cargo source against the cache the real cargo client wrote in this machine's cargo home.

use std::fs;

use pkgseed_sources::{
    default_cargo_home, CacheSource, CargoSource, ChecksumAlgo, OriginMarks, Provenance,
    DEFAULT_REGISTRY_SUFFIXES,
};
use sha2::{Digest, Sha256};

#[test]
fn every_cached_crate_is_described_with_its_real_checksum() {
    let home = default_cargo_home().expect("no cargo home (neither CARGO_HOME nor a home dir)");
    let source = CargoSource::new(home.clone(), OriginMarks::default());
    let root = &source.roots()[0];

    let mut crates = Vec::new();
    for dir in fs::read_dir(root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "crate") {
                crates.push(path);
            }
        }
    }
    assert!(
        !crates.is_empty(),
        "no .crate files under {}: this test needs a cargo cache written by the real cargo (build the workspace once)",
        root.display()
    );

    let mut failures = Vec::new();
    let mut default_registry = 0;
    for path in &crates {
        assert!(source.is_candidate(path), "{}", path.display());
        let id = match source.describe(path) {
            Ok(id) => id,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(format!("{}-{}.crate", id.name, id.version), file_name);
        assert_eq!(
            id.origin,
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        );

        let checksum = id.checksum.expect("cargo checksums are always present");
        assert_eq!(checksum.algo, ChecksumAlgo::Sha256);
        let actual = Sha256::digest(fs::read(path).unwrap());
        if checksum.digest != actual.as_slice() {
            failures.push(format!(
                "{}: index cksum {} != file sha256",
                path.display(),
                checksum.to_prefixed_hex()
            ));
        }

        let is_default = DEFAULT_REGISTRY_SUFFIXES
            .iter()
            .any(|(suffix, _)| id.origin.ends_with(&format!("-{suffix}")));
        if is_default {
            default_registry += 1;
            assert!(
                matches!(id.provenance, Provenance::Public { .. }),
                "{}: {:?}",
                path.display(),
                id.provenance
            );
        } else {
            assert!(
                matches!(id.provenance, Provenance::Private { .. }),
                "{}: {:?}",
                path.display(),
                id.provenance
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} crates failed:\n{}",
        failures.len(),
        crates.len(),
        failures.join("\n")
    );
    assert!(
        default_registry > 0,
        "no crate of the default registry under {}",
        root.display()
    );
    eprintln!(
        "described {} crates ({default_registry} from the default registry) in {}",
        crates.len(),
        home.display()
    );
}
