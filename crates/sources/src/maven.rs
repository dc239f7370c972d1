//! The Maven local repository source: `<repo>/<g/r/o/u/p>/<artifactId>/<version>/<artifactId>-<version>[-<classifier>].<ext>`.
//!
//! * Root: `<localRepository>` of `~/.m2/settings.xml`, else of `$MAVEN_HOME/conf/settings.xml` (`M2_HOME`, or the
//!   installation found from `mvn` on `PATH`), else `~/.m2/repository` (Windows `%USERPROFILE%\.m2\repository`).
//!   `${user.home}` and `${env.X}` are expanded. `-Dmaven.repo.local` (also in `MAVEN_OPTS`/`.mvn/maven.config`) is
//!   per invocation and not visible here: point pkgseed at such a repository with a `settings.xml`.
//! * Not artifacts: checksum and signature sidecars (`.sha1`, `.md5`, `.sha256`, `.sha512`, `.asc`),
//!   `.lastUpdated` failure markers, `*.part` / `*.tmp` in-flight downloads, `_remote.repositories`,
//!   `maven-metadata*.xml`, `resolver-status.properties`, zero-length files, `-SNAPSHOT` versions (mutable; the
//!   central repository hosts releases only — they are recognised but reported private).
//! * Identity: name `groupId:artifactId`, version `<version>`, or `<version>:<classifier>` when there is a
//!   classifier; the extension is part of the file and not of the identity (`.jar` and `.pom` are two artifacts).
//! * Checksum: `<file>.sha1`, the remote's own checksum file ([`ChecksumAlgo::Sha1`]); verified by the engine.
//! * Origin id `maven:<repoId>` from `_remote.repositories` (`<file>><repoId>=`); `>=` (empty id) means installed
//!   locally and is never public. When a mirror is configured Maven records the mirror's id.
//! * Public: the repo id is the built-in central repository id read at run time from Maven's super-POM
//!   (`org/apache/maven/model/pom-4.0.0.xml` in the installed `maven-model-builder-*.jar`), AND settings.xml does
//!   not redefine that id with a different URL or give a mirror that id, AND the `.sha1` matches the bytes (engine).
//!   Maven not installed → Unknown. A project POM can also redefine `central`: pkgseed cannot see project POMs.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::xmlmini::{parse_xml, XmlElement};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

/// `(localRepository, repositories (id, url) defined in profiles, mirror ids)` of one settings.xml.
pub type ParsedSettings = (Option<String>, Vec<(String, String)>, Vec<String>);

/// `(group, artifactId, version, classifier, file name)` of a candidate path.
type MavenParts<'p> = (String, &'p str, &'p str, Option<&'p str>, &'p str);

const SIDE_SUFFIXES: &[&str] = &[
    ".sha1",
    ".md5",
    ".sha256",
    ".sha512",
    ".asc",
    ".lastUpdated",
    ".part",
    ".tmp",
];

/// Maven's built-in central repository (from the super-POM) and what settings.xml says about repositories.
#[derive(Debug, Clone, Default)]
pub struct MavenSettings {
    /// `(id, url)` of the super-POM's repository.
    pub central: Option<(String, String)>,
    /// Repository ids defined in settings.xml profiles, with their URLs.
    pub settings_repos: Vec<(String, String)>,
    /// Mirror ids defined in settings.xml.
    pub mirror_ids: Vec<String>,
}

pub struct MavenSource {
    repo: PathBuf,
    settings: MavenSettings,
    marks: OriginMarks,
}

fn read_text(path: &Path, max: u64) -> Option<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut bytes)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The Maven installation dir (`MAVEN_HOME`, `M2_HOME`, or `<mvn on PATH, symlinks resolved>/../..`).
pub fn maven_home(env: &SourceEnv) -> Option<PathBuf> {
    if let Some(home) = env.var("MAVEN_HOME").or(env.var("M2_HOME")) {
        return Some(PathBuf::from(home));
    }
    let mvn = std::env::split_paths(env.var("PATH")?)
        .map(|dir| dir.join(if cfg!(windows) { "mvn.cmd" } else { "mvn" }))
        .find(|p| p.is_file())?;
    Some(
        fs::canonicalize(mvn)
            .ok()?
            .parent()?
            .parent()?
            .to_path_buf(),
    )
}

/// The super-POM's first repository `(id, url)`, read from `maven-model-builder-*.jar` under `<maven home>/lib`.
pub fn central_from_installation(maven_home: &Path) -> Option<(String, String)> {
    let jar = fs::read_dir(maven_home.join("lib"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("maven-model-builder-") && n.ends_with(".jar"))
        })?;
    let meta = fs::metadata(&jar).ok()?;
    if meta.len() > 64 << 20 {
        return None;
    }
    let bytes = fs::read(jar).ok()?;
    let entries =
        crate::zipread::read_zip_entries(&bytes, &|n| n.ends_with("/pom-4.0.0.xml"), 1 << 20)
            .ok()?;
    let pom = String::from_utf8(entries.into_iter().next()?.bytes).ok()?;
    central_from_super_pom(&pom)
}

/// `(id, url)` of the first `<repositories><repository>` of a super-POM.
pub fn central_from_super_pom(pom: &str) -> Option<(String, String)> {
    let root = parse_xml(pom).ok()?;
    let repo = root.path(&["repositories", "repository"])?;
    Some((
        repo.child_text("id")?.to_owned(),
        repo.child_text("url")?.to_owned(),
    ))
}

/// Expands `${user.home}` and `${env.X}` in a settings value.
fn expand(value: &str, env: &SourceEnv) -> String {
    let mut out = value.to_owned();
    if let Some(home) = &env.home {
        out = out.replace("${user.home}", &home.to_string_lossy());
    }
    while let Some(start) = out.find("${env.") {
        let Some(len) = out[start..].find('}') else {
            break;
        };
        let name = out[start + 6..start + len].to_owned();
        let val = env.var(&name).unwrap_or("").to_owned();
        out.replace_range(start..start + len + 1, &val);
    }
    out
}

/// Parses a settings.xml: `(localRepository, repositories (id, url) in profiles, mirror ids)`.
pub fn parse_settings(text: &str) -> Option<ParsedSettings> {
    let root = parse_xml(text).ok()?;
    let local = root
        .child_text("localRepository")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let mut repos = Vec::new();
    if let Some(profiles) = root.child("profiles") {
        for profile in profiles.children_named("profile") {
            for kind in ["repositories", "pluginRepositories"] {
                for repo in profile
                    .child(kind)
                    .into_iter()
                    .flat_map(|r: &XmlElement| r.children.iter())
                {
                    if let (Some(id), Some(url)) = (repo.child_text("id"), repo.child_text("url")) {
                        repos.push((id.to_owned(), url.to_owned()));
                    }
                }
            }
        }
    }
    let mirrors = root
        .child("mirrors")
        .map(|m| {
            m.children_named("mirror")
                .filter_map(|m| m.child_text("id"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some((local, repos, mirrors))
}

/// Reads user and global settings and the installation; returns the local repository and the settings.
pub fn detect_maven(env: &SourceEnv) -> Option<(PathBuf, MavenSettings)> {
    let home = maven_home(env);
    let user = env
        .home
        .as_ref()
        .map(|h| h.join(".m2").join("settings.xml"));
    let global = home.as_ref().map(|h| h.join("conf").join("settings.xml"));
    let mut local = None;
    let mut settings = MavenSettings {
        central: home.as_deref().and_then(central_from_installation),
        ..MavenSettings::default()
    };
    for file in [user, global].into_iter().flatten() {
        if let Some((l, repos, mirrors)) = read_text(&file, 1 << 20)
            .as_deref()
            .and_then(parse_settings)
        {
            local = local.or(l);
            settings.settings_repos.extend(repos);
            settings.mirror_ids.extend(mirrors);
        }
    }
    let repo = match local {
        Some(l) => PathBuf::from(expand(&l, env)),
        None => env.home.as_ref()?.join(".m2").join("repository"),
    };
    Some((repo, settings))
}

/// Parses `_remote.repositories` (Java properties `<file>><repoId>=`): the repo id recorded for `file`.
pub fn remote_repo_id(text: &str, file: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('!') {
            return None;
        }
        let (key, _) = line.split_once('=')?;
        let (name, repo) = key.rsplit_once('>')?;
        (name == file).then(|| repo.to_owned())
    })
}

/// The 20 bytes of a `.sha1` file (`<40 hex>` optionally followed by a file name).
pub fn parse_sha1_file(text: &str) -> Option<[u8; 20]> {
    let token = text.split_whitespace().next()?;
    let bytes = hex::decode(token.to_ascii_lowercase()).ok()?;
    bytes.try_into().ok()
}

impl MavenSource {
    pub fn new(repo: PathBuf, settings: MavenSettings, marks: OriginMarks) -> MavenSource {
        MavenSource {
            repo,
            settings,
            marks,
        }
    }

    /// `(group, artifactId, version, classifier, file name)`.
    fn split_candidate<'p>(&self, path: &'p Path) -> Option<MavenParts<'p>> {
        let rel = path.strip_prefix(&self.repo).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        let [group @ .., artifact, version, file] = parts.as_slice() else {
            return None;
        };
        if group.is_empty() || parts.iter().any(|p| p.is_empty() || p.starts_with('.')) {
            return None;
        }
        if SIDE_SUFFIXES.iter().any(|s| file.ends_with(s))
            || *file == "_remote.repositories"
            || file.starts_with("maven-metadata")
            || *file == "resolver-status.properties"
        {
            return None;
        }
        let rest = file
            .strip_prefix(artifact)?
            .strip_prefix('-')?
            .strip_prefix(version)?;
        let (classifier, ext) = match rest.strip_prefix('-') {
            Some(c) => {
                let (classifier, ext) = c.split_once('.')?;
                if classifier.is_empty() {
                    return None;
                }
                (Some(classifier), ext)
            }
            None => (None, rest.strip_prefix('.')?),
        };
        (!ext.is_empty()).then(|| (group.join("."), *artifact, *version, classifier, *file))
    }

    fn provenance(&self, repo_id: &str, origin: &str, version: &str) -> Provenance {
        if self.marks.private.iter().any(|m| m == origin) {
            return Provenance::Private {
                reason: "marked private by the user".into(),
            };
        }
        if repo_id.is_empty() {
            return Provenance::Private {
                reason: "installed locally (empty repository id in _remote.repositories)".into(),
            };
        }
        if version.ends_with("-SNAPSHOT") {
            return Provenance::Private {
                reason: "snapshot versions are mutable and never seeded".into(),
            };
        }
        let marked_public = self.marks.public.iter().any(|m| m == origin);
        let structural = match &self.settings.central {
            None => Err(Provenance::Unknown {
                reason: "Maven's built-in central repository id is unknown (Maven not installed)"
                    .into(),
            }),
            Some((id, url)) if id == repo_id => {
                let redefined =
                    self.settings.settings_repos.iter().any(|(i, u)| {
                        i == id && u.trim_end_matches('/') != url.trim_end_matches('/')
                    });
                if redefined || self.settings.mirror_ids.iter().any(|m| m == id) {
                    Err(Provenance::Private {
                        reason: format!("settings.xml redefines repository id {id}"),
                    })
                } else {
                    Ok(Provenance::Public {
                        evidence: format!(
                            "repository id {id} is Maven's built-in central repository (super-POM)"
                        ),
                    })
                }
            }
            Some(_) if self.settings.mirror_ids.iter().any(|m| m == repo_id) => {
                Err(Provenance::Private {
                    reason: format!(
                        "mirror {repo_id} from settings.xml (not the built-in central repository)"
                    ),
                })
            }
            Some(_) => Err(Provenance::Private {
                reason: format!("repository {repo_id} is not the built-in central repository"),
            }),
        };
        match structural {
            Ok(public) => public,
            Err(_) if marked_public => Provenance::Public {
                evidence: "marked public by the user".into(),
            },
            Err(other) => other,
        }
    }
}

impl CacheSource for MavenSource {
    fn ecosystem(&self) -> &'static str {
        "maven"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.repo.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (group, artifact, version, classifier, file) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        crate::sidefile::check_artifact_file(&self.repo, path)?;
        let dir = path.parent().ok_or(NotAnArtifact::NotCandidate)?;
        let remote = read_text(&dir.join("_remote.repositories"), 1 << 20).unwrap_or_default();
        let repo_id = remote_repo_id(&remote, file);
        let origin = match &repo_id {
            Some(id) if id.is_empty() => "maven:(installed locally)".to_owned(),
            Some(id) => format!("maven:{id}"),
            None => "maven:(unknown)".to_owned(),
        };
        let checksum = read_text(&dir.join(format!("{file}.sha1")), 4096)
            .as_deref()
            .and_then(parse_sha1_file)
            .map(|d| RegistryChecksum {
                algo: ChecksumAlgo::Sha1,
                digest: d.to_vec(),
            });
        let mut provenance = match &repo_id {
            Some(id) => self.provenance(id, &origin, version),
            None => Provenance::Unknown {
                reason: "no _remote.repositories entry for this file".into(),
            },
        };
        if checksum.is_none() && matches!(provenance, Provenance::Public { .. }) {
            provenance = Provenance::Unknown {
                reason: "no .sha1 from the remote repository".into(),
            };
        }
        Ok(ArtifactIdentity {
            ecosystem: "maven",
            name: format!("{group}:{artifact}"),
            version: match classifier {
                Some(c) => format!("{version}:{c}"),
                None => version.to_owned(),
            },
            origin,
            checksum,
            provenance,
        })
    }
}

#[cfg(test)]
mod tests;
