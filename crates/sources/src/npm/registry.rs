//! What npm and yarn v1 share: tarball URLs (`<registry>/<name>/-/<name>-<version>.tgz`), SRI integrity strings,
//! `.npmrc` files, the default registry learned at run time from the installed clients, and the provenance
//! decision for a registry origin.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::{OriginMarks, Provenance, SourceEnv};

/// A registry tarball URL split into the registry's origin id and the package it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballUrl {
    /// `scheme://host[:port]/path-prefix/`: the registry base as found in the URL (no credentials, query or
    /// fragment; lowercase scheme and host; default port dropped; always ends with `/`).
    pub origin: String,
    /// `name` or `@scope/name`.
    pub name: String,
    pub version: String,
}

/// Splits `scheme://authority/rest` of an http(s) URL into (scheme, host[:port], path) with credentials, query and
/// fragment removed. `None` for any other scheme or an empty host.
fn split_http_url(url: &str) -> Option<(String, String, &str)> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.split(['#', '?']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // Credentials are never part of an origin id.
    let host = authority
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let host = match (scheme.as_str(), host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443")))
            if !h.ends_with(']') || h.starts_with('[') =>
        {
            h.to_owned()
        }
        _ => host,
    };
    if host.is_empty()
        || host.starts_with(':')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some((scheme, host, path))
}

/// The origin id of a registry base URL (`registry=` values, npm's default, user marks): same normal form as
/// [`TarballUrl::origin`]. `None` when it is not an http(s) URL.
pub fn normalize_registry(url: &str) -> Option<String> {
    let (scheme, host, path) = split_http_url(url)?;
    let path = path.trim_end_matches('/');
    Some(format!("{scheme}://{host}{path}/"))
}

/// The scope wildcard mark covering every scope of a registry, from the registry's URL or from one of its scope
/// origins (`<registry>@scope/`, as status lists them): `http://host/path/@corp/` gives `http://host/path/@*`.
/// `None` when it is not an http(s) URL.
pub fn scope_wildcard_for(registry_or_scope_origin: &str) -> Option<String> {
    let origin = normalize_registry(registry_or_scope_origin)?;
    let trimmed = origin.trim_end_matches('/');
    let registry = match trimmed.rsplit_once('/') {
        Some((registry, last)) if last.starts_with('@') && !registry.ends_with('/') => {
            format!("{registry}/")
        }
        _ => origin,
    };
    Some(format!("{registry}{SCOPE_WILDCARD}"))
}

/// Decodes `%2f`/`%2F` and `%40` (npm escapes a scoped name's slash in tarball URLs); any other `%` is refused.
fn decode_name_segment(seg: &str) -> Option<String> {
    let mut out = String::with_capacity(seg.len());
    let mut rest = seg;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        match code.to_ascii_lowercase().as_str() {
            "2f" => out.push('/'),
            "40" => out.push('@'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// An npm package name part (scope or name): non-empty, no path tricks, URL-safe characters only.
fn valid_name_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.len() <= 214
        && part.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'_' | b'~' | b'!' | b'(' | b')' | b'*' | b'\''
                )
        })
}

/// A semver-like version as it appears in a tarball file name.
fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 256
        && version.as_bytes()[0].is_ascii_digit()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
}

/// Parses a registry tarball URL: `<registry>/<name>/-/<name>-<version>.tgz` or
/// `<registry>/@scope/<name>/-/<name>-<version>.tgz` (also `@scope%2f<name>`). `None` for anything else
/// (packuments, git or file URLs, hostile strings).
pub fn parse_tarball_url(url: &str) -> Option<TarballUrl> {
    let (scheme, host, path) = split_http_url(url)?;
    let (before, file) = path.rsplit_once("/-/")?;
    if file.contains('/') {
        return None;
    }
    let stem = file.strip_suffix(".tgz")?;
    let (rest, last) = before.rsplit_once('/')?;
    let last = decode_name_segment(last)?;
    let (scope, name, prefix) = match last.split_once('/') {
        Some((scope, name)) => (Some(scope.to_owned()), name.to_owned(), rest),
        None => match rest.rsplit_once('/') {
            Some((prefix, scope)) if scope.starts_with('@') => {
                (Some(decode_name_segment(scope)?), last.clone(), prefix)
            }
            _ => (None, last.clone(), rest),
        },
    };
    if !valid_name_part(&name) || name.starts_with('@') {
        return None;
    }
    let full_name = match &scope {
        Some(scope) => {
            let bare = scope.strip_prefix('@')?;
            if !valid_name_part(bare) {
                return None;
            }
            format!("@{bare}/{name}")
        }
        None => name.clone(),
    };
    let version = stem.strip_prefix(name.as_str())?.strip_prefix('-')?;
    if !valid_version(version) {
        return None;
    }
    if prefix.split('/').any(|seg| seg == ".." || seg == ".") {
        return None;
    }
    Some(TarballUrl {
        origin: format!("{scheme}://{host}{prefix}/"),
        name: full_name,
        version: version.to_owned(),
    })
}

/// The sha512 digest (64 raw bytes) of an SRI integrity string (`sha512-<base64>`, possibly among other
/// space-separated hashes, possibly with `?options`). `None` when there is no well-formed sha512.
pub fn parse_sri_sha512(integrity: &str) -> Option<Vec<u8>> {
    integrity.split_whitespace().find_map(|item| {
        let b64 = item.strip_prefix("sha512-")?;
        let b64 = b64.split('?').next().unwrap_or("");
        let digest = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        (digest.len() == 64).then_some(digest)
    })
}

/// `key = value` pairs of an `.npmrc` (ini) text, in order: comments (`#`, `;`) and section headers skipped,
/// quotes around values removed, `${VAR}` expanded from `env`.
pub fn parse_npmrc(text: &str, env: &SourceEnv) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with(';')
                || line.starts_with('[')
            {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), expand_vars(value, env)))
        })
        .collect()
}

/// `${VAR}` expansion from `env`; an unset variable is left as written.
fn expand_vars(value: &str, env: &SourceEnv) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match env.var(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[start..start + 3 + len]),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    out
}

/// The `.npmrc` files npm reads for a user (user config, then the usual global ones), as (path, pairs).
pub(crate) fn read_npmrc_files(env: &SourceEnv) -> Vec<(PathBuf, Vec<(String, String)>)> {
    let mut paths: Vec<PathBuf> = Vec::new();
    match env
        .var("npm_config_userconfig")
        .or_else(|| env.var("NPM_CONFIG_USERCONFIG"))
    {
        Some(p) => paths.push(PathBuf::from(p)),
        None => paths.extend(env.home.as_ref().map(|h| h.join(".npmrc"))),
    }
    match env
        .var("npm_config_globalconfig")
        .or_else(|| env.var("NPM_CONFIG_GLOBALCONFIG"))
    {
        Some(p) => paths.push(PathBuf::from(p)),
        None if cfg!(unix) => paths
            .extend(["/usr/etc/npmrc", "/usr/local/etc/npmrc", "/etc/npmrc"].map(PathBuf::from)),
        None => paths.extend(
            env.var("APPDATA")
                .map(|a| Path::new(a).join("npm").join("etc").join("npmrc")),
        ),
    }
    paths
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            if !meta.is_file() || meta.len() > 1024 * 1024 {
                return None;
            }
            let text = std::fs::read_to_string(&path).ok()?;
            let pairs = parse_npmrc(&text, env);
            Some((path, pairs))
        })
        .collect()
}

/// `@scope:registry` settings from the user's npm config files and `npm_config_@scope:registry` variables:
/// (origin id, scope). Every one of them is a private registry.
pub(crate) fn scoped_registries(env: &SourceEnv) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut add = |key: &str, value: &str| {
        let key = key.trim();
        if let Some(scope) = key.strip_suffix(":registry").filter(|s| s.starts_with('@')) {
            if let Some(origin) = normalize_registry(value) {
                found.push((origin, scope.to_owned()));
            }
        }
    };
    for (_, pairs) in read_npmrc_files(env) {
        for (key, value) in &pairs {
            add(key, value);
        }
    }
    for (name, value) in &env.vars {
        let lower = name.to_ascii_lowercase();
        if let Some(key) = lower.strip_prefix("npm_config_") {
            add(key, value);
        }
    }
    found
}

/// The hosts (`host[:port]`) the user's npm config holds credentials for: `//host/path/:_authToken`, `:_auth`,
/// `:_password`, `:username`, `:certfile`, `:keyfile` keys in the user and global `.npmrc` files and
/// `npm_config_//…` variables. A top-level `_authToken`/`_auth` (credentials for the configured default registry)
/// is returned as `*`.
pub(crate) fn credentialed_hosts(env: &SourceEnv) -> Vec<String> {
    const CREDENTIAL_KEYS: [&str; 6] = [
        "_authtoken",
        "_auth",
        "_password",
        "username",
        "certfile",
        "keyfile",
    ];
    let mut found: Vec<String> = Vec::new();
    let mut add = |key: &str, value: &str| {
        let key = key.trim().to_ascii_lowercase();
        if value.trim().is_empty() {
            return;
        }
        let host = match key.rsplit_once(':') {
            Some((nerf, setting)) if CREDENTIAL_KEYS.contains(&setting) => {
                let Some(rest) = nerf.strip_prefix("//") else {
                    return;
                };
                split_http_url(&format!("http://{rest}")).map(|(_, host, _)| host)
            }
            None if key == "_authtoken" || key == "_auth" => Some("*".to_owned()),
            _ => None,
        };
        if let Some(host) = host.filter(|h| !found.contains(h)) {
            found.push(host);
        }
    };
    for (_, pairs) in read_npmrc_files(env) {
        for (key, value) in &pairs {
            add(key, value);
        }
    }
    for (name, value) in &env.vars {
        if let Some(key) = name.to_ascii_lowercase().strip_prefix("npm_config_") {
            add(key, value);
        }
    }
    found
}

/// The registries the installed clients use when no user or project config says otherwise, learned at run time:
/// (origin id, evidence). Asks `npm config get registry` with user and global config pointed at files that do not
/// exist, from an empty working dir, with every `npm_config_*` variable removed; then yarn v1 the same way
/// (`--no-default-rc`, an empty HOME). A client that is missing or fails contributes nothing.
pub fn detect_default_registries(env: &SourceEnv) -> Vec<(String, String)> {
    let Ok(dir) = tempfile::tempdir() else {
        return Vec::new();
    };
    let d = dir.path();
    let mut found: Vec<(String, String)> = Vec::new();
    let user = d.join("no-user-npmrc");
    let global = d.join("no-global-npmrc");
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let npm_args = [
        "config".as_ref(),
        "get".as_ref(),
        "registry".as_ref(),
        "--userconfig".as_ref(),
        user.as_os_str(),
        "--globalconfig".as_ref(),
        global.as_os_str(),
    ];
    if let Some(url) = run_client(env, d, npm, &npm_args).and_then(|out| normalize_registry(&out)) {
        found.push((
            url,
            "npm's built-in default registry (learned from npm with user config ignored)".into(),
        ));
    }
    let yarn_args = [
        "--no-default-rc".as_ref(),
        "config".as_ref(),
        "get".as_ref(),
        "registry".as_ref(),
    ];
    for yarn in ["yarn", "yarnpkg"] {
        let yarn = if cfg!(windows) {
            format!("{yarn}.cmd")
        } else {
            yarn.to_owned()
        };
        if let Some(url) =
            run_client(env, d, &yarn, &yarn_args).and_then(|out| normalize_registry(&out))
        {
            if !found.iter().any(|(o, _)| *o == url) {
                found.push((
                    url,
                    "yarn's built-in default registry (learned from yarn with user config ignored)"
                        .into(),
                ));
            }
            break;
        }
    }
    found
}

/// Runs a client with a clean config environment and returns its trimmed stdout on success (15 s bound).
fn run_client(
    env: &SourceEnv,
    dir: &Path,
    program: &str,
    args: &[&std::ffi::OsStr],
) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).env_clear();
    for (name, value) in &env.vars {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("npm_config_")
            || lower.starts_with("yarn_")
            || lower == "home"
            || lower == "userprofile"
        {
            continue;
        }
        cmd.env(name, value);
    }
    cmd.env("HOME", dir)
        .env("USERPROFILE", dir)
        .env("YARN_IGNORE_PATH", "1");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let out = out.trim().lines().last()?.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// The provenance decision for npm-style registry origins.
#[derive(Debug, Clone, Default)]
pub struct RegistryPolicy {
    /// Default public registries (origin id, evidence).
    pub defaults: Vec<(String, String)>,
    /// Scoped registries from the user's config (origin id, scope).
    pub scoped: Vec<(String, String)>,
    /// Hosts (`host[:port]`) the user's npm config holds credentials for; `*` for top-level credentials, which
    /// apply to the default registry (see [`credentialed_hosts`]).
    pub credentialed: Vec<String>,
    pub marks: OriginMarks,
}

fn mark_matches(mark: &str, origin: &str) -> bool {
    mark == origin || normalize_registry(mark).is_some_and(|m| m == origin)
}

/// What ends a scope wildcard mark: `<registry>@*` in `origins.public` marks every scope origin `<registry>@scope/`
/// of that registry public at once (see [`RegistryPolicy::tarball_provenance`] for what it never overrides).
pub const SCOPE_WILDCARD: &str = "@*";

/// The registry origin id a scope wildcard mark covers (`http://host/path@*` and `http://host/path/@*` both give
/// `http://host/path/`). `None` when `mark` is not a wildcard (no `*` in it); an error when it holds a `*` but is
/// not `<http(s) registry URL>@*`.
pub fn scope_wildcard_registry(mark: &str) -> Option<Result<String, String>> {
    if !mark.contains('*') {
        return None;
    }
    let registry = mark
        .strip_suffix(SCOPE_WILDCARD)
        .filter(|r| !r.contains('*') && !r.contains('@'))
        .and_then(normalize_registry);
    Some(registry.ok_or_else(|| {
        format!(
            "{mark:?} is not a scope wildcard: write the registry's http(s) URL followed by {SCOPE_WILDCARD}, \
             e.g. \"http://127.0.0.1:4873/{SCOPE_WILDCARD}\" (a `*` anywhere else is not understood)"
        )
    }))
}

impl RegistryPolicy {
    /// A private mark wins; then a public mark; then the default registry; then a scoped registry (private);
    /// anything else is unknown.
    pub fn provenance(&self, origin: &str) -> Provenance {
        if self.marks.private.iter().any(|m| mark_matches(m, origin)) {
            return Provenance::Private {
                reason: "marked private by the user".into(),
            };
        }
        if self.marks.public.iter().any(|m| mark_matches(m, origin)) {
            return Provenance::Public {
                evidence: "marked public by the user".into(),
            };
        }
        if let Some((_, evidence)) = self.defaults.iter().find(|(o, _)| o == origin) {
            return Provenance::Public {
                evidence: evidence.clone(),
            };
        }
        if let Some((_, scope)) = self.scoped.iter().find(|(o, _)| o == origin) {
            return Provenance::Private {
                reason: format!("registry of scope {scope} in the user's npm config"),
            };
        }
        Provenance::Unknown {
            reason: if self.defaults.is_empty() {
                "the default registry could not be learned (npm not installed?) and the origin is not marked".into()
            } else {
                "not the clients' default registry and not marked public".into()
            },
        }
    }

    /// The origin id and provenance of a registry tarball. Unscoped names, and any name on a registry that is not
    /// public, get [`RegistryPolicy::provenance`] of the registry. A scoped name on a public registry (the default
    /// one or one marked public) may be a private package: the public registry hosts private packages only under
    /// scopes and serves them only to requests with credentials, and npm keeps no trace of those credentials in
    /// its cache. Such a tarball gets its own origin id, `<registry>@scope/`, decided in this order:
    /// 1. a mark on the scope origin itself (private, then public);
    /// 2. private when the user's npm config holds credentials for the registry's host or maps the scope to it;
    /// 3. public when the user marked every scope of the registry public (`<registry>@*`, [`SCOPE_WILDCARD`]);
    /// 4. unknown otherwise.
    ///
    /// So the wildcard never covers a scope the user marked private, nor any scope of a registry the user holds
    /// credentials for (those may be the user's private packages; each has to be marked on its own). Entries whose
    /// stored headers say the response was for one user are private before this is asked (see
    /// [`crate::npm::identity_from_entries`]). (A scope's own registry from the user's config that the user marked
    /// public keeps the registry's origin and mark.)
    pub fn tarball_provenance(&self, url: &TarballUrl) -> (String, Provenance) {
        let registry = self.provenance(&url.origin);
        let scope = url
            .name
            .split_once('/')
            .map(|(scope, _)| scope)
            .filter(|s| s.starts_with('@'));
        let (Provenance::Public { .. }, Some(scope)) = (&registry, scope) else {
            return (url.origin.clone(), registry);
        };
        // A scope registry of the user's config that the user marked public: the mark speaks for its scopes.
        let mapped = self
            .scoped
            .iter()
            .any(|(o, s)| *o == url.origin && s == scope);
        if mapped
            && self
                .marks
                .public
                .iter()
                .any(|m| mark_matches(m, &url.origin))
        {
            return (url.origin.clone(), registry);
        }
        let scope_origin = format!("{}{scope}/", url.origin);
        let wildcard =
            self.marks.public.iter().any(|m| {
                scope_wildcard_registry(m).is_some_and(|r| r.is_ok_and(|r| r == url.origin))
            });
        let provenance = if self
            .marks
            .private
            .iter()
            .any(|m| mark_matches(m, &scope_origin))
        {
            Provenance::Private {
                reason: "marked private by the user".into(),
            }
        } else if self
            .marks
            .public
            .iter()
            .any(|m| mark_matches(m, &scope_origin))
        {
            Provenance::Public {
                evidence: "scope on a public registry, marked public by the user".into(),
            }
        } else if let Some(reason) = self.scope_credentials(&url.origin, scope) {
            let reason = if wildcard {
                format!(
                    "{reason} (the mark {}{SCOPE_WILDCARD} does not cover a scope that may be private)",
                    url.origin
                )
            } else {
                reason
            };
            Provenance::Private { reason }
        } else if wildcard {
            Provenance::Public {
                evidence: format!(
                    "scope on a public registry, covered by the user's mark {}{SCOPE_WILDCARD} (every scope of \
                     this registry)",
                    url.origin
                ),
            }
        } else {
            Provenance::Unknown {
                reason: format!(
                    "scope {scope} on a public registry: private packages are scoped and fetched with credentials \
                     npm does not record in its cache; mark {scope_origin} public to seed it, or {}{SCOPE_WILDCARD} \
                     for every scope of this registry",
                    url.origin
                ),
            }
        };
        (scope_origin, provenance)
    }

    /// Why the user's npm config suggests private packages of `scope` on the public registry `origin`.
    fn scope_credentials(&self, origin: &str, scope: &str) -> Option<String> {
        if self.scoped.iter().any(|(o, s)| o == origin && s == scope) {
            return Some(format!(
                "the user's npm config maps scope {scope} to this registry explicitly (a sign of private packages)"
            ));
        }
        let host = split_http_url(origin).map(|(_, host, _)| host)?;
        let is_default = self.defaults.iter().any(|(o, _)| o == origin);
        self.credentialed
            .iter()
            .any(|h| *h == host || (h == "*" && is_default))
            .then(|| {
                format!(
                    "scope {scope} on a registry the user's npm config holds credentials for: it may be private; \
                     mark {origin}{scope}/ public to seed it"
                )
            })
    }
}
