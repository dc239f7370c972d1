//! What the scans found in the caches, for the status's origin list and the store's private-origin check: every
//! described candidate file counts toward one (ecosystem, origin, provenance, evidence) entry. A file is kept as a
//! 64-bit keyed hash of its path and the number of its entry (about 20 bytes, where a path and two strings per
//! file took ~350, i.e. 35 MB at 100k files); a hash collision between two paths could only move one file's count.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

/// How a scan described one candidate file.
pub(crate) struct FoundFile {
    pub ecosystem: &'static str,
    pub origin: String,
    pub provenance: &'static str,
    pub evidence: String,
}

/// One (ecosystem, origin, provenance, evidence) entry and how many files currently have it.
pub(crate) struct FoundOrigin {
    pub ecosystem: &'static str,
    pub origin: String,
    pub provenance: &'static str,
    pub evidence: String,
    pub files: u64,
}

#[derive(Default)]
pub(crate) struct FoundFiles {
    path_hasher: RandomState,
    /// Path hash → index into `origins`.
    files: HashMap<u64, u32>,
    /// Few entries (origins × provenance); kept at zero files rather than renumbered.
    origins: Vec<FoundOrigin>,
}

impl FoundFiles {
    pub fn insert(&mut self, path: impl AsRef<Path>, file: FoundFile) {
        let slot = match self.origins.iter().position(|o| {
            o.ecosystem == file.ecosystem
                && o.provenance == file.provenance
                && o.origin == file.origin
                && o.evidence == file.evidence
        }) {
            Some(slot) => slot,
            None => {
                self.origins.push(FoundOrigin {
                    ecosystem: file.ecosystem,
                    origin: file.origin,
                    provenance: file.provenance,
                    evidence: file.evidence,
                    files: 0,
                });
                self.origins.len() - 1
            }
        };
        let key = self.path_hasher.hash_one(path.as_ref());
        if let Some(previous) = self.files.insert(key, slot as u32) {
            self.origins[previous as usize].files -= 1;
        }
        self.origins[slot].files += 1;
    }

    pub fn remove(&mut self, path: impl AsRef<Path>) {
        let key = self.path_hasher.hash_one(path.as_ref());
        if let Some(slot) = self.files.remove(&key) {
            self.origins[slot as usize].files -= 1;
        }
    }

    /// Entries with at least one file.
    pub fn values(&self) -> impl Iterator<Item = &FoundOrigin> {
        self.origins.iter().filter(|o| o.files > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(origin: &str, provenance: &'static str) -> FoundFile {
        FoundFile {
            ecosystem: "npm",
            origin: origin.into(),
            provenance,
            evidence: "test".into(),
        }
    }

    fn counts(found: &FoundFiles) -> Vec<(String, &'static str, u64)> {
        let mut counts: Vec<_> = found
            .values()
            .map(|o| (o.origin.clone(), o.provenance, o.files))
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn files_count_once_toward_their_latest_description() {
        let mut found = FoundFiles::default();
        found.insert("/c/a", found_public("r1"));
        found.insert("/c/b", found_public("r1"));
        found.insert("/c/c", described("r2", "private"));
        assert_eq!(
            counts(&found),
            vec![("r1".into(), "public", 2), ("r2".into(), "private", 1)]
        );
        // Described again with another origin: moves, does not count twice.
        found.insert("/c/a", described("r2", "private"));
        found.insert("/c/a", described("r2", "private"));
        assert_eq!(
            counts(&found),
            vec![("r1".into(), "public", 1), ("r2".into(), "private", 2)]
        );
        found.remove("/c/b");
        found.remove("/c/b");
        found.remove("/c/never-seen");
        assert_eq!(counts(&found), vec![("r2".into(), "private", 2)]);
    }

    fn found_public(origin: &str) -> FoundFile {
        described(origin, "public")
    }
}
