//! The pip cache source: response bodies in pip's HTTP cache (`<cache>/http-v2/a/b/c/d/e/<sha224(url)>.body`,
//! pip 23.3 and later, and the body inline in `<cache>/http/a/b/c/d/e/<sha224(url)>`, pip before 23.3) that are
//! wheels or sdists, identified from their own metadata, with provenance proven by rebuilding the file's URL and
//! hashing it back to the cache key.
//!
//! * **Roots.** pip's cache dir as pip itself reports it (`cache-dir` from pip's configuration, which includes
//!   `PIP_CACHE_DIR`, else pip's platform default `USER_CACHE_DIR`), learned at run time by asking the installed
//!   pip; without a working pip: `PIP_CACHE_DIR`, `$XDG_CACHE_HOME/pip`, `~/.cache/pip`, `~/Library/Caches/pip`,
//!   `%LOCALAPPDATA%\pip\Cache`. Only `http-v2/` and `http/` are watched: `wheels/` holds wheels pip BUILT
//!   locally (never registry bytes) and is never looked at.
//! * **Complete vs partial.** pip writes `<key>.body` and `<key>` (the response metadata) through a temp file and
//!   `os.replace`; an entry counts only when both exist, the body is a regular non-empty file, and the name is
//!   exactly 56 hex digits + `.body` (temp names never match).
//! * **Identity.** The cache does not store the URL. A body starting with a zip signature is read through the zip
//!   central directory: one top-level `*.dist-info/` with `METADATA` (name, version) and `WHEEL` (tags, build) is a
//!   wheel, one top-level `*/PKG-INFO` a zip sdist; a gzip body is a `.tar.gz` sdist with `<dir>/PKG-INFO`. `name`
//!   is the project name from the metadata; `version` is the version, followed by ` (<file name>)` of the wheel or
//!   sdist whose URL matched (the file name carries the platform tags).
//! * **Provenance.** For every index pip knows (its built-in default index, whose files host is read from pip's own
//!   `pip._internal.models.index.PyPI` at run time, plus `index-url`/`extra-index-url` from pip's configuration and
//!   `PIP_INDEX_URL`/`PIP_EXTRA_INDEX_URL`) the candidate file URLs are rebuilt for every plausible file name:
//!   the content-addressed layout `<files base>/packages/<b[0:2]>/<b[2:4]>/<b[4:]>/<file>` where `b` is the hex
//!   blake2b-256 of the body, and for configured indexes also `<index url>/<project>/<file>` (a plain PEP 503
//!   tree). `sha224(url) == cache key` proves the body is the response to that URL. A match on the default
//!   index's files host is public: that URL is derived from the content itself. A match on a configured index is
//!   private unless the user marked its origin public. No match → unknown (a find-links dir, a `--index-url` on the
//!   command line, a direct URL): never seeded. Origin ids: `pip:<index URL>` (as configured; the default index's
//!   simple URL as pip reports it) and `pip:unknown`.
//! * **Checksum.** The index publishes the sha256 of each file it serves. The cache does not record it, so the
//!   sha256 is computed from the body, and offered as the registry checksum ONLY when the cache key proves the body
//!   is that index's response for the file URL (and, for the default index, the blake2b path proves the content).
//!   An unproven body gets no checksum.
//! * **pip before 23.3** keeps each response in ONE file under `http/` (same key, same 5 dirs, no extension):
//!   cachecontrol's `cc=4,` + msgpack with the body inline. pip writes it through a temp file and `os.replace`, so
//!   the name (exactly 56 hex digits) never matches a temp file. `inline::locate_inline_body` finds the body's byte
//!   range (a complete document ending at the end of the file, status 200, no content coding, `Content-Length` =
//!   body length), and the artifact is that range: identity, provenance and checksum are worked out on the range
//!   exactly as for a `.body` file, and [`CacheSource::describe_in_file`] hands the range to the indexer, which
//!   hashes and serves only those bytes, zero-copy (docs/design.md, "Artifacts inside a file").
//! * **Eviction.** `pip cache purge` / `pip cache remove` delete the files; the engine's watcher withdraws them.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use sha2::{Sha224, Sha256};

use crate::{
    ArtifactIdentity, ByteRange, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

mod inline;
pub use inline::{locate_inline_body, InlineError};

/// Origin id of bodies no known index URL hashes to.
pub const UNKNOWN_ORIGIN: &str = "pip:unknown";

/// Upper bound on one metadata file (METADATA, WHEEL, PKG-INFO) decompressed into memory.
const MAX_META_BYTES: u64 = 8 * 1024 * 1024;
/// Upper bound on a zip central directory read into memory.
const MAX_CENTRAL_DIR_BYTES: u64 = 64 * 1024 * 1024;
/// Tar entries looked at before giving up on finding `PKG-INFO`.
const MAX_TAR_ENTRIES: usize = 100_000;

/// pip's built-in default index, as pip reports it at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipDefaultIndex {
    /// The simple index URL (shown in the origin id).
    pub simple_url: String,
    /// `<scheme>://<files host>`: the base of the content-addressed `/packages/…` file URLs.
    pub files_base: String,
}

/// What the pip source is built from (injected, so tests can use their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipConfig {
    pub cache_dir: PathBuf,
    pub default_index: Option<PipDefaultIndex>,
    /// Index URLs from pip's configuration (`index-url`, `extra-index-url`, `PIP_INDEX_URL`, …).
    pub indexes: Vec<String>,
}

/// A known index and the URL layouts its files may have.
#[derive(Debug, Clone)]
struct KnownIndex {
    origin: String,
    /// `<scheme>://<authority>` for the content-addressed `/packages/…` layout.
    files_base: Option<String>,
    /// The index URL itself (no trailing slash) for the `<index>/<project>/<file>` layout.
    project_tree: Option<String>,
    default: bool,
}

/// (size, mtime, description, body range) of a described entry.
type MemoEntry = (u64, Option<SystemTime>, ArtifactIdentity, Option<ByteRange>);

/// Which of pip's two HTTP cache layouts a candidate is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `http-v2/…/<key>.body` (pip 23.3+): the file is the body.
    BodyFile,
    /// `http/…/<key>` (pip before 23.3): the body is inline in the cached response.
    Inline,
}

/// The pip HTTP cache.
pub struct PipSource {
    http_root: PathBuf,
    /// `http/`, the cache of pip before 23.3.
    inline_root: PathBuf,
    indexes: Vec<KnownIndex>,
    marks: OriginMarks,
    /// Descriptions by path, valid while (size, mtime) are unchanged: `describe` hashes the body.
    memo: Mutex<HashMap<PathBuf, MemoEntry>>,
}

impl PipSource {
    pub fn new(config: PipConfig, marks: OriginMarks) -> PipSource {
        let mut indexes: Vec<KnownIndex> = Vec::new();
        if let Some(default) = &config.default_index {
            indexes.push(KnownIndex {
                origin: format!("pip:{}", default.simple_url),
                files_base: Some(default.files_base.trim_end_matches('/').to_owned()),
                project_tree: None,
                default: true,
            });
        }
        for url in &config.indexes {
            let origin = format!("pip:{url}");
            if indexes.iter().any(|i| i.origin == origin) {
                continue;
            }
            indexes.push(KnownIndex {
                origin,
                files_base: url_authority(url).map(str::to_owned),
                project_tree: Some(url.trim_end_matches('/').to_owned()),
                default: false,
            });
        }
        PipSource {
            http_root: config.cache_dir.join("http-v2"),
            inline_root: config.cache_dir.join("http"),
            indexes,
            marks,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// The cache key (56 hex) and layout of a candidate path: `http-v2/<k0>/<k1>/<k2>/<k3>/<k4>/<key>.body` or
    /// `http/<k0>/<k1>/<k2>/<k3>/<k4>/<key>`.
    fn split_candidate<'p>(&self, path: &'p Path) -> Option<(&'p str, Layout)> {
        let (rel, layout) = match path.strip_prefix(&self.http_root) {
            Ok(rel) => (rel, Layout::BodyFile),
            Err(_) => (path.strip_prefix(&self.inline_root).ok()?, Layout::Inline),
        };
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let [d0, d1, d2, d3, d4, file] = parts.as_slice() else {
            return None;
        };
        let key = match layout {
            Layout::BodyFile => file.strip_suffix(".body")?,
            Layout::Inline => file,
        };
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if key.len() != 56 || !hex(key) {
            return None;
        }
        let dirs = [d0, d1, d2, d3, d4];
        for (i, d) in dirs.iter().enumerate() {
            if d.len() != 1 || key.as_bytes()[i] != d.as_bytes()[0] {
                return None;
            }
        }
        Some((key, layout))
    }

    fn provenance(&self, index: &KnownIndex) -> Provenance {
        if self.marks.private.contains(&index.origin) {
            return Provenance::Private {
                reason: "marked private by the user".into(),
            };
        }
        if index.default {
            return Provenance::Public {
                evidence: "cache key = sha224 of the file's URL on pip's default index files host, whose path is the blake2b-256 of the body".into(),
            };
        }
        if self.marks.public.contains(&index.origin) {
            return Provenance::Public {
                evidence: "cache key = sha224 of the file's URL on an index the user marked public"
                    .into(),
            };
        }
        Provenance::Private {
            reason: "index from pip's configuration (private unless marked public)".into(),
        }
    }

    /// Describes the body at `range` of the file (`None`: the whole file).
    fn describe_uncached(
        &self,
        path: &Path,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ArtifactIdentity, NotAnArtifact> {
        let shown = || path.display().to_string();
        let file = fs::File::open(path)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
        let body = match range {
            None => inspect_body(&mut io::BufReader::new(file)),
            Some(range) => inspect_body(&mut inline::RangeReader::new(file, range)),
        };
        let body = body.map_err(|e| match e {
            BodyError::NotAnArchive => {
                NotAnArtifact::BadName(format!("{} is not a wheel or sdist body", shown()))
            }
            BodyError::Io(e) => NotAnArtifact::Unreadable(format!("{}: {e}", shown())),
            e => NotAnArtifact::BadName(format!("{}: {e}", shown())),
        })?;
        let names = body.file_names();
        let project = normalize_project(&body.name);
        // Layouts that need no hashing first.
        let mut matched: Option<(&KnownIndex, String)> = None;
        'outer: for index in &self.indexes {
            if let Some(tree) = &index.project_tree {
                for name in &names {
                    if sha224_hex(&format!("{tree}/{project}/{name}")) == key {
                        matched = Some((index, name.clone()));
                        break 'outer;
                    }
                }
            }
        }
        let (b2, sha256) = hash_file(path, range)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
        if matched.is_none() {
            let b2_hex = hex::encode(b2);
            'outer2: for index in &self.indexes {
                if let Some(base) = &index.files_base {
                    for name in &names {
                        if sha224_hex(&format!("{base}/{}", pypi_style_path(&b2_hex, name))) == key
                        {
                            matched = Some((index, name.clone()));
                            break 'outer2;
                        }
                    }
                }
            }
        }
        Ok(match matched {
            Some((index, file_name)) => ArtifactIdentity {
                ecosystem: "pip",
                name: body.name.clone(),
                version: format!("{} ({file_name})", body.version),
                origin: index.origin.clone(),
                checksum: Some(RegistryChecksum {
                    algo: ChecksumAlgo::Sha256,
                    digest: sha256.to_vec(),
                }),
                provenance: self.provenance(index),
            },
            None => ArtifactIdentity {
                ecosystem: "pip",
                name: body.name.clone(),
                version: body.version.clone(),
                origin: UNKNOWN_ORIGIN.into(),
                checksum: None,
                provenance: Provenance::Unknown {
                    reason: "no known index file URL hashes to this cache key (find-links, a command-line index, or a direct URL)".into(),
                },
            },
        })
    }
}

impl CacheSource for PipSource {
    fn ecosystem(&self) -> &'static str {
        "pip"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.http_root.clone(), self.inline_root.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        self.describe_in_file(path).map(|(identity, _)| identity)
    }

    fn describe_in_file(
        &self,
        path: &Path,
    ) -> Result<(ArtifactIdentity, Option<ByteRange>), NotAnArtifact> {
        let (key, layout) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        let root = match layout {
            Layout::BodyFile => &self.http_root,
            Layout::Inline => &self.inline_root,
        };
        let shown = || path.display().to_string();
        let meta = crate::sidefile::check_artifact_file(root, path)?;
        // pip writes the metadata file next to the body; an entry is complete only with both.
        let head = path.with_file_name(key);
        let head_is_file = || {
            fs::symlink_metadata(&head)
                .map(|m| m.file_type().is_file())
                .unwrap_or(false)
        };
        if layout == Layout::BodyFile && !head_is_file() {
            return Err(NotAnArtifact::NoChecksum(format!(
                "{} (no response metadata file next to the body: incomplete entry)",
                shown()
            )));
        }
        let mtime = meta.modified().ok();
        if let Some((len, time, identity, range)) = self.memo.lock().unwrap().get(path) {
            if *len == meta.len() && *time == mtime {
                return Ok((identity.clone(), *range));
            }
        }
        let range = match layout {
            Layout::BodyFile => None,
            Layout::Inline => Some(inline_body_range(path)?),
        };
        let identity = self.describe_uncached(path, key, range)?;
        let mut memo = self.memo.lock().unwrap();
        if memo.len() > 100_000 {
            memo.clear();
        }
        memo.insert(
            path.to_path_buf(),
            (meta.len(), mtime, identity.clone(), range),
        );
        Ok((identity, range))
    }
}

/// The body range of a pre-23.3 cache entry, or why it has none.
fn inline_body_range(path: &Path) -> Result<ByteRange, NotAnArtifact> {
    let shown = path.display();
    let file =
        fs::File::open(path).map_err(|e| NotAnArtifact::Unreadable(format!("{shown}: {e}")))?;
    inline::locate_inline_body(&mut io::BufReader::new(file)).map_err(|e| match e {
        InlineError::Io(e) => NotAnArtifact::Unreadable(format!("{shown}: {e}")),
        e => NotAnArtifact::BadName(format!("{shown}: {e}")),
    })
}

/// `packages/<b[0:2]>/<b[2:4]>/<b[4:]>/<file name>`: the content-addressed path of the default index's files.
pub fn pypi_style_path(blake2b_256_hex: &str, file_name: &str) -> String {
    let b = blake2b_256_hex;
    format!(
        "packages/{}/{}/{}/{file_name}",
        b.get(..2).unwrap_or(""),
        b.get(2..4).unwrap_or(""),
        b.get(4..).unwrap_or("")
    )
}

/// pip's cache key of a URL: lowercase hex sha224.
pub fn sha224_hex(url: &str) -> String {
    hex::encode(Sha224::digest(url.as_bytes()))
}

/// PEP 503 normalised project name: lowercase, runs of `-_.` → `-`.
pub fn normalize_project(name: &str) -> String {
    join_runs(name, '-').to_ascii_lowercase()
}

/// The wheel file name escaping of a project name: runs of `-_.` → `_`.
fn escape_wheel_name(name: &str) -> String {
    join_runs(name, '_')
}

fn join_runs(name: &str, with: char) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push(with);
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// `scheme://authority` of a URL (no path), if it has one.
fn url_authority(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let end = rest.find('/').unwrap_or(rest.len());
    (end > 0).then(|| &url[..scheme.len() + 3 + end])
}

/// blake2b-256 and sha256 of the file, or of its `range`.
fn hash_file(path: &Path, range: Option<ByteRange>) -> io::Result<([u8; 32], [u8; 32])> {
    let mut file = fs::File::open(path)?;
    if let Some(range) = range {
        file.seek(SeekFrom::Start(range.offset))?;
    }
    let mut file = file.take(range.map_or(u64::MAX, |r| r.len));
    let mut b2 = Blake2b::<U32>::new();
    let mut s2 = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        b2.update(&buf[..n]);
        s2.update(&buf[..n]);
    }
    Ok((b2.finalize().into(), s2.finalize().into()))
}

/// What kind of archive a body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// A wheel: the dist-info dir prefix (`<name>-<version>`), the `Tag:` lines and the `Build:` of `WHEEL`.
    Wheel {
        dist_info: String,
        tags: Vec<String>,
        build: Option<String>,
    },
    /// An sdist: its top-level dir and the archive extension (`.tar.gz` or `.zip`).
    Sdist { top_dir: String, ext: &'static str },
}

/// Name and version of a wheel or sdist body, from its core metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyInfo {
    pub name: String,
    pub version: String,
    pub kind: BodyKind,
}

impl BodyInfo {
    /// Every file name this archive plausibly had on the index (tag order as written and sorted, name spellings).
    pub fn file_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !out.contains(&s) {
                out.push(s);
            }
        };
        match &self.kind {
            BodyKind::Wheel {
                dist_info,
                tags,
                build,
            } => {
                let mut stems = vec![dist_info.clone()];
                let esc = escape_wheel_name(&self.name);
                stems.push(format!("{esc}-{}", self.version));
                stems.push(format!("{}-{}", esc.to_ascii_lowercase(), self.version));
                let build = build.as_ref().map(|b| format!("-{b}")).unwrap_or_default();
                for tag in compressed_tags(tags) {
                    for stem in &stems {
                        push(format!("{stem}{build}-{tag}.whl"));
                    }
                }
            }
            BodyKind::Sdist { top_dir, ext } => {
                push(format!("{top_dir}{ext}"));
                let esc = escape_wheel_name(&self.name);
                push(format!("{esc}-{}{ext}", self.version));
                push(format!(
                    "{}-{}{ext}",
                    esc.to_ascii_lowercase(),
                    self.version
                ));
                push(format!("{}-{}{ext}", self.name, self.version));
            }
        }
        out
    }
}

/// The compressed tag sets (`py2.py3-none-any`) a wheel's `Tag:` lines expand from: components in order of first
/// appearance, and sorted. Empty when the tags are not a full product of their components.
pub fn compressed_tags(tags: &[String]) -> Vec<String> {
    let mut parts: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut n = 0usize;
    for tag in tags {
        let split: Vec<&str> = tag.split('-').collect();
        let [a, b, c] = split.as_slice() else {
            return Vec::new();
        };
        for (i, p) in [a, b, c].into_iter().enumerate() {
            if !parts[i].contains(p) {
                parts[i].push(p);
            }
        }
        n += 1;
    }
    if n == 0 || parts.iter().map(Vec::len).product::<usize>() != n {
        return Vec::new();
    }
    let first = parts
        .iter()
        .map(|p| p.join("."))
        .collect::<Vec<_>>()
        .join("-");
    let sorted = parts
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.sort_unstable();
            p.join(".")
        })
        .collect::<Vec<_>>()
        .join("-");
    if first == sorted {
        vec![first]
    } else {
        vec![first, sorted]
    }
}

/// Why a body is not a recognisable wheel or sdist.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("not a zip or gzip archive")]
    NotAnArchive,
    #[error("malformed archive: {0}")]
    Malformed(String),
    #[error("no core metadata found: {0}")]
    NoMetadata(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads a body: a wheel or zip sdist through the zip central directory, a `.tar.gz` sdist by streaming the tar.
pub fn inspect_body<R: Read + Seek>(r: &mut R) -> Result<BodyInfo, BodyError> {
    let mut magic = [0u8; 4];
    r.seek(SeekFrom::Start(0))?;
    let n = read_up_to(r, &mut magic)?;
    match &magic[..n] {
        [b'P', b'K', 3, 4] => inspect_zip(r),
        [0x1f, 0x8b, ..] => {
            r.seek(SeekFrom::Start(0))?;
            inspect_tar_gz(r)
        }
        _ => Err(BodyError::NotAnArchive),
    }
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `Name:` and `Version:` of a core metadata file (RFC 822 headers up to the first blank line).
pub fn parse_core_metadata(text: &str) -> Option<(String, String)> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(v.trim().to_owned()),
                "version" if version.is_none() => version = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let ok = |s: &String| !s.is_empty() && !s.contains(['/', '\\']) && s.len() < 256;
    match (name, version) {
        (Some(n), Some(v)) if ok(&n) && ok(&v) => Some((n, v)),
        _ => None,
    }
}

/// `Tag:` lines and `Build:` of a wheel's `WHEEL` file.
pub fn parse_wheel_file(text: &str) -> (Vec<String>, Option<String>) {
    let mut tags = Vec::new();
    let mut build = None;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Tag" => tags.push(v.trim().to_owned()),
                "Build" => build = Some(v.trim().to_owned()).filter(|b| !b.is_empty()),
                _ => {}
            }
        }
    }
    (tags, build)
}

struct ZipEntry {
    name: String,
    method: u16,
    comp_size: u64,
    local_offset: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn malformed(s: &str) -> BodyError {
    BodyError::Malformed(s.to_owned())
}

/// The central directory of a zip (zip64 aware).
fn zip_entries<R: Read + Seek>(r: &mut R) -> Result<Vec<ZipEntry>, BodyError> {
    let len = r.seek(SeekFrom::End(0))?;
    let tail_len = len.min(65_557 + 20);
    r.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| malformed("no end of central directory"))?;
    let mut cd_size = le32(&tail, eocd + 12).ok_or_else(|| malformed("eocd"))? as u64;
    let mut cd_offset = le32(&tail, eocd + 16).ok_or_else(|| malformed("eocd"))? as u64;
    if cd_offset == 0xFFFF_FFFF || cd_size == 0xFFFF_FFFF {
        // Zip64 locator right before the EOCD.
        let loc = eocd
            .checked_sub(20)
            .ok_or_else(|| malformed("zip64 locator"))?;
        if tail[loc..loc + 4] != [0x50, 0x4b, 0x06, 0x07] {
            return Err(malformed("zip64 locator"));
        }
        let z64 = le64(&tail, loc + 8).ok_or_else(|| malformed("zip64 locator"))?;
        r.seek(SeekFrom::Start(z64))?;
        let mut rec = [0u8; 56];
        r.read_exact(&mut rec)?;
        if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
            return Err(malformed("zip64 eocd"));
        }
        cd_size = le64(&rec, 40).ok_or_else(|| malformed("zip64 eocd"))?;
        cd_offset = le64(&rec, 48).ok_or_else(|| malformed("zip64 eocd"))?;
    }
    if cd_size > MAX_CENTRAL_DIR_BYTES || cd_offset.checked_add(cd_size).is_none_or(|e| e > len) {
        return Err(malformed("central directory out of bounds"));
    }
    r.seek(SeekFrom::Start(cd_offset))?;
    let mut cd = vec![0u8; cd_size as usize];
    r.read_exact(&mut cd)?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at + 46 <= cd.len() {
        if cd[at..at + 4] != [0x50, 0x4b, 0x01, 0x02] {
            break;
        }
        let bad = || malformed("central directory entry");
        let method = le16(&cd, at + 10).ok_or_else(bad)?;
        let mut comp_size = le32(&cd, at + 20).ok_or_else(bad)? as u64;
        let uncomp_size = le32(&cd, at + 24).ok_or_else(bad)?;
        let name_len = le16(&cd, at + 28).ok_or_else(bad)? as usize;
        let extra_len = le16(&cd, at + 30).ok_or_else(bad)? as usize;
        let comment_len = le16(&cd, at + 32).ok_or_else(bad)? as usize;
        let mut local_offset = le32(&cd, at + 42).ok_or_else(bad)? as u64;
        let name_bytes = cd.get(at + 46..at + 46 + name_len).ok_or_else(bad)?;
        let extra = cd
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(bad)?;
        // Zip64 extra field: only the fields whose 32-bit value is saturated, in order.
        let mut x = 0usize;
        while x + 4 <= extra.len() {
            let id = le16(extra, x).ok_or_else(bad)?;
            let size = le16(extra, x + 2).ok_or_else(bad)? as usize;
            if id == 1 {
                let mut f = x + 4;
                if uncomp_size == 0xFFFF_FFFF {
                    f += 8;
                }
                if comp_size == 0xFFFF_FFFF {
                    comp_size = le64(extra, f).ok_or_else(bad)?;
                    f += 8;
                }
                if local_offset == 0xFFFF_FFFF {
                    local_offset = le64(extra, f).ok_or_else(bad)?;
                }
            }
            x += 4 + size;
        }
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(name_bytes).into_owned(),
            method,
            comp_size,
            local_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
        if entries.len() > 1_000_000 {
            return Err(malformed("too many entries"));
        }
    }
    Ok(entries)
}

fn read_zip_entry<R: Read + Seek>(r: &mut R, e: &ZipEntry) -> Result<String, BodyError> {
    r.seek(SeekFrom::Start(e.local_offset))?;
    let mut head = [0u8; 30];
    r.read_exact(&mut head)?;
    if head[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err(malformed("local header"));
    }
    let skip = le16(&head, 26).unwrap_or(0) as i64 + le16(&head, 28).unwrap_or(0) as i64;
    r.seek(SeekFrom::Current(skip))?;
    if e.comp_size > MAX_META_BYTES {
        return Err(malformed("metadata entry too large"));
    }
    let raw = r.take(e.comp_size);
    let mut out = Vec::new();
    match e.method {
        0 => {
            raw.take(MAX_META_BYTES).read_to_end(&mut out)?;
        }
        8 => {
            flate2::read::DeflateDecoder::new(raw)
                .take(MAX_META_BYTES)
                .read_to_end(&mut out)
                .map_err(|err| malformed(&format!("deflate: {err}")))?;
        }
        m => return Err(malformed(&format!("compression method {m}"))),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn inspect_zip<R: Read + Seek>(r: &mut R) -> Result<BodyInfo, BodyError> {
    let entries = zip_entries(r)?;
    let find = |suffix: &str, dir_suffix: &str| -> Vec<&ZipEntry> {
        entries
            .iter()
            .filter(|e| {
                e.name
                    .strip_suffix(suffix)
                    .and_then(|d| d.strip_suffix('/'))
                    .is_some_and(|d| !d.is_empty() && !d.contains('/') && d.ends_with(dir_suffix))
            })
            .collect()
    };
    let metas = find("METADATA", ".dist-info");
    let wheels = find("WHEEL", ".dist-info");
    if let ([meta], [wheel]) = (metas.as_slice(), wheels.as_slice()) {
        let dir = meta.name.trim_end_matches("METADATA").trim_end_matches('/');
        if wheel.name.trim_end_matches("WHEEL").trim_end_matches('/') != dir {
            return Err(BodyError::NoMetadata(
                "METADATA and WHEEL in different dist-info dirs".into(),
            ));
        }
        let dist_info = dir.trim_end_matches(".dist-info").to_owned();
        let meta_text = read_zip_entry(r, meta)?;
        let (name, version) = parse_core_metadata(&meta_text)
            .ok_or_else(|| BodyError::NoMetadata("METADATA without Name/Version".into()))?;
        let (tags, build) = parse_wheel_file(&read_zip_entry(r, wheel)?);
        if tags.is_empty() {
            return Err(BodyError::NoMetadata("WHEEL without Tag lines".into()));
        }
        return Ok(BodyInfo {
            name,
            version,
            kind: BodyKind::Wheel {
                dist_info,
                tags,
                build,
            },
        });
    }
    let pkg_infos = find("PKG-INFO", "");
    if let [pkg] = pkg_infos.as_slice() {
        let top_dir = pkg
            .name
            .trim_end_matches("PKG-INFO")
            .trim_end_matches('/')
            .to_owned();
        let (name, version) = parse_core_metadata(&read_zip_entry(r, pkg)?)
            .ok_or_else(|| BodyError::NoMetadata("PKG-INFO without Name/Version".into()))?;
        return Ok(BodyInfo {
            name,
            version,
            kind: BodyKind::Sdist {
                top_dir,
                ext: ".zip",
            },
        });
    }
    Err(BodyError::NoMetadata(
        "zip without exactly one top-level dist-info (METADATA + WHEEL) or PKG-INFO".into(),
    ))
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn inspect_tar_gz<R: Read>(r: &mut R) -> Result<BodyInfo, BodyError> {
    let mut tar = flate2::read::GzDecoder::new(r);
    let mut long_name: Option<String> = None;
    for _ in 0..MAX_TAR_ENTRIES {
        let mut head = [0u8; 512];
        if read_up_to(&mut tar, &mut head).map_err(|e| malformed(&format!("gzip: {e}")))? < 512 {
            break;
        }
        if head.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&head[124..136]).ok_or_else(|| malformed("tar size"))?;
        let kind = head[156];
        let padded = size.div_ceil(512) * 512;
        let mut name = cstr(&head[0..100]);
        if &head[257..262] == b"ustar" {
            let prefix = cstr(&head[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        match kind {
            b'L' | b'x' => {
                if size > MAX_META_BYTES {
                    return Err(malformed("tar extended header too large"));
                }
                let mut data = vec![0u8; padded as usize];
                tar.read_exact(&mut data)
                    .map_err(|e| malformed(&format!("tar: {e}")))?;
                data.truncate(size as usize);
                long_name = if kind == b'L' {
                    Some(cstr(&data))
                } else {
                    pax_path(&data)
                };
                continue;
            }
            _ => {}
        }
        let rel = name.strip_prefix("./").unwrap_or(&name);
        let is_pkg_info = rel
            .strip_suffix("/PKG-INFO")
            .is_some_and(|d| !d.is_empty() && !d.contains('/'));
        if is_pkg_info && (kind == b'0' || kind == 0) {
            if size > MAX_META_BYTES {
                return Err(malformed("PKG-INFO too large"));
            }
            let mut data = vec![0u8; size as usize];
            tar.read_exact(&mut data)
                .map_err(|e| malformed(&format!("tar: {e}")))?;
            let (name, version) = parse_core_metadata(&String::from_utf8_lossy(&data))
                .ok_or_else(|| BodyError::NoMetadata("PKG-INFO without Name/Version".into()))?;
            let top_dir = rel.trim_end_matches("/PKG-INFO").to_owned();
            return Ok(BodyInfo {
                name,
                version,
                kind: BodyKind::Sdist {
                    top_dir,
                    ext: ".tar.gz",
                },
            });
        }
        io::copy(&mut (&mut tar).take(padded), &mut io::sink())
            .map_err(|e| malformed(&format!("tar: {e}")))?;
    }
    Err(BodyError::NoMetadata(
        "no top-level PKG-INFO in the tar".into(),
    ))
}

/// `path=` of a pax extended header.
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|line| {
        let (_, kv) = line.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_owned)
    })
}

/// Builds the pip config from pip itself (run with `env`'s variables), falling back to env-only defaults.
pub fn pip_config(env: &SourceEnv) -> Option<PipConfig> {
    let learned = ask_pip(env);
    let from_pip = learned.as_ref();
    let cache_dir = from_pip
        .and_then(|v| v.get("cache_dir"))
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .or_else(|| env.var("PIP_CACHE_DIR").map(PathBuf::from))
        .or_else(|| default_cache_dir(env))?;
    let default_index = from_pip.and_then(|v| {
        let simple = v.get("simple_url")?.as_str()?;
        let host = v.get("files_host")?.as_str()?;
        let scheme = simple.split_once("://").map(|(s, _)| s).unwrap_or("https");
        Some(PipDefaultIndex {
            simple_url: simple.to_owned(),
            files_base: format!("{scheme}://{host}"),
        })
    });
    let mut indexes: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        for url in s.split_whitespace() {
            if !indexes.iter().any(|u| u == url) {
                indexes.push(url.to_owned());
            }
        }
    };
    if let Some(list) = from_pip
        .and_then(|v| v.get("indexes"))
        .and_then(|v| v.as_array())
    {
        list.iter().filter_map(|u| u.as_str()).for_each(&mut add);
    }
    for var in ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"] {
        if let Some(v) = env.var(var) {
            add(v);
        }
    }
    Some(PipConfig {
        cache_dir,
        default_index,
        indexes,
    })
}

/// pip's platform default cache dir without asking pip.
pub(crate) fn default_cache_dir(env: &SourceEnv) -> Option<PathBuf> {
    if cfg!(windows) {
        return env
            .var("LOCALAPPDATA")
            .map(|d| Path::new(d).join("pip").join("Cache"));
    }
    if cfg!(target_os = "macos") {
        return env.home.as_ref().map(|h| h.join("Library/Caches/pip"));
    }
    if let Some(x) = env.var("XDG_CACHE_HOME") {
        return Some(Path::new(x).join("pip"));
    }
    env.home.as_ref().map(|h| h.join(".cache/pip"))
}

const ASK_PIP: &str = r#"
import json
out = {}
try:
    from pip._internal.models.index import PyPI
    out["simple_url"] = PyPI.simple_url
    out["files_host"] = PyPI.file_storage_domain
except Exception:
    pass
try:
    from pip._internal.configuration import Configuration
    c = Configuration(isolated=False)
    c.load()
    idx = []
    cache = None
    for k, v in c.items():
        if k.endswith(".index-url") or k.endswith(".extra-index-url"):
            idx.extend(str(v).split())
        if k.endswith(".cache-dir") and (cache is None or k.startswith(":env:")):
            cache = str(v)
    out["indexes"] = idx
    if cache:
        import os
        out["cache_dir"] = os.path.abspath(os.path.expanduser(cache))
except Exception:
    pass
if "cache_dir" not in out:
    try:
        from pip._internal.locations import USER_CACHE_DIR
        out["cache_dir"] = USER_CACHE_DIR
    except Exception:
        pass
print(json.dumps(out))
"#;

/// Runs the installed pip's own code with `env`'s variables; `None` when no python with pip answers.
fn ask_pip(env: &SourceEnv) -> Option<serde_json::Value> {
    ["python3", "python"].into_iter().find_map(|python| {
        let mut cmd = std::process::Command::new(python);
        cmd.args(["-c", ASK_PIP])
            .env_clear()
            .envs(&env.vars)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(home) = &env.home {
            cmd.env("HOME", home);
        }
        run_json(&mut cmd)
    })
}

fn run_json(cmd: &mut std::process::Command) -> Option<serde_json::Value> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("simple_url").or(v.get("cache_dir"))?;
    Some(v)
}

#[cfg(test)]
mod tests;
