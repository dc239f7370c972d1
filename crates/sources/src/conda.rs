//! The conda/mamba package cache (`pkgs_dirs`): `<pkgs dir>/<name>-<version>-<build>.conda` or `.tar.bz2`, next
//! to the extracted dir `<pkgs dir>/<name>-<version>-<build>/` whose `info/repodata_record.json` records `url`,
//! `channel`, `fn`, `md5`, `sha256` and `size` (what the channel's repodata said).
//!
//! Roots: every entry of `CONDA_PKGS_DIRS` (comma-separated, as conda reads it), `$MAMBA_ROOT_PREFIX/pkgs`,
//! `~/.conda/pkgs`, and `<root>/pkgs` for the common install roots (`~/miniconda3`, `~/miniforge3`,
//! `~/anaconda3`, `~/mambaforge`, `~/micromamba`, `/opt/conda`) that exist. `pkgs_dirs` set in `.condarc` is not
//! read (it is YAML): point `CONDA_PKGS_DIRS` at it. Windows uses the same names under `%USERPROFILE%`.
//!
//! Complete vs partial: downloads go to `<file>.partial` (never a candidate, it does not end in `.conda` or
//! `.tar.bz2`); a tarball without its extracted `repodata_record.json` has no checksum and is not an artifact.
//!
//! Identity: `name` from the record, `version` = `<version>-<build>` (the build string is conda's platform/variant
//! qualifier), checksum = the record's `sha256`. Origin id: the record's `channel` as written (a URL or a
//! channel name), else its `url` without the last two path parts (subdir and file name).
//!
//! Provenance: no conda client runs here, so no channel is public by structure; an origin is public only when the
//! user marks it public. (With conda installed, well-known public channels could be recognised by their channel
//! names from `.condarc` / `conda config --show channels` at run time.) The `defaults` channel is never treated as
//! public automatically: its packages are under their vendor's terms of service, so redistributing them is the
//! user's policy decision (mark it).

use std::path::{Component, Path, PathBuf};

use crate::sidefile::{check_artifact_file, decide, read_regular_file};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

const MAX_RECORD_BYTES: u64 = 1024 * 1024;
const EXTENSIONS: [&str; 2] = [".conda", ".tar.bz2"];

/// The fields of `info/repodata_record.json` pkgseed uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepodataRecord {
    pub name: String,
    pub version: String,
    pub build: String,
    pub file_name: Option<String>,
    pub url: Option<String>,
    pub channel: Option<String>,
    /// Decoded sha256, when present and well-formed.
    pub sha256: Option<Vec<u8>>,
    pub size: Option<u64>,
}

/// Parses `repodata_record.json`. Never panics.
pub fn parse_repodata_record(bytes: &[u8]) -> Result<RepodataRecord, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| obj.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let need = |key: &str| {
        text(key)
            .filter(|s| !s.is_empty())
            .ok_or(format!("no `{key}`"))
    };
    let sha256 = match text("sha256") {
        None => None,
        Some(h) => match hex::decode(h.trim()) {
            Ok(d) if d.len() == 32 => Some(d),
            _ => return Err(format!("`sha256` is not 64 hex digits: {h:?}")),
        },
    };
    Ok(RepodataRecord {
        name: need("name")?,
        version: need("version")?,
        build: need("build")?,
        file_name: text("fn"),
        url: text("url"),
        channel: text("channel").filter(|s| !s.is_empty()),
        sha256,
        size: obj.get("size").and_then(|v| v.as_u64()),
    })
}

/// The conda package caches.
pub struct CondaSource {
    roots: Vec<PathBuf>,
    marks: OriginMarks,
}

impl CondaSource {
    pub fn new(roots: Vec<PathBuf>, marks: OriginMarks) -> CondaSource {
        CondaSource { roots, marks }
    }

    /// `(pkgs dir, file name, stem)` of a candidate: a direct child of a root with a package extension.
    fn split<'p>(&'p self, path: &'p Path) -> Option<(&'p Path, &'p str, &'p str)> {
        self.roots.iter().find_map(|root| {
            let rel = path.strip_prefix(root).ok()?;
            let mut parts = rel.components();
            let (Some(Component::Normal(file)), None) = (parts.next(), parts.next()) else {
                return None;
            };
            let file = file.to_str()?;
            let stem = EXTENSIONS.iter().find_map(|ext| file.strip_suffix(ext))?;
            (!stem.is_empty() && !stem.starts_with('.')).then_some((root.as_path(), file, stem))
        })
    }
}

/// `channel`, else the package URL without `<subdir>/<file>`.
fn origin_of(record: &RepodataRecord) -> Option<String> {
    if let Some(c) = &record.channel {
        return Some(c.trim_end_matches('/').to_owned());
    }
    let url = record.url.as_deref()?;
    let (rest, _file) = url.rsplit_once('/')?;
    let (channel, _subdir) = rest.rsplit_once('/')?;
    (!channel.is_empty()).then(|| channel.to_owned())
}

impl CacheSource for CondaSource {
    fn ecosystem(&self) -> &'static str {
        "conda"
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.roots.clone()
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split(path).is_some()
    }

    fn artifacts_for_sidecar(&self, path: &Path) -> Vec<PathBuf> {
        // conda extracts after the download: `<root>/<stem>/info/repodata_record.json` appears after the archive.
        self.roots
            .iter()
            .filter_map(|root| {
                let rel = path.strip_prefix(root).ok()?;
                let parts: Vec<_> = rel.components().collect();
                match parts.as_slice() {
                    [Component::Normal(stem), Component::Normal(info), Component::Normal(rec)]
                        if *info == "info" && *rec == "repodata_record.json" =>
                    {
                        let stem = stem.to_str()?;
                        Some(
                            EXTENSIONS
                                .iter()
                                .map(move |ext| root.join(format!("{stem}{ext}"))),
                        )
                    }
                    _ => None,
                }
            })
            .flatten()
            .filter(|p| self.is_candidate(p))
            .collect()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (root, file, stem) = self.split(path).ok_or(NotAnArtifact::NotCandidate)?;
        let len = check_artifact_file(root, path)?.len();
        let record_path = root.join(stem).join("info").join("repodata_record.json");
        let bytes = match read_regular_file(&record_path, MAX_RECORD_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NotAnArtifact::NoChecksum(format!(
                    "{file} (no extracted {})",
                    record_path.display()
                )))
            }
            Err(e) => {
                return Err(NotAnArtifact::Unreadable(format!(
                    "{}: {e}",
                    record_path.display()
                )))
            }
        };
        let record = parse_repodata_record(&bytes)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", record_path.display())))?;
        if record.file_name.as_deref().is_some_and(|f| f != file) {
            return Err(NotAnArtifact::Unreadable(format!(
                "{} describes {:?}, not {file}",
                record_path.display(),
                record.file_name
            )));
        }
        if record.size.is_some_and(|s| s != len) {
            return Err(NotAnArtifact::NoChecksum(format!(
                "{file}: {len} bytes, the record says {:?} (partial or another build)",
                record.size
            )));
        }
        let digest = record
            .sha256
            .clone()
            .ok_or_else(|| NotAnArtifact::NoChecksum(format!("{file} (record has no sha256)")))?;
        let (origin, otherwise) = match origin_of(&record) {
            Some(o) => (
                o,
                Provenance::Unknown {
                    reason: "conda channel not marked public".into(),
                },
            ),
            None => (
                "conda:unrecorded".to_owned(),
                Provenance::Unknown {
                    reason: "repodata_record.json records no channel or url".into(),
                },
            ),
        };
        Ok(ArtifactIdentity {
            ecosystem: "conda",
            name: record.name.clone(),
            version: format!("{}-{}", record.version, record.build),
            provenance: decide(&self.marks, &origin, None, otherwise),
            origin,
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::Sha256,
                digest,
            }),
        })
    }
}

/// The package cache dirs: `CONDA_PKGS_DIRS` entries, `$MAMBA_ROOT_PREFIX/pkgs`, `~/.conda/pkgs`, and the
/// `pkgs` dirs of common install roots that exist.
pub(crate) fn conda_pkgs_dirs(env: &SourceEnv) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(list) = env.var("CONDA_PKGS_DIRS") {
        dirs.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    if let Some(prefix) = env.var("MAMBA_ROOT_PREFIX") {
        dirs.push(Path::new(prefix).join("pkgs"));
    }
    if let Some(home) = &env.home {
        dirs.push(home.join(".conda").join("pkgs"));
        for root in [
            "miniconda3",
            "miniforge3",
            "anaconda3",
            "mambaforge",
            "micromamba",
        ] {
            let p = home.join(root);
            if p.is_dir() {
                dirs.push(p.join("pkgs"));
            }
        }
    }
    if Path::new("/opt/conda").is_dir() {
        dirs.push(PathBuf::from("/opt/conda/pkgs"));
    }
    let mut seen = std::collections::BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::fs;

    /// Fixture in the documented pkgs-dir layout (no conda client here).
    fn put(root: &Path, file: &str, bytes: &[u8], channel: &str, size: Option<u64>) -> PathBuf {
        let stem = file
            .strip_suffix(".conda")
            .or(file.strip_suffix(".tar.bz2"))
            .unwrap();
        let (nv, build) = stem.rsplit_once('-').unwrap();
        let (name, version) = nv.rsplit_once('-').unwrap();
        let info = root.join(stem).join("info");
        fs::create_dir_all(&info).unwrap();
        let record = serde_json::json!({
            "name": name, "version": version, "build": build, "fn": file,
            "url": format!("{channel}/noarch/{file}"), "channel": channel,
            "sha256": hex::encode(Sha256::digest(bytes)), "md5": "00",
            "size": size.unwrap_or(bytes.len() as u64),
        });
        fs::write(info.join("repodata_record.json"), record.to_string()).unwrap();
        fs::write(root.join(file), bytes).unwrap();
        root.join(file)
    }

    #[test]
    fn marked_channel_is_public_with_sha256_and_build_in_version() {
        let t = tempfile::tempdir().unwrap();
        let ch = "http://127.0.0.1:9/pub";
        let p = put(t.path(), "tiny-pkg-1.2-py_0.conda", b"conda", ch, None);
        let s = CondaSource::new(
            vec![t.path().to_path_buf()],
            OriginMarks {
                public: vec![ch.into()],
                private: vec![],
            },
        );
        assert!(s.is_candidate(&p));
        let id = s.describe(&p).unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
            ("tiny-pkg", "1.2-py_0", ch)
        );
        assert_eq!(
            id.checksum.unwrap().digest,
            Sha256::digest(b"conda").to_vec()
        );
        assert!(matches!(id.provenance, Provenance::Public { .. }));
    }

    #[test]
    fn defaults_and_unmarked_channels_are_not_public() {
        let t = tempfile::tempdir().unwrap();
        let a = put(t.path(), "a-1-0.tar.bz2", b"a", "defaults", None);
        let b = put(
            t.path(),
            "b-1-0.conda",
            b"b",
            "http://127.0.0.1:9/private",
            None,
        );
        let s = CondaSource::new(
            vec![t.path().to_path_buf()],
            OriginMarks {
                public: vec![],
                private: vec!["defaults".into()],
            },
        );
        assert!(matches!(
            s.describe(&a).unwrap().provenance,
            Provenance::Private { .. }
        ));
        assert!(matches!(
            s.describe(&b).unwrap().provenance,
            Provenance::Unknown { .. }
        ));
    }

    #[test]
    fn partial_and_other_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = CondaSource::new(vec![t.path().to_path_buf()], OriginMarks::default());
        for f in [
            "a-1-0.conda.partial",
            "urls.txt",
            "a-1-0/info/index.json",
            ".conda",
            "cache/x.json",
        ] {
            assert!(!s.is_candidate(&t.path().join(f)), "{f}");
        }
        // Size differs from the record: a truncated file.
        let p = put(t.path(), "c-1-0.conda", b"cc", "x", Some(99));
        assert!(matches!(s.describe(&p), Err(NotAnArtifact::NoChecksum(_))));
        // No extracted record.
        fs::write(t.path().join("d-1-0.conda"), b"d").unwrap();
        assert!(matches!(
            s.describe(&t.path().join("d-1-0.conda")),
            Err(NotAnArtifact::NoChecksum(_))
        ));
    }

    #[test]
    fn record_sidecar_points_at_both_archive_kinds() {
        let t = tempfile::tempdir().unwrap();
        let s = CondaSource::new(vec![t.path().to_path_buf()], OriginMarks::default());
        let rec = t
            .path()
            .join("a-1-0")
            .join("info")
            .join("repodata_record.json");
        assert_eq!(
            s.artifacts_for_sidecar(&rec),
            vec![t.path().join("a-1-0.conda"), t.path().join("a-1-0.tar.bz2")]
        );
        assert!(s
            .artifacts_for_sidecar(&t.path().join("a-1-0/info/index.json"))
            .is_empty());
    }

    #[test]
    fn hostile_records_do_not_panic() {
        for input in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"name\":1}",
            b"{\"name\":\"a\",\"version\":\"1\",\"build\":\"0\",\"sha256\":\"zz\"}",
            b"\xff",
        ] {
            assert!(parse_repodata_record(input).is_err());
        }
        let r =
            parse_repodata_record(br#"{"name":"a","version":"1","build":"0","url":"y"}"#).unwrap();
        assert_eq!(origin_of(&r), None);
        let r = parse_repodata_record(
            br#"{"name":"a","version":"1","build":"0","url":"http://h/ch/linux-64/a.conda"}"#,
        )
        .unwrap();
        assert_eq!(origin_of(&r).as_deref(), Some("http://h/ch"));
    }
}
