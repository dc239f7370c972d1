//! The Gradle dependency cache source: `<GRADLE_USER_HOME>/caches/modules-2/files-2.1/<group>/<module>/<version>/<sha1>/<file>`.
//!
//! * Roots: `GRADLE_USER_HOME`, else `~/.gradle` (all OSes), plus the read-only cache `GRADLE_RO_DEP_CACHE`
//!   (same layout). `-g` / `gradle.user.home` are per invocation and not visible here.
//! * Candidates: exactly that depth; the sha1 dir is 1–40 hex digits (Gradle drops leading zeros: left-padded to 40
//!   here); `.part`/`.tmp` and dot files are not artifacts (Gradle downloads to a temp file and moves it in).
//! * Identity: name `group:module`, version `<version>`, checksum sha1 = the dir name ([`ChecksumAlgo::Sha1`],
//!   verified by the engine against the bytes).
//! * Origin (best effort): the URL paired with the file in `metadata-2.*/resource-at-url.bin` (Gradle's binary store;
//!   URL strings are found by scanning for printable runs ending in the Maven-layout path
//!   `/<group with slashes>/<module>/<version>/<file>`). Origin id `gradle:<repository URL>`; no URL found →
//!   `gradle:(unknown)`, several different repositories → ambiguous, Unknown.
//! * Public: the repository URL equals Maven's built-in central URL, read at run time from the installed Maven's
//!   super-POM (Gradle's own `mavenCentral()` points at the same repository), or the origin is marked public.
//! * Eviction: Gradle deletes entries unused for 30 days itself; the watcher sees the deletes under the root.
//!
//! tests/gradle.rs runs the real `gradle` (Debian's 4.4.1, `metadata-2.36`) against local repositories; the unit
//! tests below use fixtures in the documented layout (newer `metadata-2.*` versions store URLs the same way).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

const MAX_METADATA_BYTES: u64 = 256 << 20;

pub struct GradleSource {
    /// `<cache>/modules-2` dirs (writable cache first).
    modules: Vec<PathBuf>,
    central_url: Option<String>,
    marks: OriginMarks,
}

/// `$GRADLE_USER_HOME/caches/modules-2` (default `~/.gradle`), and `$GRADLE_RO_DEP_CACHE/modules-2` when set.
pub fn gradle_module_dirs(env: &SourceEnv) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let user_home = env
        .var("GRADLE_USER_HOME")
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".gradle")));
    if let Some(h) = user_home {
        dirs.push(h.join("caches").join("modules-2"));
    }
    if let Some(ro) = env.var("GRADLE_RO_DEP_CACHE") {
        dirs.push(PathBuf::from(ro).join("modules-2"));
    }
    dirs
}

/// Repository URLs paired with `maven_path` (`/<g/r/o/u/p>/<module>/<version>/<file>`) in a
/// `resource-at-url.bin`: every printable run containing `://` that ends with that path, minus the path.
pub fn repository_urls_in(bin: &[u8], maven_path: &str) -> Vec<String> {
    let needle = maven_path.as_bytes();
    let mut out: Vec<String> = Vec::new();
    if needle.is_empty() {
        return out;
    }
    let mut from = 0;
    while let Some(pos) = bin
        .get(from..)
        .and_then(|hay| hay.windows(needle.len()).position(|w| w == needle))
    {
        let end = from + pos + needle.len();
        let start = bin[..from + pos]
            .iter()
            .rposition(|&b| !(0x21..0x7f).contains(&b))
            .map_or(0, |i| i + 1);
        let after_ok = bin.get(end).is_none_or(|&b| !(0x21..0x7f).contains(&b));
        // The run ends with `maven_path` (UTF-8), so what precedes it is the repository part.
        if let Ok(before) = std::str::from_utf8(&bin[start..from + pos]) {
            // Gradle writes strings with a length prefix that may itself be printable: start at the scheme. A scheme
            // only inside `maven_path` (a cache dir named like one) is no repository URL.
            if let Some(scheme) = before
                .find("http://")
                .or_else(|| before.find("https://"))
                .or_else(|| before.find("file:"))
            {
                let repo = &before[scheme..];
                if after_ok && !out.iter().any(|u| u == repo) {
                    out.push(repo.to_owned());
                }
            }
        }
        from = from + pos + 1;
    }
    out
}

impl GradleSource {
    pub fn new(
        modules: Vec<PathBuf>,
        central_url: Option<String>,
        marks: OriginMarks,
    ) -> GradleSource {
        GradleSource {
            modules,
            central_url,
            marks,
        }
    }

    /// `(modules-2 dir, group, module, version, sha1 dir, file)`.
    fn split_candidate<'p>(&'p self, path: &'p Path) -> Option<(&'p Path, [&'p str; 5])> {
        self.modules.iter().find_map(|m| {
            let rel = path.strip_prefix(m.join("files-2.1")).ok()?;
            let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
            let [g, module, v, sha, file] = parts.as_slice() else {
                return None;
            };
            let ok = [g, module, v, file]
                .iter()
                .all(|p| !p.is_empty() && !p.starts_with('.'))
                && (1..=40).contains(&sha.len())
                && sha.bytes().all(|b| b.is_ascii_hexdigit())
                && !file.ends_with(".part")
                && !file.ends_with(".tmp");
            ok.then_some((m.as_path(), [*g, *module, *v, *sha, *file]))
        })
    }

    fn origin_urls(&self, modules: &Path, maven_path: &str) -> Vec<String> {
        let mut urls = Vec::new();
        for entry in fs::read_dir(modules).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| n.starts_with("metadata-2.")) {
                continue;
            }
            let bin = entry.path().join("resource-at-url.bin");
            let Ok(meta) = fs::symlink_metadata(&bin) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_METADATA_BYTES {
                continue;
            }
            let mut bytes = Vec::new();
            if fs::File::open(&bin)
                .and_then(|f| f.take(MAX_METADATA_BYTES).read_to_end(&mut bytes))
                .is_ok()
            {
                for url in repository_urls_in(&bytes, maven_path) {
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
        }
        urls
    }
}

impl CacheSource for GradleSource {
    fn ecosystem(&self) -> &'static str {
        "gradle"
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.modules.iter().map(|m| m.join("files-2.1")).collect()
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (modules, [group, module, version, sha_dir, file]) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        let files = modules.join("files-2.1");
        crate::sidefile::check_artifact_file(&files, path)?;
        let digest = hex::decode(format!("{:0>40}", sha_dir.to_ascii_lowercase()))
            .map_err(|_| NotAnArtifact::BadName(sha_dir.to_owned()))?;
        let maven_path = format!("/{}/{module}/{version}/{file}", group.replace('.', "/"));
        let urls = self.origin_urls(modules, &maven_path);
        let origin = match urls.as_slice() {
            [one] => format!("gradle:{}", one.trim_end_matches('/')),
            [] => "gradle:(unknown)".to_owned(),
            _ => "gradle:(ambiguous)".to_owned(),
        };
        let provenance = if self.marks.private.contains(&origin) {
            Provenance::Private {
                reason: "marked private by the user".into(),
            }
        } else if urls.len() == 1
            && self
                .central_url
                .as_deref()
                .is_some_and(|c| c.trim_end_matches('/') == urls[0].trim_end_matches('/'))
        {
            Provenance::Public {
                evidence: "downloaded from Maven's built-in central repository URL (super-POM)"
                    .into(),
            }
        } else if urls.len() == 1 && self.marks.public.contains(&origin) {
            Provenance::Public {
                evidence: "marked public by the user".into(),
            }
        } else if urls.len() == 1 {
            Provenance::Private {
                reason: "repository is not the built-in central repository".into(),
            }
        } else {
            Provenance::Unknown {
                reason: format!("{} source URLs found in resource-at-url.bin", urls.len()),
            }
        };
        Ok(ArtifactIdentity {
            ecosystem: "gradle",
            name: format!("{group}:{module}"),
            version: version.to_owned(),
            origin,
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::Sha1,
                digest,
            }),
            provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(modules: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = modules.join("files-2.1").join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn origin_from_resource_at_url_and_central_url() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("caches/modules-2");
        let jar = put(
            &modules,
            "org.ex/lib/1.0/a5b0b0469914fae34b8edc985c8b7e4ba50672/lib-1.0.jar",
            b"x",
        );
        let other = put(&modules, "com.acme/p/2/ff/p-2.jar", b"y");
        fs::create_dir_all(modules.join("metadata-2.106")).unwrap();
        let mut bin =
            b"\x00\x01\x4fhttps://central.test/maven2/org/ex/lib/1.0/lib-1.0.jar\x00\x02".to_vec();
        bin.extend_from_slice(
            b"\x00\x33http://127.0.0.1:9/repo/com/acme/p/2/p-2.jar\x01/files-2.1/...\x00",
        );
        fs::write(modules.join("metadata-2.106/resource-at-url.bin"), &bin).unwrap();
        let src = GradleSource::new(
            vec![modules.clone()],
            Some("https://central.test/maven2/".into()),
            OriginMarks::default(),
        );
        assert!(src.is_candidate(&jar));
        let id = src.describe(&jar).unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str()),
            ("org.ex:lib", "1.0")
        );
        assert_eq!(
            hex::encode(id.checksum.unwrap().digest),
            "00a5b0b0469914fae34b8edc985c8b7e4ba50672"
        );
        assert_eq!(id.origin, "gradle:https://central.test/maven2");
        assert!(
            matches!(id.provenance, Provenance::Public { .. }),
            "{:?}",
            id.provenance
        );
        let id = src.describe(&other).unwrap();
        assert_eq!(id.origin, "gradle:http://127.0.0.1:9/repo");
        assert!(matches!(id.provenance, Provenance::Private { .. }));
        let marked = GradleSource::new(
            vec![modules.clone()],
            None,
            OriginMarks {
                public: vec![id.origin.clone()],
                private: vec![],
            },
        );
        assert!(matches!(
            marked.describe(&other).unwrap().provenance,
            Provenance::Public { .. }
        ));
        let no_maven = GradleSource::new(vec![modules.clone()], None, OriginMarks::default());
        assert!(!matches!(
            no_maven.describe(&jar).unwrap().provenance,
            Provenance::Public { .. }
        ));
        let unknown = put(&modules, "n/m/1/1/m-1.jar", b"z");
        assert!(matches!(
            src.describe(&unknown).unwrap().provenance,
            Provenance::Unknown { .. }
        ));
    }

    #[test]
    fn non_artifacts_and_hostile_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("m2");
        let src = GradleSource::new(vec![modules.clone()], None, OriginMarks::default());
        let f = modules.join("files-2.1");
        for rel in [
            "g/m/1/xyz/a.jar",
            "g/m/1/abc/a.jar.part",
            "g/m/1/abc/.a.jar",
            "g/m/1/a.jar",
            "g/m/1/abc/d/a.jar",
            "g/m/1/00000000000000000000000000000000000000000/a.jar",
        ] {
            assert!(!src.is_candidate(&f.join(rel)), "{rel}");
        }
        let empty = put(&modules, "g/m/1/abc/a.jar", b"");
        assert_eq!(src.describe(&empty), Err(NotAnArtifact::Empty));
        assert!(repository_urls_in(b"", "/a").is_empty());
        assert!(repository_urls_in(b"/a/a/a", "").is_empty());
        assert!(repository_urls_in(&[0xff, b'/', b'a'], "/a").is_empty());
        assert_eq!(
            repository_urls_in(b"xhttp://h/r/a.jarx", "/a.jar"),
            Vec::<String>::new()
        );
        assert_eq!(
            repository_urls_in(b"\x00http://h/r/a.jar", "/a.jar"),
            vec!["http://h/r".to_string()]
        );
    }
}
