//! Cargo's binary index cache (`registry/index/<dir>/.cache/…`): a pure parser, kept free of I/O so it can be fuzzed.
//!
//! Layout, as cargo writes it (`sources/registry/index/cache.rs`, `CURRENT_CACHE_VERSION = 3`, unchanged from
//! before cargo 1.68 up to the current release):
//!
//! ```text
//! u8 cache version (3) | u32 LE index schema version (2) | index version (UTF-8) | 0x00
//! ( semver (UTF-8) | 0x00 | JSON line | 0x00 )*
//! ```
//!
//! The index version is an etag / last-modified header for sparse registries, a commit id for git ones, or
//! `Unknown`. Segments are split on NUL exactly like cargo's own `split`: a trailing NUL ends the file without
//! an empty segment after it.

use serde::Deserialize;

/// The only cache layout version this parser understands (what cargo 1.68 … current write).
pub const CURRENT_CACHE_VERSION: u8 = 3;

/// Why an index cache blob cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexCacheError {
    #[error("empty index cache file")]
    Empty,
    /// Written by a cargo with another cache layout (1 and 2 are older cargos). Cargo itself discards such a
    /// cache and rewrites it on its next index access.
    #[error("index cache format version {0} (only version 3 is understood; cargo rewrites it on its next run)")]
    UnsupportedCacheVersion(u8),
    #[error("index cache header is truncated")]
    TruncatedHeader,
    #[error("index cache has no index-version field")]
    MissingIndexVersion,
    #[error("index cache field is not UTF-8")]
    NotUtf8,
    #[error("index cache entry has an invalid semver {0:?}")]
    BadVersion(String),
    #[error("index cache entry {0} has no JSON line")]
    MissingJson(String),
}

/// One `(version, JSON line)` pair of an index cache. The JSON is not parsed until asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCacheEntry<'a> {
    /// The semver cargo extracted from the JSON line, as cargo printed it.
    pub version: &'a str,
    /// The registry's JSON line for this version, byte for byte.
    pub json: &'a [u8],
}

/// The fields of an index JSON line this crate needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexRecord {
    pub name: String,
    pub vers: String,
    /// sha256 hex of the `.crate`.
    #[serde(default)]
    pub cksum: Option<String>,
    #[serde(default)]
    pub yanked: Option<bool>,
}

impl IndexCacheEntry<'_> {
    /// Parses this entry's JSON line.
    pub fn record(&self) -> Result<IndexRecord, serde_json::Error> {
        serde_json::from_slice(self.json)
    }
}

/// Parses a whole index cache file into its entries, in file order. Never panics on any input.
///
/// The index schema version (the u32 after the cache version) is not checked: it only says which JSON fields a
/// line may carry, and the fields read here (`name`, `vers`, `cksum`) are in every schema.
pub fn parse_index_cache(bytes: &[u8]) -> Result<Vec<IndexCacheEntry<'_>>, IndexCacheError> {
    let (&cache_version, rest) = bytes.split_first().ok_or(IndexCacheError::Empty)?;
    if cache_version != CURRENT_CACHE_VERSION {
        return Err(IndexCacheError::UnsupportedCacheVersion(cache_version));
    }
    let rest = rest.get(4..).ok_or(IndexCacheError::TruncatedHeader)?;
    let mut segments = split_nul(rest);
    let index_version = segments
        .next()
        .ok_or(IndexCacheError::MissingIndexVersion)?;
    std::str::from_utf8(index_version).map_err(|_| IndexCacheError::NotUtf8)?;

    let mut entries = Vec::new();
    while let Some(version) = segments.next() {
        let version = std::str::from_utf8(version).map_err(|_| IndexCacheError::NotUtf8)?;
        if !super::file_name::is_semver(version) {
            return Err(IndexCacheError::BadVersion(version.to_owned()));
        }
        // Cargo unwraps here; a truncated file must be an error for us, not a panic.
        let json = segments
            .next()
            .ok_or_else(|| IndexCacheError::MissingJson(version.to_owned()))?;
        entries.push(IndexCacheEntry { version, json });
    }
    Ok(entries)
}

/// Cargo's `split`: NUL-separated segments; an empty rest yields nothing, so a trailing NUL adds no segment.
fn split_nul(mut haystack: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if haystack.is_empty() {
            return None;
        }
        let (segment, rest) = match haystack.iter().position(|&b| b == 0) {
            Some(pos) => (&haystack[..pos], &haystack[pos + 1..]),
            None => (haystack, &[][..]),
        };
        haystack = rest;
        Some(segment)
    })
}

/// Test helper: builds a cache blob exactly as cargo's `SummariesCache::serialize` does.
#[cfg(test)]
pub(crate) fn build_index_cache(index_version: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![CURRENT_CACHE_VERSION];
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(index_version.as_bytes());
    out.push(0);
    for (version, json) in entries {
        out.extend_from_slice(version.as_bytes());
        out.push(0);
        out.extend_from_slice(json.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE_A: &str =
        r#"{"name":"foo","vers":"1.0.0","deps":[],"cksum":"aa","features":{},"yanked":false}"#;
    const LINE_B: &str = r#"{"name":"foo","vers":"1.1.0-rc.1+b.2","deps":[],"cksum":"bb","features":{},"yanked":true,"v":2}"#;

    #[test]
    fn parses_the_format_cargo_writes() {
        let blob = build_index_cache(
            "etag: \"5bb4\"",
            &[("1.0.0", LINE_A), ("1.1.0-rc.1+b.2", LINE_B)],
        );
        // Byte-level check of the header against the layout documented by cargo.
        assert_eq!(&blob[..5], &[3, 2, 0, 0, 0]);
        assert_eq!(&blob[5..17], b"etag: \"5bb4\"");
        assert_eq!(blob[17], 0);
        assert_eq!(*blob.last().unwrap(), 0);

        let entries = parse_index_cache(&blob).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].version, "1.0.0");
        assert_eq!(entries[0].json, LINE_A.as_bytes());
        assert_eq!(entries[1].version, "1.1.0-rc.1+b.2");
        let rec = entries[1].record().unwrap();
        assert_eq!(rec.name, "foo");
        assert_eq!(rec.vers, "1.1.0-rc.1+b.2");
        assert_eq!(rec.cksum.as_deref(), Some("bb"));
        assert_eq!(rec.yanked, Some(true));
    }

    #[test]
    fn header_only_has_no_entries() {
        let blob = build_index_cache("Unknown", &[]);
        assert_eq!(parse_index_cache(&blob).unwrap(), vec![]);
        // An empty index version is still a field (cargo writes "" + NUL when it has one).
        let blob = build_index_cache("", &[("1.0.0", LINE_A)]);
        assert_eq!(parse_index_cache(&blob).unwrap().len(), 1);
    }

    #[test]
    fn missing_trailing_nul_is_tolerated_like_cargo() {
        let mut blob = build_index_cache("Unknown", &[("1.0.0", LINE_A)]);
        blob.pop();
        let entries = parse_index_cache(&blob).unwrap();
        assert_eq!(entries[0].json, LINE_A.as_bytes());
    }

    #[test]
    fn older_and_newer_cache_versions_are_refused_clearly() {
        for v in [1u8, 2, 4, 0xff] {
            let mut blob = build_index_cache("Unknown", &[("1.0.0", LINE_A)]);
            blob[0] = v;
            assert_eq!(
                parse_index_cache(&blob),
                Err(IndexCacheError::UnsupportedCacheVersion(v))
            );
        }
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        assert_eq!(parse_index_cache(b""), Err(IndexCacheError::Empty));
        assert_eq!(
            parse_index_cache(&[3, 2, 0]),
            Err(IndexCacheError::TruncatedHeader)
        );
        assert_eq!(
            parse_index_cache(&[3, 2, 0, 0, 0]),
            Err(IndexCacheError::MissingIndexVersion)
        );
        assert_eq!(
            parse_index_cache(&[3, 2, 0, 0, 0, 0xff, 0]),
            Err(IndexCacheError::NotUtf8)
        );

        let mut truncated = build_index_cache("Unknown", &[("1.0.0", LINE_A)]);
        truncated.truncate(5 + "Unknown".len() + 1 + "1.0.0".len() + 1);
        assert_eq!(
            parse_index_cache(&truncated),
            Err(IndexCacheError::MissingJson("1.0.0".into()))
        );

        let bad = build_index_cache("Unknown", &[("1.0", LINE_A)]);
        assert_eq!(
            parse_index_cache(&bad),
            Err(IndexCacheError::BadVersion("1.0".into()))
        );
    }

    fn parse_and_read_records(bytes: &[u8]) {
        for entry in parse_index_cache(bytes).unwrap_or_default() {
            let _ = entry.record();
        }
    }

    #[test]
    fn never_panics_on_prefixes_or_byte_flips() {
        let blob = build_index_cache(
            "etag: \"x\"",
            &[("1.0.0", LINE_A), ("1.1.0-rc.1+b.2", LINE_B)],
        );
        for len in 0..=blob.len() {
            parse_and_read_records(&blob[..len]);
        }
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff, blob[i]] {
                let mut b = blob.clone();
                b[i] ^= flip; // the last one sets the byte to NUL
                parse_and_read_records(&b);
            }
        }
    }
}
