//! Composer: dist archives in `<cache>/files/<vendor>/<package>/<sha1 of the dist URL>.<zip|tar>`, where `<cache>`
//! is `COMPOSER_CACHE_DIR`, else `$COMPOSER_HOME/cache`, else `~/.composer/cache` when `~/.composer` exists, else
//! `$XDG_CACHE_HOME/composer` (`~/.cache/composer`); on macOS `~/Library/Caches/composer`, on Windows
//! `%LOCALAPPDATA%\Composer` (the roots that exist are all watched).
//!
//! Identity and origin are not in the path: they come from the repository metadata Composer caches in
//! `<cache>/repo/<repo dir>/*.json` (p2 `packages.<vendor/pkg>[]`, minified or not, and the older
//! `packages.<vendor/pkg>.<version>` object form): the entry whose `dist.url` hashes (sha1) to the file stem is the
//! artifact. Version = the entry's `version`; checksum = `dist.shasum` (sha1, [`ChecksumAlgo::Sha1`]) when the
//! repository published one — without it nothing proves the bytes and the artifact is not seeded (the engine needs
//! a registry checksum). Origin id = the `<repo dir>` name (Composer's sanitised repository URL).
//!
//! Provenance: the repo dir of Composer's built-in default repository is learned once, when the source is built,
//! by asking the installed `composer` for its default `repositories` with an empty `COMPOSER_HOME` (so user and
//! global config are ignored); that repo dir is public; any other is public only when the user marks it.
//!
//! Eviction: `composer clear-cache` and Composer's own GC (`cache-files-ttl`, `cache-files-maxsize`) delete the
//! archive files; the watcher withdraws them. Partial: Composer downloads to a temp path and copies into the cache
//! when complete; empty files are refused and a partial one fails the engine's sha1 check.

use std::path::{Component, Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::sidefile::{check_artifact_file, decide, read_regular_file, subdirs};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

const MAX_REPO_FILE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_REPO_FILES: usize = 20_000;

/// One version of a package in cached repository metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposerDist {
    pub version: String,
    pub url: String,
    /// `dist.shasum` decoded (sha1), when present and well-formed.
    pub shasum: Option<Vec<u8>>,
}

/// Every version of `package` in one cached repository metadata file (p2 arrays, expanded when minified, or the
/// older object keyed by version). Never panics.
pub fn parse_composer_metadata(bytes: &[u8], package: &str) -> Result<Vec<ComposerDist>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(entries) = value.get("packages").and_then(|p| p.get(package)) else {
        return Ok(Vec::new());
    };
    let minified = value.get("minified").and_then(|m| m.as_str()) == Some("composer/2.0");
    let mut out = Vec::new();
    let mut push = |v: &serde_json::Value, key_version: Option<&str>| {
        let version = v.get("version").and_then(|x| x.as_str()).or(key_version);
        let dist = v.get("dist");
        let url = dist.and_then(|d| d.get("url")).and_then(|u| u.as_str());
        if let (Some(version), Some(url)) = (version, url) {
            let shasum = dist
                .and_then(|d| d.get("shasum"))
                .and_then(|s| s.as_str())
                .and_then(|s| hex::decode(s.trim()).ok())
                .filter(|d| d.len() == 20);
            out.push(ComposerDist {
                version: version.to_owned(),
                url: url.to_owned(),
                shasum,
            });
        }
    };
    match entries {
        serde_json::Value::Array(list) => {
            let mut expanded = serde_json::Map::new();
            for item in list {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                if minified {
                    // Each entry lists only what changed from the previous one; "__unset" removes a key.
                    for (k, v) in obj {
                        if v.as_str() == Some("__unset") {
                            expanded.remove(k);
                        } else {
                            expanded.insert(k.clone(), v.clone());
                        }
                    }
                    push(&serde_json::Value::Object(expanded.clone()), None);
                } else {
                    push(item, None);
                }
            }
        }
        serde_json::Value::Object(by_version) => {
            for (ver, item) in by_version {
                push(item, Some(ver));
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The Composer cache.
pub struct ComposerSource {
    caches: Vec<PathBuf>,
    default_repo_dir: Option<String>,
    marks: OriginMarks,
}

impl ComposerSource {
    /// `caches`: Composer cache dirs (each with `files/` and `repo/`); `default_repo_dir`: the repo dir name of
    /// Composer's built-in default repository, learned from the installed composer.
    pub fn new(
        caches: Vec<PathBuf>,
        default_repo_dir: Option<String>,
        marks: OriginMarks,
    ) -> ComposerSource {
        ComposerSource {
            caches,
            default_repo_dir,
            marks,
        }
    }

    /// `(cache dir, vendor/package, stem)`.
    fn split(&self, path: &Path) -> Option<(PathBuf, String, String)> {
        self.caches.iter().find_map(|cache| {
            let rel = path.strip_prefix(cache.join("files")).ok()?;
            let mut parts = rel.components();
            let (
                Some(Component::Normal(v)),
                Some(Component::Normal(p)),
                Some(Component::Normal(f)),
                None,
            ) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            let (v, p, f) = (v.to_str()?, p.to_str()?, f.to_str()?);
            let stem = f.strip_suffix(".zip").or_else(|| f.strip_suffix(".tar"))?;
            let ok = stem.len() == 40
                && stem.bytes().all(|b| b.is_ascii_hexdigit())
                && !v.starts_with('.')
                && !p.starts_with('.');
            ok.then(|| (cache.clone(), format!("{v}/{p}"), stem.to_ascii_lowercase()))
        })
    }
}

impl CacheSource for ComposerSource {
    fn ecosystem(&self) -> &'static str {
        "composer"
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.caches.iter().map(|c| c.join("files")).collect()
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (cache, package, stem) = self.split(path).ok_or(NotAnArtifact::NotCandidate)?;
        check_artifact_file(&cache.join("files"), path)?;
        let mut files = 0usize;
        let mut found: Option<(String, ComposerDist)> = None;
        'repos: for repo in subdirs(&cache.join("repo")) {
            let Some(repo_name) = repo.file_name().and_then(|n| n.to_str()).map(str::to_owned)
            else {
                continue;
            };
            let mut jsons: Vec<PathBuf> = std::fs::read_dir(&repo)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            jsons.sort();
            for json in jsons {
                files += 1;
                if files > MAX_REPO_FILES {
                    break 'repos;
                }
                let Ok(bytes) = read_regular_file(&json, MAX_REPO_FILE_BYTES) else {
                    continue;
                };
                let Ok(dists) = parse_composer_metadata(&bytes, &package) else {
                    continue;
                };
                if let Some(d) = dists
                    .into_iter()
                    .find(|d| hex::encode(Sha1::digest(d.url.as_bytes())) == stem)
                {
                    let better = found
                        .as_ref()
                        .is_none_or(|(_, f)| f.shasum.is_none() && d.shasum.is_some());
                    if better {
                        found = Some((repo_name.clone(), d));
                    }
                }
            }
        }
        let Some((origin, dist)) = found else {
            return Err(NotAnArtifact::NoChecksum(format!(
                "{package} {stem}: no cached repository metadata has a dist URL with this sha1"
            )));
        };
        let structural = (self.default_repo_dir.as_deref() == Some(origin.as_str()))
            .then(|| "repository cache of Composer's built-in default repository (learned from the installed composer)".to_owned());
        let provenance = decide(
            &self.marks,
            &origin,
            structural,
            Provenance::Private { reason: "Composer repository that is not the built-in default (an alternative repository)".into() },
        );
        Ok(ArtifactIdentity {
            ecosystem: "composer",
            name: package,
            version: dist.version,
            origin,
            checksum: dist.shasum.map(|digest| RegistryChecksum {
                algo: ChecksumAlgo::Sha1,
                digest,
            }),
            provenance,
        })
    }
}

/// Composer's repo dir name for a repository URL (`Cache` sanitises with `[^a-z0-9.]` → `-`).
pub fn composer_repo_dir_name(url: &str) -> String {
    url.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Parses `composer config --global repositories` output (JSON) and returns the repo dir of the first composer
/// repository URL. Never panics.
pub fn parse_default_repositories(out: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let url = |r: &serde_json::Value| {
        (r.get("type").and_then(|t| t.as_str()) == Some("composer"))
            .then(|| r.get("url").and_then(|u| u.as_str()))
            .flatten()
            .map(str::to_owned)
    };
    let found = match &v {
        serde_json::Value::Object(m) => m.values().find_map(url),
        serde_json::Value::Array(a) => a.iter().find_map(url),
        _ => None,
    }?;
    Some(composer_repo_dir_name(found.trim_end_matches('/')))
}

/// Asks the installed composer for its built-in default repositories, with an empty `COMPOSER_HOME`.
pub(crate) fn probe_default_repo_dir(env: &SourceEnv) -> Option<String> {
    let empty = std::env::temp_dir().join(format!("pkgseed-composer-probe-{}", std::process::id()));
    std::fs::create_dir_all(&empty).ok()?;
    let out = crate::sidefile::run_tool_env(
        "composer",
        &["config", "--global", "--no-interaction", "repositories"],
        env,
        &[
            ("COMPOSER_HOME", empty.as_os_str()),
            ("COMPOSER_CACHE_DIR", empty.as_os_str()),
        ],
    );
    let _ = std::fs::remove_dir_all(&empty);
    parse_default_repositories(&out?)
}

/// The Composer cache dirs that apply (the first one always, the legacy/platform ones when they exist).
pub(crate) fn composer_cache_dirs(env: &SourceEnv) -> Vec<PathBuf> {
    if let Some(c) = env.var("COMPOSER_CACHE_DIR") {
        return vec![PathBuf::from(c)];
    }
    if let Some(h) = env.var("COMPOSER_HOME") {
        return vec![Path::new(h).join("cache")];
    }
    let Some(home) = &env.home else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    let legacy = home.join(".composer");
    if legacy.is_dir() {
        dirs.push(legacy.join("cache"));
    }
    let xdg = env
        .var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache"));
    dirs.push(xdg.join("composer"));
    for other in [home.join("Library/Caches/composer")].into_iter().chain(
        env.var("LOCALAPPDATA")
            .map(|l| Path::new(l).join("Composer")),
    ) {
        if other.is_dir() {
            dirs.push(other);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn setup(t: &Path, repo: &str, pkg: &str, entries: serde_json::Value, minified: bool) {
        let dir = t.join("repo").join(repo);
        fs::create_dir_all(&dir).unwrap();
        let mut doc = serde_json::json!({"packages": {pkg: entries}});
        if minified {
            doc["minified"] = "composer/2.0".into();
        }
        fs::write(
            dir.join(format!("provider-{}.json", pkg.replace('/', "~"))),
            doc.to_string(),
        )
        .unwrap();
    }

    fn file(t: &Path, pkg: &str, url: &str, bytes: &[u8]) -> PathBuf {
        let p = t
            .join("files")
            .join(pkg)
            .join(format!("{}.zip", hex::encode(Sha1::digest(url.as_bytes()))));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn minified_p2_metadata_gives_version_shasum_and_default_repo_is_public() {
        let t = tempfile::tempdir().unwrap();
        let t = t.path();
        let sum = hex::encode(Sha1::digest(b"zip2"));
        setup(
            t,
            "http---r",
            "acme/tiny",
            serde_json::json!([
                {"name": "acme/tiny", "version": "2.0.0", "dist": {"type": "zip", "url": "http://r/2.zip", "shasum": sum}},
                {"version": "1.0.0", "dist": {"type": "zip", "url": "http://r/1.zip", "shasum": ""}}
            ]),
            true,
        );
        let p2 = file(t, "acme/tiny", "http://r/2.zip", b"zip2");
        let p1 = file(t, "acme/tiny", "http://r/1.zip", b"zip1");
        let s = ComposerSource::new(
            vec![t.to_path_buf()],
            Some("http---r".into()),
            OriginMarks::default(),
        );
        assert!(s.is_candidate(&p2));
        let id = s.describe(&p2).unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
            ("acme/tiny", "2.0.0", "http---r")
        );
        assert_eq!(
            id.checksum.unwrap(),
            RegistryChecksum {
                algo: ChecksumAlgo::Sha1,
                digest: Sha1::digest(b"zip2").to_vec()
            }
        );
        assert!(matches!(id.provenance, Provenance::Public { .. }));
        let id = s.describe(&p1).unwrap();
        assert_eq!((id.version.as_str(), id.checksum), ("1.0.0", None));
    }

    #[test]
    fn other_repos_need_a_mark_and_unknown_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let t = t.path();
        setup(
            t,
            "http---p",
            "acme/x",
            serde_json::json!({"1.0.0": {"dist": {"url": "u", "shasum": "00"}}}),
            false,
        );
        let p = file(t, "acme/x", "u", b"x");
        let s = ComposerSource::new(
            vec![t.to_path_buf()],
            Some("http---r".into()),
            OriginMarks::default(),
        );
        let id = s.describe(&p).unwrap();
        assert_eq!(
            (id.version.as_str(), id.origin.as_str()),
            ("1.0.0", "http---p")
        );
        assert!(matches!(id.provenance, Provenance::Private { .. }));
        let s = ComposerSource::new(
            vec![t.to_path_buf()],
            None,
            OriginMarks {
                public: vec!["http---p".into()],
                private: vec![],
            },
        );
        assert!(matches!(
            s.describe(&p).unwrap().provenance,
            Provenance::Public { .. }
        ));
        let q = file(t, "acme/x", "other", b"y");
        assert!(matches!(s.describe(&q), Err(NotAnArtifact::NoChecksum(_))));
        for f in [
            "files/acme/x/abc.zip",
            "files/acme/x.zip",
            "repo/http---p/packages.json",
            "files/a/b/c/0000000000000000000000000000000000000000.zip",
        ] {
            assert!(!s.is_candidate(&t.join(f)), "{f}");
        }
    }

    #[test]
    fn hostile_metadata_does_not_panic() {
        for input in [
            &b""[..],
            b"[]",
            b"{\"packages\":[]}",
            b"{\"packages\":{\"a/b\":5}}",
            b"{\"packages\":{\"a/b\":[1,{\"dist\":7}]}}",
            b"\xff",
        ] {
            let _ = parse_composer_metadata(input, "a/b");
            let _ = parse_default_repositories(std::str::from_utf8(input).unwrap_or(""));
        }
        assert_eq!(
            parse_default_repositories(r#"{"x":{"type":"composer","url":"https://r.example/"}}"#)
                .as_deref(),
            Some("https---r.example")
        );
    }
}
