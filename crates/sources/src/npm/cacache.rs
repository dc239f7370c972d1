//! The `index-v5` bucket format of npm's cacache: each line is `<sha1 hex of json>\t<json>`, appended; a line
//! whose hash does not match (a torn append) is skipped; per key the last valid line wins and an entry with
//! `"integrity": null` is a deletion. make-fetch-happen keeps a few request and response headers in the entry's
//! `metadata` (`reqHeaders`: accept*, cache-control and whatever the response `vary`s on; `resHeaders`:
//! cache-control, content-type, date, etag, vary, ...): the ones that say a response was meant for one user are read.

use sha1::{Digest, Sha1};

/// One live index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacacheEntry {
    pub key: String,
    pub integrity: String,
    /// Milliseconds since the epoch, as cacache wrote it (0 when absent).
    pub time: u64,
    /// Why the cached response was meant for one user only (`cache-control: private`/`no-store`, a stored
    /// `authorization` request header, a `vary` on `authorization`/`cookie`); `None` when the entry says nothing.
    pub private_evidence: Option<String>,
}

/// What an entry's `metadata` says about the response being for one user only (see [`CacacheEntry`]).
pub fn private_response_evidence(metadata: &serde_json::Value) -> Option<String> {
    let header = |side: &str, name: &str| {
        metadata
            .get(side)
            .and_then(|h| h.as_object())
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.as_str().unwrap_or("").to_ascii_lowercase())
    };
    let tokens = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(|t| t.split('=').next().unwrap_or("").trim().to_owned())
            .collect()
    };
    if let Some(cc) = header("resHeaders", "cache-control") {
        if let Some(t) = tokens(&cc)
            .into_iter()
            .find(|t| t == "private" || t == "no-store")
        {
            return Some(format!("the registry answered with cache-control: {t}"));
        }
    }
    if header("reqHeaders", "authorization").is_some() {
        return Some("the request carried an authorization header".into());
    }
    if let Some(vary) = header("resHeaders", "vary") {
        if let Some(t) = tokens(&vary)
            .into_iter()
            .find(|t| t == "authorization" || t == "cookie")
        {
            return Some(format!("the response varies on the request's {t}"));
        }
    }
    None
}

/// Longest line considered (a response's headers and metadata are small; this bounds hostile input).
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The live entries of one bucket file, in the order of their last write.
pub fn parse_index_bucket(bytes: &[u8]) -> Vec<CacacheEntry> {
    live_entries(bucket_lines(bytes))
}

/// The live entries among a bucket's lines ([`bucket_lines`]): per key the last line, unless it is a deletion; in
/// the order of their last write.
pub fn live_entries(lines: Vec<(String, Option<CacacheEntry>)>) -> Vec<CacacheEntry> {
    let mut latest: Vec<(String, Option<CacacheEntry>)> = Vec::new();
    for (key, entry) in lines {
        latest.retain(|(k, _)| *k != key);
        latest.push((key, entry));
    }
    latest.into_iter().filter_map(|(_, e)| e).collect()
}

/// The valid lines of a bucket file in order, superseded ones included: each line's key, and its entry (`None`: a
/// deletion).
pub fn bucket_lines(bytes: &[u8]) -> Vec<(String, Option<CacacheEntry>)> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            if line.is_empty() || line.len() > MAX_LINE_BYTES {
                return None;
            }
            let tab = line.iter().position(|&b| b == b'\t')?;
            let (hash, json) = (&line[..tab], &line[tab + 1..]);
            if !hash.eq_ignore_ascii_case(hex::encode(Sha1::digest(json)).as_bytes()) {
                return None;
            }
            let value = serde_json::from_slice::<serde_json::Value>(json).ok()?;
            let key = value.get("key").and_then(|k| k.as_str())?;
            let entry = value
                .get("integrity")
                .and_then(|i| i.as_str())
                .map(|integrity| CacacheEntry {
                    key: key.to_owned(),
                    integrity: integrity.to_owned(),
                    time: value.get("time").and_then(|t| t.as_u64()).unwrap_or(0),
                    private_evidence: value.get("metadata").and_then(private_response_evidence),
                });
            Some((key.to_owned(), entry))
        })
        .collect()
}

/// A bucket line as cacache writes it (for tests and fixtures).
pub fn bucket_line(json: &str) -> String {
    format!("\n{}\t{}", hex::encode(Sha1::digest(json.as_bytes())), json)
}
