//! The Go module cache source: `<GOMODCACHE>/cache/download/<escaped module>/@v/<escaped version>.zip`.
//!
//! * Roots: `GOMODCACHE`, else the first `GOPATH` entry + `/pkg/mod`, else `~/go/pkg/mod`; each variable is read
//!   from the environment first, then from Go's env file (`GOENV`, else `<user config dir>/go/env`: Linux
//!   `$XDG_CONFIG_HOME` or `~/.config`, macOS `~/Library/Application Support`, Windows `%AppData%`).
//! * Candidates: only final `.zip` names. Go downloads into `<v>.zip<random>.tmp` and renames after checking the
//!   hash; `.partial`, `.lock`, `.ziphash`, `.mod`, `.info` and the extracted `<module>@<version>/` trees are not
//!   artifacts.
//! * Checksum: `<v>.ziphash` (`h1:<base64>`, [`ChecksumAlgo::GoH1`]). h1 hashes the zip's CONTENTS, not its bytes,
//!   so `describe` reads the zip and recomputes the dirhash (a documented exception to the engine's one read; the
//!   engine keys the checksum CID by the sha256 of the bytes it reads).
//! * Provenance: PUBLIC only when Go's default checksum database (its name learned at run time from the Go
//!   installation: `$GOROOT/go.env`, else `go env GOSUMDB` with user settings cleared) has a cached lookup record
//!   `cache/download/sumdb/<name>/lookup/<module>@<version>` whose `h1:` equals `.ziphash`, and neither
//!   `GOPRIVATE` nor `GONOSUMDB` matches the module (Go's path-prefix glob rules). A GOPRIVATE/GONOSUMDB match is
//!   the user's explicit per-module private declaration and wins even over an origin marked public. No lookup
//!   record → Unknown (e.g. `GOSUMDB=off`), unless the origin is marked public.
//! * Origin id: `go:direct` when `GONOPROXY` (default `GOPRIVATE`) matches, else `go:<first GOPROXY entry>`.
//! * Eviction: `go clean -modcache` only; the watcher sees the deletes under the root.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::zipread::read_zip_entries;
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

/// Go refuses module zips above 500 MiB (compressed or not).
const MAX_MODULE_ZIP_BYTES: u64 = 500 * 1024 * 1024;

/// The Go settings that matter here, resolved from the environment and Go's env file.
#[derive(Debug, Clone, Default)]
pub struct GoSettings {
    pub goproxy: String,
    pub goprivate: String,
    pub gonosumdb: String,
    pub gonoproxy: String,
    /// The name of Go's DEFAULT checksum database (not a user override), when known.
    pub default_sumdb: Option<String>,
}

pub struct GoSource {
    modcache: PathBuf,
    download_root: PathBuf,
    settings: GoSettings,
    marks: OriginMarks,
}

/// Parses Go's env file (`KEY=value` lines; `#` comments).
pub fn parse_go_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn user_config_dir(env: &SourceEnv) -> Option<PathBuf> {
    if cfg!(windows) {
        env.var("AppData").or(env.var("APPDATA")).map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        env.home
            .as_ref()
            .map(|h| h.join("Library/Application Support"))
    } else {
        env.var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env.home.as_ref().map(|h| h.join(".config")))
    }
}

/// The go env file's values (empty when `GOENV=off` or missing).
fn go_env_file(env: &SourceEnv) -> Vec<(String, String)> {
    let path = match env.var("GOENV") {
        Some("off") => return Vec::new(),
        Some(p) => PathBuf::from(p),
        None => match user_config_dir(env) {
            Some(dir) => dir.join("go").join("env"),
            None => return Vec::new(),
        },
    };
    match fs::read(&path) {
        Ok(bytes) if bytes.len() < 1 << 20 => parse_go_env_file(&String::from_utf8_lossy(&bytes)),
        _ => Vec::new(),
    }
}

/// A Go setting: the environment wins over the env file (as in `go env`).
fn go_var(env: &SourceEnv, file: &[(String, String)], name: &str) -> Option<String> {
    env.var(name).map(str::to_owned).or_else(|| {
        file.iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    })
}

/// The module cache dir.
pub fn go_modcache(env: &SourceEnv) -> Option<PathBuf> {
    let file = go_env_file(env);
    if let Some(dir) = go_var(env, &file, "GOMODCACHE") {
        return Some(PathBuf::from(dir));
    }
    let sep = if cfg!(windows) { ';' } else { ':' };
    if let Some(gopath) = go_var(env, &file, "GOPATH") {
        let first = gopath.split(sep).find(|p| !p.is_empty())?;
        return Some(Path::new(first).join("pkg").join("mod"));
    }
    env.home
        .as_ref()
        .map(|h| h.join("go").join("pkg").join("mod"))
}

/// The checksum database name out of a GOSUMDB value (`name[+key] [url]`).
pub fn sumdb_name(value: &str) -> Option<String> {
    let first = value.split_whitespace().next()?;
    let name = first.split('+').next()?;
    (!name.is_empty() && name != "off").then(|| name.to_owned())
}

/// Go's built-in defaults (GOPROXY, GOSUMDB), learned from the installation: `$GOROOT/go.env` (Go ≥ 1.21), else
/// running `go env` with every user setting cleared.
fn go_defaults(env: &SourceEnv) -> (Option<String>, Option<String>) {
    let go = env
        .var("PATH")
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(if cfg!(windows) { "go.exe" } else { "go" }))
        .find(|p| p.is_file());
    let Some(go) = go else {
        return (None, None);
    };
    let goroot = env.var("GOROOT").map(PathBuf::from).or_else(|| {
        let real = fs::canonicalize(&go).ok()?;
        Some(real.parent()?.parent()?.to_path_buf())
    });
    if let Some(text) = goroot.and_then(|r| fs::read_to_string(r.join("go.env")).ok()) {
        let vars = parse_go_env_file(&text);
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if get("GOSUMDB").is_some() {
            return (get("GOPROXY"), get("GOSUMDB"));
        }
    }
    let mut cmd = std::process::Command::new(&go);
    cmd.args(["env", "GOPROXY", "GOSUMDB"])
        .env_clear()
        .env("GOENV", "off");
    if let Some(home) = &env.home {
        cmd.env("HOME", home);
    }
    let Ok(out) = cmd.output() else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(|l| l.trim().to_owned());
    let proxy = lines.next().filter(|l| !l.is_empty());
    let sumdb = lines.next().filter(|l| !l.is_empty());
    (proxy, sumdb)
}

impl GoSettings {
    pub fn detect(env: &SourceEnv) -> GoSettings {
        let file = go_env_file(env);
        let (default_proxy, default_sumdb) = go_defaults(env);
        let goprivate = go_var(env, &file, "GOPRIVATE").unwrap_or_default();
        GoSettings {
            goproxy: go_var(env, &file, "GOPROXY")
                .or(default_proxy)
                .unwrap_or_default(),
            gonosumdb: go_var(env, &file, "GONOSUMDB").unwrap_or_else(|| goprivate.clone()),
            gonoproxy: go_var(env, &file, "GONOPROXY").unwrap_or_else(|| goprivate.clone()),
            goprivate,
            default_sumdb: default_sumdb.as_deref().and_then(sumdb_name),
        }
    }
}

/// Go's `path.Match`: `*` any run of non-`/`, `?` one non-`/`, `[...]` classes (`^` negates, ranges, `\` escapes).
/// A malformed pattern never matches.
pub fn go_path_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let negated = p.first() == Some(&'^');
        if negated {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let ch = *p.get(i)?;
            if ch == ']' && !first {
                return Some((matched != negated, i + 1));
            }
            first = false;
            let lo = if ch == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                ch
            };
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&n| n != ']') {
                i += 1;
                hi = if p[i] == '\\' {
                    i += 1;
                    *p.get(i)?
                } else {
                    p[i]
                };
                i += 1;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    fn rec(p: &[char], n: &[char], budget: &mut u32) -> bool {
        *budget = budget.saturating_sub(1);
        if *budget == 0 {
            return false;
        }
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&k| k == 0 || n[k - 1] != '/')
                .any(|k| rec(&p[1..], &n[k..], budget)),
            Some('?') => n.first().is_some_and(|&c| c != '/') && rec(&p[1..], &n[1..], budget),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class(&p[1..], c) {
                    Some((true, used)) => rec(&p[1 + used..], &n[1..], budget),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') => {
                p.get(1).is_some_and(|&e| n.first() == Some(&e)) && rec(&p[2..], &n[1..], budget)
            }
            Some(&c) => n.first() == Some(&c) && rec(&p[1..], &n[1..], budget),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    rec(&p, &n, &mut 100_000)
}

/// Go's `module.MatchPrefixPatterns`: comma-separated globs, each matched against the leading path elements of
/// `target` (as many elements as the glob has).
pub fn match_prefix_patterns(globs: &str, target: &str) -> bool {
    globs.split(',').any(|glob| {
        let glob = glob.trim().trim_end_matches('/');
        if glob.is_empty() {
            return false;
        }
        let mut n = glob.matches('/').count();
        let mut prefix = target;
        for (i, b) in target.bytes().enumerate() {
            if b == b'/' {
                if n == 0 {
                    prefix = &target[..i];
                    break;
                }
                n -= 1;
            }
        }
        n == 0 && go_path_match(glob, prefix)
    })
}

/// Go's module path / version unescaping (`!x` → `X`); `None` for an invalid escape or an uppercase letter.
pub fn unescape_module(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang && !out.is_empty()).then_some(out)
}

/// Parses `h1:<base64 of 32 bytes>`.
pub fn parse_h1(text: &str) -> Option<[u8; 32]> {
    let b64 = text.trim().strip_prefix("h1:")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    bytes.try_into().ok()
}

/// Go's dirhash `Hash1` over `(name, contents)` pairs: sha256 of the sorted lines `hex(sha256(file))  name\n`.
pub fn dirhash_h1(files: &mut [(String, Vec<u8>)]) -> Option<[u8; 32]> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, bytes) in files.iter() {
        if name.contains('\n') {
            return None;
        }
        summary.update(format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
    }
    Some(summary.finalize().into())
}

/// The h1 of a module zip's contents.
pub fn zip_h1(zip: &[u8]) -> Result<[u8; 32], String> {
    let entries =
        read_zip_entries(zip, &|_| true, MAX_MODULE_ZIP_BYTES).map_err(|e| e.to_string())?;
    let mut files: Vec<(String, Vec<u8>)> =
        entries.into_iter().map(|e| (e.name, e.bytes)).collect();
    dirhash_h1(&mut files).ok_or_else(|| "a file name contains a newline".into())
}

/// The `h1:` of `<module> <version>` in a sumdb lookup record (the zip line, not `/go.mod`).
pub fn parse_sumdb_lookup(record: &str, module: &str, version: &str) -> Option<[u8; 32]> {
    record.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(m), Some(v), Some(h), None) if m == module && v == version => parse_h1(h),
            _ => None,
        }
    })
}

impl GoSource {
    pub fn new(modcache: PathBuf, settings: GoSettings, marks: OriginMarks) -> GoSource {
        let download_root = modcache.join("cache").join("download");
        GoSource {
            modcache,
            download_root,
            settings,
            marks,
        }
    }

    /// `(escaped module path, escaped version)` of a candidate.
    fn split_candidate<'p>(&self, path: &'p Path) -> Option<(String, &'p str)> {
        let rel = path.strip_prefix(&self.download_root).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        let [module @ .., at_v, file] = parts.as_slice() else {
            return None;
        };
        if *at_v != "@v" || module.is_empty() || module[0] == "sumdb" {
            return None;
        }
        if module
            .iter()
            .any(|p| p.is_empty() || p.starts_with('.') || p.contains('@'))
        {
            return None;
        }
        let version = file.strip_suffix(".zip")?;
        (!version.is_empty() && !version.starts_with('.')).then(|| (module.join("/"), version))
    }

    fn origin(&self, module: &str) -> String {
        if match_prefix_patterns(&self.settings.gonoproxy, module) {
            return "go:direct".into();
        }
        let first = self
            .settings
            .goproxy
            .split([',', '|'])
            .next()
            .unwrap_or("")
            .trim();
        format!("go:{}", if first.is_empty() { "unknown" } else { first })
    }

    fn provenance(
        &self,
        module: &str,
        esc_module: &str,
        esc_version: &str,
        version: &str,
        h1: &[u8; 32],
        origin: &str,
    ) -> Provenance {
        if self.marks.private.iter().any(|m| m == origin) {
            return Provenance::Private {
                reason: "marked private by the user".into(),
            };
        }
        for (var, globs) in [
            ("GOPRIVATE", &self.settings.goprivate),
            ("GONOSUMDB", &self.settings.gonosumdb),
        ] {
            if match_prefix_patterns(globs, module) {
                return Provenance::Private {
                    reason: format!("module matches {var}"),
                };
            }
        }
        let marked_public = self.marks.public.iter().any(|m| m == origin);
        let Some(sumdb) = &self.settings.default_sumdb else {
            return if marked_public {
                Provenance::Public {
                    evidence: "marked public by the user".into(),
                }
            } else {
                Provenance::Unknown {
                    reason: "Go's default checksum database is unknown (Go not installed?)".into(),
                }
            };
        };
        let lookup = self
            .download_root
            .join("sumdb")
            .join(sumdb)
            .join("lookup")
            .join(format!("{esc_module}@{esc_version}"));
        match crate::sidefile::read_regular_file(&lookup, 1 << 20).ok().map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Some(record) => match parse_sumdb_lookup(&record, module, version) {
                Some(sum) if &sum == h1 => Provenance::Public {
                    evidence: format!("h1 equals the cached lookup record of Go's default checksum database {sumdb}"),
                },
                Some(_) => Provenance::Private { reason: "h1 differs from the public checksum database".into() },
                None if marked_public => Provenance::Public { evidence: "marked public by the user".into() },
                None => Provenance::Unknown { reason: "checksum database lookup record has no h1 for this version".into() },
            },
            None if marked_public => Provenance::Public { evidence: "marked public by the user".into() },
            None => Provenance::Unknown { reason: "no cached checksum database lookup for this module version".into() },
        }
    }
}

impl CacheSource for GoSource {
    fn ecosystem(&self) -> &'static str {
        "go"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.download_root.clone()]
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split_candidate(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (esc_module, esc_version) = self
            .split_candidate(path)
            .ok_or(NotAnArtifact::NotCandidate)?;
        let shown = || path.display().to_string();
        let module = unescape_module(&esc_module)
            .ok_or_else(|| NotAnArtifact::BadName(esc_module.clone()))?;
        let version = unescape_module(esc_version)
            .ok_or_else(|| NotAnArtifact::BadName(esc_version.to_owned()))?;
        crate::sidefile::check_artifact_file(&self.download_root, path)?;
        let ziphash_path = path.with_file_name(format!("{esc_version}.ziphash"));
        let h1 = crate::sidefile::read_regular_file(&ziphash_path, 4096)
            .ok()
            .and_then(|b| parse_h1(&String::from_utf8_lossy(&b)))
            .ok_or_else(|| {
                NotAnArtifact::NoChecksum(format!("{module}@{version} (no valid .ziphash)"))
            })?;
        let zip = crate::sidefile::read_regular_file(path, MAX_MODULE_ZIP_BYTES)
            .ok()
            .ok_or_else(|| NotAnArtifact::Unreadable(shown()))?;
        let contents_h1 =
            zip_h1(&zip).map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", shown())))?;
        if contents_h1 != h1 {
            return Err(NotAnArtifact::Unreadable(format!(
                "{}: contents do not match .ziphash",
                shown()
            )));
        }
        let origin = self.origin(&module);
        let provenance = self.provenance(&module, &esc_module, esc_version, &version, &h1, &origin);
        let _ = &self.modcache;
        Ok(ArtifactIdentity {
            ecosystem: "go",
            name: module,
            version,
            origin,
            checksum: Some(RegistryChecksum {
                algo: ChecksumAlgo::GoH1,
                digest: h1.to_vec(),
            }),
            provenance,
        })
    }
}

#[cfg(test)]
mod tests;
