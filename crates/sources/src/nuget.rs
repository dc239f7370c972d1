//! The NuGet global-packages folder: `<root>/<id lowercased>/<version lowercased>/<id>.<version>.nupkg`, where
//! `<root>` is `NUGET_PACKAGES`, else `~/.nuget/packages` (the same relative place on Linux, macOS and Windows,
//! `%USERPROFILE%\.nuget\packages`). A `globalPackagesFolder` set in a NuGet.Config or MSBuild's
//! `RestorePackagesPath` is not read: point `NUGET_PACKAGES` at it.
//!
//! Complete vs partial: NuGet extracts under a lock, writing random temp names, then renames the `.nupkg`, then
//! `<file>.sha512`, then `.nupkg.metadata` LAST; a version dir without `.nupkg.metadata` is incomplete (NuGet
//! itself reinstalls it) and is not an artifact.
//!
//! Checksum: `<file>.nupkg.sha512` is the base64 sha512 of the `.nupkg` bytes, the registry's `packageHash`
//! ([`ChecksumAlgo::Sha512`]). `contentHash` in `.nupkg.metadata` is NOT used (for signed packages it is the hash
//! of the unsigned content).
//!
//! Origin: the `source` of `.nupkg.metadata` (NuGet 5.9+), verbatim, is the origin id; a version-1 metadata file
//! without `source` gives the origin `nuget:unrecorded`. Provenance: no NuGet client runs on this machine, so the
//! default source cannot be learned from the tool; an origin is public only when the user marks it public. (With
//! a dotnet/NuGet installation the default would be read from the NuGet.Config `packageSources` that
//! `dotnet nuget list source` reports — the built-in default v3 source present in the SDK's own config.) Local
//! folder feeds (a `source` that is not an http(s) URL) are private.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;

use crate::sidefile::{check_artifact_file, decide, read_regular_file};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

/// Metadata files are a few hundred bytes; this bounds memory on a hostile one.
const MAX_SIDE_FILE_BYTES: u64 = 64 * 1024;

/// Origin id when `.nupkg.metadata` records no source (version 1 files).
pub const NUGET_UNRECORDED_ORIGIN: &str = "nuget:unrecorded";

/// The NuGet global-packages folder.
pub struct NugetSource {
    root: PathBuf,
    marks: OriginMarks,
}

/// The fields of `.nupkg.metadata` pkgseed uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NupkgMetadata {
    pub version: Option<i64>,
    pub content_hash: Option<String>,
    pub source: Option<String>,
}

/// Parses `.nupkg.metadata` (JSON). Never panics.
pub fn parse_nupkg_metadata(bytes: &[u8]) -> Result<NupkgMetadata, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` is not a string")),
        }
    };
    Ok(NupkgMetadata {
        version: obj.get("version").and_then(|v| v.as_i64()),
        content_hash: text("contentHash")?,
        source: text("source")?.filter(|s| !s.trim().is_empty()),
    })
}

/// Decodes a `.nupkg.sha512` file: base64 of the 64-byte sha512 (surrounding whitespace allowed).
pub fn parse_nupkg_sha512(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    if digest.len() != 64 {
        return Err(format!("{} bytes, not a sha512", digest.len()));
    }
    Ok(digest)
}

impl NugetSource {
    pub fn new(root: PathBuf, marks: OriginMarks) -> NugetSource {
        NugetSource { root, marks }
    }

    /// `(id dir, version dir, file name)` of a candidate path.
    fn split<'p>(&self, path: &'p Path) -> Option<(&'p str, &'p str, &'p str)> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut parts = rel.components();
        let (
            Some(Component::Normal(id)),
            Some(Component::Normal(ver)),
            Some(Component::Normal(file)),
            None,
        ) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (id, ver, file) = (id.to_str()?, ver.to_str()?, file.to_str()?);
        if id.starts_with('.') || ver.starts_with('.') || id.is_empty() || ver.is_empty() {
            return None;
        }
        // NuGet names the file `<id>.<version>.nupkg` (lowercased since NuGet 3.x; compare case-insensitively).
        let expected = format!("{id}.{ver}.nupkg");
        file.eq_ignore_ascii_case(&expected)
            .then_some((id, ver, file))
    }

    fn provenance(&self, origin: &str, source: Option<&str>) -> Provenance {
        let otherwise = match source {
            None => Provenance::Unknown {
                reason: ".nupkg.metadata records no source (version 1 metadata)".into(),
            },
            Some(s) if !(s.starts_with("https://") || s.starts_with("http://")) => {
                Provenance::Private {
                    reason: "local folder feed".into(),
                }
            }
            Some(_) => Provenance::Unknown {
                reason: "NuGet source not marked public (the default source cannot be learned without a NuGet installation)".into(),
            },
        };
        decide(&self.marks, origin, None, otherwise)
    }
}

impl CacheSource for NugetSource {
    fn ecosystem(&self) -> &'static str {
        "nuget"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split(path).is_some()
    }

    fn artifacts_for_sidecar(&self, path: &Path) -> Vec<PathBuf> {
        // `.nupkg.metadata` is renamed into place last: the package in its dir is complete from then on.
        let (Some(dir), Some(".nupkg.metadata")) =
            (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Vec::new();
        };
        let (Some(ver), Some(id)) = (
            dir.file_name().and_then(|n| n.to_str()),
            dir.parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str()),
        ) else {
            return Vec::new();
        };
        let nupkg = dir.join(format!("{id}.{ver}.nupkg"));
        if self.is_candidate(&nupkg) {
            vec![nupkg]
        } else {
            Vec::new()
        }
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (id, ver, file) = self.split(path).ok_or(NotAnArtifact::NotCandidate)?;
        check_artifact_file(&self.root, path)?;
        let dir = self.root.join(id).join(ver);
        let read = |p: PathBuf| match read_regular_file(&p, MAX_SIDE_FILE_BYTES) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NotAnArtifact::Unreadable(format!("{}: {e}", p.display()))),
        };
        let what = format!("{id} {ver}");
        // Written last: without it the package is still being extracted (or the extraction died).
        let metadata = read(dir.join(".nupkg.metadata"))?.ok_or_else(|| {
            NotAnArtifact::NoChecksum(format!("{what} (incomplete: no .nupkg.metadata yet)"))
        })?;
        let metadata = parse_nupkg_metadata(&metadata)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{what} .nupkg.metadata: {e}")))?;
        let sha512 = read(dir.join(format!("{file}.sha512")))?
            .ok_or_else(|| NotAnArtifact::NoChecksum(format!("{what} (no {file}.sha512)")))?;
        let digest = parse_nupkg_sha512(&sha512)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{what} {file}.sha512: {e}")))?;
        let origin = metadata
            .source
            .clone()
            .unwrap_or_else(|| NUGET_UNRECORDED_ORIGIN.to_owned());
        Ok(ArtifactIdentity {
            ecosystem: "nuget",
            name: id.to_owned(),
            version: ver.to_owned(),
            provenance: self.provenance(&origin, metadata.source.as_deref()),
            origin,
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::Sha512,
                digest,
            }),
        })
    }
}

/// `NUGET_PACKAGES`, else `<home>/.nuget/packages`.
pub(crate) fn nuget_packages_root(env: &SourceEnv) -> Option<PathBuf> {
    match env.var("NUGET_PACKAGES") {
        Some(p) => Some(PathBuf::from(p)),
        None => env.home.as_ref().map(|h| h.join(".nuget").join("packages")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha512};
    use std::fs;

    /// Fixture in the documented global-packages layout (no NuGet client here): nupkg, `.sha512`, then
    /// `.nupkg.metadata` last.
    fn install(
        root: &Path,
        id: &str,
        ver: &str,
        bytes: &[u8],
        source: Option<&str>,
        metadata: bool,
    ) -> PathBuf {
        let dir = root.join(id.to_lowercase()).join(ver.to_lowercase());
        fs::create_dir_all(&dir).unwrap();
        let file = format!("{}.{}.nupkg", id.to_lowercase(), ver.to_lowercase());
        fs::write(dir.join(&file), bytes).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes));
        fs::write(dir.join(format!("{file}.sha512")), b64).unwrap();
        if metadata {
            let mut m = serde_json::json!({"version": 2, "contentHash": "x"});
            if let Some(s) = source {
                m["source"] = s.into();
            }
            fs::write(dir.join(".nupkg.metadata"), m.to_string()).unwrap();
        }
        dir.join(file)
    }

    fn marks(public: &[&str], private: &[&str]) -> OriginMarks {
        OriginMarks {
            public: public.iter().map(|s| s.to_string()).collect(),
            private: private.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn describes_marked_public_package_with_sha512() {
        let t = tempfile::tempdir().unwrap();
        let src = "http://127.0.0.1:1/v3/index.json";
        let p = install(
            t.path(),
            "Tiny.Pkg",
            "1.0.0-Beta",
            b"zipbytes",
            Some(src),
            true,
        );
        let s = NugetSource::new(t.path().to_path_buf(), marks(&[src], &[]));
        assert!(s.is_candidate(&p));
        let id = s.describe(&p).unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str()),
            ("tiny.pkg", "1.0.0-beta")
        );
        assert_eq!(id.origin, src);
        assert_eq!(
            id.checksum.unwrap().digest,
            Sha512::digest(b"zipbytes").to_vec()
        );
        assert!(matches!(id.provenance, Provenance::Public { .. }));
    }

    #[test]
    fn unmarked_local_and_unrecorded_sources_are_not_public() {
        let t = tempfile::tempdir().unwrap();
        let a = install(
            t.path(),
            "a",
            "1.0.0",
            b"a",
            Some("https://feed.invalid/v3/index.json"),
            true,
        );
        let b = install(t.path(), "b", "1.0.0", b"b", Some("/srv/feed"), true);
        let c = install(t.path(), "c", "1.0.0", b"c", None, true);
        let s = NugetSource::new(t.path().to_path_buf(), marks(&["/srv/feed"], &[]));
        assert!(matches!(
            s.describe(&a).unwrap().provenance,
            Provenance::Unknown { .. }
        ));
        // A public mark makes an otherwise private origin public.
        assert!(matches!(
            s.describe(&b).unwrap().provenance,
            Provenance::Public { .. }
        ));
        let c = s.describe(&c).unwrap();
        assert_eq!(c.origin, NUGET_UNRECORDED_ORIGIN);
        assert!(matches!(c.provenance, Provenance::Unknown { .. }));
        let s = NugetSource::new(
            t.path().to_path_buf(),
            marks(&["/srv/feed"], &["/srv/feed"]),
        );
        assert!(matches!(
            s.describe(&b).unwrap().provenance,
            Provenance::Private { .. }
        ));
    }

    #[test]
    fn incomplete_and_non_artifacts_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = install(t.path(), "a", "1.0.0", b"a", Some("x"), false);
        let s = NugetSource::new(t.path().to_path_buf(), OriginMarks::default());
        assert!(matches!(s.describe(&p), Err(NotAnArtifact::NoChecksum(_))));
        let dir = p.parent().unwrap();
        for other in [
            ".nupkg.metadata",
            "a.1.0.0.nupkg.sha512",
            "a.nuspec",
            "k3j2x1ab.qzv",
            "b.1.0.0.nupkg",
        ] {
            assert!(!s.is_candidate(&dir.join(other)), "{other}");
        }
        assert!(!s.is_candidate(&t.path().join("a").join("a.1.0.0.nupkg")));
        let e = install(t.path(), "e", "1.0.0", b"", Some("x"), true);
        assert_eq!(s.describe(&e), Err(NotAnArtifact::Empty));
    }

    #[test]
    fn metadata_sidecar_points_at_its_package() {
        let t = tempfile::tempdir().unwrap();
        let s = NugetSource::new(t.path().to_path_buf(), OriginMarks::default());
        let dir = t.path().join("a").join("1.0.0");
        assert_eq!(
            s.artifacts_for_sidecar(&dir.join(".nupkg.metadata")),
            vec![dir.join("a.1.0.0.nupkg")]
        );
        assert!(s.artifacts_for_sidecar(&dir.join("a.nuspec")).is_empty());
        assert!(s
            .artifacts_for_sidecar(&t.path().join(".nupkg.metadata"))
            .is_empty());
    }

    #[test]
    fn hostile_side_files_do_not_panic() {
        for input in [
            &b""[..],
            b"[]",
            b"{\"source\": 5}",
            b"\xff\xfe",
            b"{\"version\":\"x\"}",
            b"nul\0",
        ] {
            let _ = parse_nupkg_metadata(input);
            let _ = parse_nupkg_sha512(input);
        }
        assert!(parse_nupkg_sha512(b"AAAA").is_err());
        assert_eq!(
            parse_nupkg_metadata(br#"{"version":2,"contentHash":"h","source":"s"}"#)
                .unwrap()
                .source
                .as_deref(),
            Some("s")
        );
    }
}
