//! The apt cache source: `.deb` files in `Dir::Cache::archives` (default `/var/cache/apt/archives`), checked
//! against the `Packages` lists in `Dir::State::lists` (default `/var/lib/apt/lists`).
//!
//! * **Roots.** Read at run time from `apt-config dump` (which honours apt's own `APT_CONFIG` variable, taken from
//!   the injected environment); without apt-config, the default paths when they exist. Only the archives dir
//!   itself is watched: `partial/` (in-progress downloads, renamed on completion) and `lock` are never candidates.
//! * **Identity.** `<package>_<version, %-escaped>_<arch>.deb` → name `package`, version `<version> <arch>`.
//! * **Checksum.** The `SHA256:` of the stanza with the same Package/Version/Architecture in a `Packages` list
//!   (plain, `.gz` or `.lz4`, as apt stores them; `.xz` is not read). When several lists disagree on the SHA256 the
//!   `.deb` is hashed here to pick the stanza that describes these bytes.
//! * **Provenance.** Public when the `.deb`'s SHA256 is in a list that is proven by its `InRelease`: `gpgv` (a
//!   subprocess, cached per file stamp) verifies the InRelease against the trusted archive keyrings (injected:
//!   by default `/usr/share/keyrings/*archive-keyring*.gpg`, `Dir::Etc::trusted` and the `.gpg` files in
//!   `Dir::Etc::trustedparts`; armored `.asc` keyrings are not read), and the sha256 and size of the list's
//!   decompressed content appear in the verified `SHA256:` section. Any other list (unsigned, a key outside the
//!   archive keyrings — e.g. a repo using `signed-by=` a third-party key — or content not matching the signature)
//!   is private unless the user marked the origin public; a `.deb` in no list is unknown (`apt:unlisted`). Origin
//!   id: `apt:<list file name up to "_dists_">` (apt's URI-as-file-name of the archive root, e.g.
//!   `apt:<mirror host>_debian`); the evidence names the InRelease `Origin:`/`Label:`/`Suite:`.
//! * **Eviction.** `apt-get clean`/`autoclean` delete the `.deb` files; the watcher withdraws them.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

/// Origin id of `.deb` files no list describes.
pub const UNLISTED_ORIGIN: &str = "apt:unlisted";
/// Upper bound on one decompressed list.
const MAX_LIST_BYTES: u64 = 1 << 30;

/// What the apt source is built from (injected, so tests can use their own dirs and keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptConfig {
    pub archives: PathBuf,
    pub lists: PathBuf,
    /// Keyring files (binary OpenPGP) whose keys make an `InRelease` trusted.
    pub keyrings: Vec<PathBuf>,
    /// The `gpgv` program.
    pub gpgv: PathBuf,
}

type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// One parsed `Packages` list.
#[derive(Debug, Clone, Default)]
struct ListInfo {
    origin: String,
    /// Set when proven by a trusted InRelease: the evidence text.
    trusted: Option<String>,
    /// (package, version, arch) → sha256
    entries: HashMap<(String, String, String), [u8; 32]>,
}

#[derive(Default)]
struct Memo {
    /// InRelease path → (stamp, verified signed text or None).
    releases: HashMap<PathBuf, (Stamp, Option<String>)>,
    /// List path → (stamp, release stamp, parsed).
    lists: HashMap<PathBuf, (Stamp, Option<Stamp>, std::sync::Arc<ListInfo>)>,
}

/// The apt archives cache.
pub struct AptSource {
    config: AptConfig,
    marks: OriginMarks,
    memo: Mutex<Memo>,
}

impl AptSource {
    pub fn new(config: AptConfig, marks: OriginMarks) -> AptSource {
        AptSource {
            config,
            marks,
            memo: Mutex::new(Memo::default()),
        }
    }

    fn file_name<'p>(&self, path: &'p Path) -> Option<&'p str> {
        if path.parent()? != self.config.archives {
            return None;
        }
        let name = path.file_name()?.to_str()?;
        (name.ends_with(".deb") && !name.starts_with('.')).then_some(name)
    }

    /// Verified signed text of an InRelease, cached per stamp.
    fn verified_release(&self, memo: &mut Memo, path: &Path) -> Option<String> {
        let st = stamp(path)?;
        if let Some((s, text)) = memo.releases.get(path) {
            if *s == st {
                return text.clone();
            }
        }
        let text = gpgv_verify(&self.config.gpgv, &self.config.keyrings, path);
        memo.releases.insert(path.to_path_buf(), (st, text.clone()));
        text
    }

    /// Every list in the lists dir, parsed (cached per file stamp).
    fn lists(&self) -> Vec<std::sync::Arc<ListInfo>> {
        let Ok(dir) = fs::read_dir(&self.config.lists) else {
            return Vec::new();
        };
        let mut memo = self.memo.lock().unwrap();
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((base, _ext)) = list_base(name) else {
                continue;
            };
            let path = entry.path();
            let Some(st) = stamp(&path) else { continue };
            let (origin, release_path) = match base.find("_dists_") {
                Some(i) => {
                    let after = &base[i + 7..];
                    let suite = after.split('_').next().unwrap_or("");
                    (
                        format!("apt:{}", &base[..i]),
                        Some(
                            self.config
                                .lists
                                .join(format!("{}_dists_{suite}_InRelease", &base[..i])),
                        ),
                    )
                }
                None => (format!("apt:{}", base.trim_end_matches("_Packages")), None),
            };
            let rel_stamp = release_path.as_deref().and_then(stamp);
            if let Some((s, rs, info)) = memo.lists.get(&path) {
                if *s == st && *rs == rel_stamp {
                    out.push(info.clone());
                    continue;
                }
            }
            let Ok(content) = read_list(&path) else {
                continue;
            };
            let mut info = ListInfo {
                origin,
                trusted: None,
                entries: HashMap::new(),
            };
            if let Some(rp) = &release_path {
                if let Some(text) = self.verified_release(&mut memo, rp) {
                    let release = parse_release(&text);
                    let digest: [u8; 32] = Sha256::digest(&content).into();
                    let prefix = base.split_once("_dists_").map(|(p, _)| p).unwrap_or("");
                    let suite = base
                        .split_once("_dists_")
                        .and_then(|(_, a)| a.split('_').next())
                        .unwrap_or("");
                    let proven = release.sha256.iter().any(|(h, size, file)| {
                        *h == digest
                            && *size == content.len() as u64
                            && format!("{prefix}_dists_{suite}_{}", file.replace('/', "_")) == base
                    });
                    if proven {
                        info.trusted = Some(format!(
                            "SHA256 in {} whose InRelease (Origin: {}, Label: {}, Suite: {}) is signed by a trusted archive key",
                            name, release.origin, release.label, release.suite
                        ));
                    }
                }
            }
            for s in parse_packages(&String::from_utf8_lossy(&content)) {
                info.entries
                    .insert((s.package, s.version, s.architecture), s.sha256);
            }
            let info = std::sync::Arc::new(info);
            memo.lists.insert(path, (st, rel_stamp, info.clone()));
            out.push(info);
        }
        out
    }

    fn is_marked(&self, list: &[String], origin: &str) -> bool {
        list.iter().any(|m| m == origin)
    }
}

impl CacheSource for AptSource {
    fn ecosystem(&self) -> &'static str {
        "apt"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.config.archives.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.file_name(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let file = self.file_name(path).ok_or(NotAnArtifact::NotCandidate)?;
        let (package, version, arch) =
            split_deb_file_name(file).ok_or_else(|| NotAnArtifact::BadName(file.to_owned()))?;
        let shown = || path.display().to_string();
        let meta = fs::symlink_metadata(path)
            .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
        if !meta.file_type().is_file() {
            return Err(NotAnArtifact::Confinement(shown()));
        }
        if meta.len() == 0 {
            return Err(NotAnArtifact::Empty);
        }
        let key = (package.clone(), version.clone(), arch.clone());
        let lists = self.lists();
        let matches: Vec<(&ListInfo, [u8; 32])> = lists
            .iter()
            .filter_map(|l| l.entries.get(&key).map(|h| (l.as_ref(), *h)))
            .collect();
        let shown_version = format!("{version} {arch}");
        if matches.is_empty() {
            return Ok(ArtifactIdentity {
                ecosystem: "apt",
                name: package,
                version: shown_version,
                origin: UNLISTED_ORIGIN.into(),
                checksum: None,
                provenance: Provenance::Unknown {
                    reason:
                        "no Packages list describes this .deb (a local build or a removed list)"
                            .into(),
                },
            });
        }
        let mut digest = matches[0].1;
        if matches.iter().any(|(_, h)| *h != digest) {
            // Lists disagree: hash the file to know which stanza describes these bytes.
            let mut f = fs::File::open(path)
                .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            digest = h.finalize().into();
        }
        let same: Vec<&ListInfo> = matches
            .iter()
            .filter(|(_, h)| *h == digest)
            .map(|(l, _)| *l)
            .collect();
        if same.is_empty() {
            return Err(NotAnArtifact::NoChecksum(format!(
                "{file}: its bytes match none of the SHA256 values its lists record"
            )));
        }
        let pick = same
            .iter()
            .find(|l| l.trusted.is_some() && !self.is_marked(&self.marks.private, &l.origin))
            .map(|l| {
                (
                    l.origin.clone(),
                    Provenance::Public {
                        evidence: l.trusted.clone().unwrap_or_default(),
                    },
                )
            })
            .or_else(|| {
                same.iter()
                    .find(|l| {
                        self.is_marked(&self.marks.public, &l.origin)
                            && !self.is_marked(&self.marks.private, &l.origin)
                    })
                    .map(|l| {
                        (
                            l.origin.clone(),
                            Provenance::Public {
                                evidence:
                                    "SHA256 in a Packages list of an origin the user marked public"
                                        .into(),
                            },
                        )
                    })
            })
            .unwrap_or_else(|| {
                let l = same[0];
                let reason = if self.is_marked(&self.marks.private, &l.origin) {
                    "marked private by the user"
                } else {
                    "list not proven by an InRelease signed with a trusted archive key"
                };
                (
                    l.origin.clone(),
                    Provenance::Private {
                        reason: reason.into(),
                    },
                )
            });
        Ok(ArtifactIdentity {
            ecosystem: "apt",
            name: package,
            version: shown_version,
            origin: pick.0,
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::Sha256,
                digest: digest.to_vec(),
            }),
            provenance: pick.1,
        })
    }
}

/// `(base name without compression extension, extension)` of a `…_Packages[.gz|.lz4]` list file.
fn list_base(name: &str) -> Option<(&str, &str)> {
    for ext in ["", ".gz", ".lz4"] {
        if let Some(base) = name.strip_suffix(ext) {
            if base.ends_with("_Packages") {
                return Some((base, ext));
            }
        }
    }
    None
}

/// Reads a list, decompressing `.gz` / `.lz4`.
fn read_list(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(file)
            .take(MAX_LIST_BYTES)
            .read_to_end(&mut out)?;
    } else if name.ends_with(".lz4") {
        lz4_flex::frame::FrameDecoder::new(file)
            .take(MAX_LIST_BYTES)
            .read_to_end(&mut out)?;
    } else {
        file.take(MAX_LIST_BYTES).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// `gpgv --keyring K… --output - <InRelease>`: the signed text when a trusted key made a good signature.
fn gpgv_verify(gpgv: &Path, keyrings: &[PathBuf], release: &Path) -> Option<String> {
    let keyrings: Vec<&PathBuf> = keyrings.iter().filter(|k| k.is_file()).collect();
    if keyrings.is_empty() {
        return None;
    }
    // A home dir that does not exist: gpgv then reads only the keyrings given (it does not create the dir).
    let home = release.with_file_name(".pkgseed-gpgv-no-home");
    let mut cmd = std::process::Command::new(gpgv);
    cmd.arg("--homedir").arg(&home).arg("--quiet");
    for k in keyrings {
        cmd.arg("--keyring").arg(k);
    }
    cmd.args(["--output", "-"]).arg(release);
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let out = cmd.output().ok()?;
    if !out.status.success() || out.stdout.is_empty() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

/// `<package>_<version>_<arch>.deb` with apt's %-escapes in the version decoded.
pub fn split_deb_file_name(file: &str) -> Option<(String, String, String)> {
    let stem = file.strip_suffix(".deb")?;
    let mut parts = stem.split('_');
    let (p, v, a) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || p.is_empty() || v.is_empty() || a.is_empty() {
        return None;
    }
    Some((p.to_owned(), percent_decode(v)?, a.to_owned()))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One binary package stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageStanza {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub sha256: [u8; 32],
}

/// The stanzas of a `Packages` list that carry Package, Version, Architecture and a valid SHA256.
pub fn parse_packages(text: &str) -> Vec<PackageStanza> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let (mut p, mut v, mut a, mut h) = (None, None, None, None);
        for line in para.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((k, val)) = line.split_once(':') else {
                continue;
            };
            let val = val.trim();
            match k {
                "Package" => p = Some(val),
                "Version" => v = Some(val),
                "Architecture" => a = Some(val),
                "SHA256" => {
                    h = hex::decode(val)
                        .ok()
                        .and_then(|d| <[u8; 32]>::try_from(d).ok())
                }
                _ => {}
            }
        }
        if let (Some(p), Some(v), Some(a), Some(h)) = (p, v, a, h) {
            out.push(PackageStanza {
                package: p.to_owned(),
                version: v.to_owned(),
                architecture: a.to_owned(),
                sha256: h,
            });
        }
    }
    out
}

/// The fields of a (verified) Release text pkgseed uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub origin: String,
    pub label: String,
    pub suite: String,
    /// (sha256, size, path relative to the dists/<suite>/ dir)
    pub sha256: Vec<([u8; 32], u64, String)>,
}

/// Parses a Release / signed InRelease text (the signed part only: callers pass gpgv's output).
pub fn parse_release(text: &str) -> ReleaseInfo {
    let mut info = ReleaseInfo::default();
    let mut in_sha256 = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if in_sha256 {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if let [h, size, file] = f.as_slice() {
                    let h = hex::decode(h)
                        .ok()
                        .and_then(|d| <[u8; 32]>::try_from(d).ok());
                    if let (Some(h), Ok(size)) = (h, size.parse::<u64>()) {
                        info.sha256.push((h, size, (*file).to_owned()));
                    }
                }
            }
            continue;
        }
        in_sha256 = false;
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "Origin" => info.origin = v.trim().to_owned(),
            "Label" => info.label = v.trim().to_owned(),
            "Suite" => info.suite = v.trim().to_owned(),
            "SHA256" => in_sha256 = true,
            _ => {}
        }
    }
    info
}

/// `Key "value";` lines of `apt-config dump` → map (later lines win).
pub fn parse_apt_config_dump(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(' ') else {
            continue;
        };
        let v = rest.trim().trim_end_matches(';').trim_matches('"');
        out.insert(k.to_owned(), v.to_owned());
    }
    out
}

/// Resolves apt's nested `Dir` keys: a relative value is relative to its parent key's dir.
fn resolve_dir(cfg: &HashMap<String, String>, key: &str) -> PathBuf {
    let v = cfg.get(key).map(String::as_str).unwrap_or("");
    if v.starts_with('/') {
        return PathBuf::from(v);
    }
    match key.rsplit_once("::") {
        Some((parent, _)) => resolve_dir(cfg, parent).join(v),
        None => PathBuf::from(if v.is_empty() { "/" } else { v }),
    }
}

/// The apt config from `apt-config dump` (with `env`'s `APT_CONFIG`), else the default paths when they exist.
pub fn apt_config(env: &SourceEnv) -> Option<AptConfig> {
    let mut cmd = std::process::Command::new("apt-config");
    cmd.arg("dump")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match env.var("APT_CONFIG") {
        Some(v) => cmd.env("APT_CONFIG", v),
        None => cmd.env_remove("APT_CONFIG"),
    };
    let dump = cmd
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_apt_config_dump(&String::from_utf8_lossy(&o.stdout)));
    let system_keyrings = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir("/usr/share/keyrings")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains("archive-keyring") && n.ends_with(".gpg"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let gpg_files = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "gpg"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let config = match dump {
        Some(cfg) => {
            let mut keyrings = system_keyrings();
            keyrings.push(resolve_dir(&cfg, "Dir::Etc::trusted"));
            keyrings.extend(gpg_files(&resolve_dir(&cfg, "Dir::Etc::trustedparts")));
            AptConfig {
                archives: resolve_dir(&cfg, "Dir::Cache::archives"),
                lists: resolve_dir(&cfg, "Dir::State::lists"),
                keyrings,
                gpgv: PathBuf::from("gpgv"),
            }
        }
        None => {
            let mut keyrings = system_keyrings();
            keyrings.push(PathBuf::from("/etc/apt/trusted.gpg"));
            keyrings.extend(gpg_files(Path::new("/etc/apt/trusted.gpg.d")));
            AptConfig {
                archives: PathBuf::from("/var/cache/apt/archives"),
                lists: PathBuf::from("/var/lib/apt/lists"),
                keyrings,
                gpgv: PathBuf::from("gpgv"),
            }
        }
    };
    // Strip a trailing slash so `parent() == archives` holds for the files in it.
    let config = AptConfig {
        archives: config.archives.components().collect(),
        lists: config.lists.components().collect(),
        ..config
    };
    config.archives.is_dir().then_some(config)
}

#[cfg(test)]
mod tests;
