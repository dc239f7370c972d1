//! RubyGems / Bundler: `.gem` files in the `cache/` dir of every gem dir (`GEM_HOME`, `GEM_PATH`, the dirs the
//! installed RubyGems reports in `Gem.path`, and the usual places: `~/.local/share/gem/ruby/<abi>`,
//! `~/.gem/ruby/<abi>`, `/var/lib/gems/<abi>`, rbenv `~/.rbenv/versions/*/lib/ruby/gems/<abi>`, rvm
//! `~/.rvm/gems/*`). Per-project Bundler dirs (`vendor/bundle`) are not watched. Gem dirs are found when the
//! source is built (a dir created later is picked up at the next daemon start).
//!
//! File name: `<name>-<version>[-<platform>].gem`. The `version` field of the identity is `<version>[-<platform>]`
//! exactly as Bundler's compact index writes it (e.g. `1.15.4-x86_64-linux`).
//!
//! RubyGems records neither the source nor a checksum of a cached gem. Provenance is by checksum: Bundler's
//! compact-index cache `<bundle user cache>/compact_index/<slug>/info/<name>` (`BUNDLE_USER_CACHE`, else
//! `$BUNDLE_USER_HOME/cache`, else `~/.bundle/cache`) has lines `<version>[-<platform>] <deps>|checksum:<sha256>,…`
//! — the registry's sha256 of the `.gem`. The `<slug>` (Bundler's `Remote#cache_slug`: host, port and an md5 of
//! the source URI) is the origin id. The slug of RubyGems' built-in default source is learned once, when the source
//! is built, by asking the installed `ruby` (`Gem.default_sources`, slugged by the installed Bundler); an artifact is
//! public when the default source's compact index has its (name, version) and the engine then finds the file's
//! sha256 equal to that checksum. Another slug is public only when the user marks it. A gem no compact index knows
//! has origin `rubygems:unrecorded` and is Unknown (never seeded). Names outside `[a-z0-9_-]` (Bundler stores
//! them under `info-special-characters/<name>-<md5>`) are not looked up and stay Unknown.
//!
//! Complete vs partial: RubyGems writes the downloaded gem to the cache path (newer versions via a temp name);
//! an empty file is refused and the engine's sha256 comparison with the registry checksum refuses a partial one.

use std::path::{Component, Path, PathBuf};

use crate::sidefile::{
    check_artifact_file, decide, read_regular_file, run_tool, split_path_list, subdirs,
};
use crate::{
    ArtifactIdentity, CacheSource, ChecksumAlgo, NotAnArtifact, OriginMarks, Provenance,
    RegistryChecksum, SourceEnv,
};

const MAX_INFO_BYTES: u64 = 32 * 1024 * 1024;
/// Origin id of a gem no compact index knows.
pub const GEM_UNRECORDED_ORIGIN: &str = "rubygems:unrecorded";

/// One line of a compact-index `info/<name>` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactInfoLine {
    /// `<version>[-<platform>]`
    pub version: String,
    pub sha256: Option<Vec<u8>>,
}

/// Parses a compact-index `info/<name>` file (`---` header, then `<version> <deps>|<requirements>` lines).
/// Never panics; lines that do not parse are skipped, a non-UTF-8 file is an error.
pub fn parse_compact_index_info(bytes: &[u8]) -> Result<Vec<CompactInfoLine>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "---" {
            continue;
        }
        let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
        if version.is_empty() {
            continue;
        }
        let requirements = rest.split_once('|').map(|(_, r)| r).unwrap_or("");
        let sha256 = requirements
            .split(',')
            .filter_map(|item| item.trim().strip_prefix("checksum:"))
            .find_map(|h| hex::decode(h.trim()).ok().filter(|d| d.len() == 32));
        out.push(CompactInfoLine {
            version: version.to_owned(),
            sha256,
        });
    }
    Ok(out)
}

/// The gem caches and Bundler's compact-index cache.
pub struct RubyGemsSource {
    caches: Vec<PathBuf>,
    compact_index: PathBuf,
    default_slug: Option<String>,
    marks: OriginMarks,
}

impl RubyGemsSource {
    /// `caches`: the `<gem dir>/cache` dirs; `compact_index`: `<bundle user cache>/compact_index`;
    /// `default_slug`: the compact-index slug of RubyGems' default source, learned from the installed ruby.
    pub fn new(
        caches: Vec<PathBuf>,
        compact_index: PathBuf,
        default_slug: Option<String>,
        marks: OriginMarks,
    ) -> RubyGemsSource {
        RubyGemsSource {
            caches,
            compact_index,
            default_slug,
            marks,
        }
    }

    fn split<'p>(&'p self, path: &'p Path) -> Option<(&'p Path, &'p str)> {
        self.caches.iter().find_map(|root| {
            let rel = path.strip_prefix(root).ok()?;
            let mut parts = rel.components();
            let (Some(Component::Normal(file)), None) = (parts.next(), parts.next()) else {
                return None;
            };
            let stem = file.to_str()?.strip_suffix(".gem")?;
            (!stem.starts_with('.') && split_points(stem).next().is_some())
                .then_some((root.as_path(), stem))
        })
    }

    /// Every `(slug, name, version, sha256)` the compact-index cache knows for this file stem.
    fn lookups(&self, stem: &str) -> Result<Vec<Lookup>, NotAnArtifact> {
        let mut found = Vec::new();
        for slug_dir in subdirs(&self.compact_index) {
            let Some(slug) = slug_dir.file_name().and_then(|s| s.to_str()) else {
                continue;
            };
            for (name, version) in split_points(stem) {
                if !name
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
                {
                    continue;
                }
                let info = slug_dir.join("info").join(name);
                let bytes = match read_regular_file(&info, MAX_INFO_BYTES) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(NotAnArtifact::Unreadable(format!(
                            "{}: {e}",
                            info.display()
                        )))
                    }
                };
                let lines = parse_compact_index_info(&bytes)
                    .map_err(|e| NotAnArtifact::Unreadable(format!("{}: {e}", info.display())))?;
                if let Some(line) = lines.into_iter().find(|l| l.version == version) {
                    found.push((
                        slug.to_owned(),
                        name.to_owned(),
                        version.to_owned(),
                        line.sha256,
                    ));
                }
            }
        }
        Ok(found)
    }
}

/// `(slug, name, version, sha256)` of one compact-index hit.
type Lookup = (String, String, String, Option<Vec<u8>>);

/// The `(name, version[-platform])` splits of a gem file stem: at every `-` followed by a digit.
fn split_points(stem: &str) -> impl Iterator<Item = (&str, &str)> {
    stem.char_indices().filter_map(move |(i, c)| {
        let rest = stem.get(i + 1..)?;
        (c == '-' && i > 0 && rest.starts_with(|d: char| d.is_ascii_digit()))
            .then(|| (&stem[..i], rest))
    })
}

impl CacheSource for RubyGemsSource {
    fn ecosystem(&self) -> &'static str {
        "rubygems"
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.caches.clone()
    }

    fn is_candidate(&self, path: &Path) -> bool {
        self.split(path).is_some()
    }

    fn describe(&self, path: &Path) -> Result<ArtifactIdentity, NotAnArtifact> {
        let (root, stem) = self.split(path).ok_or(NotAnArtifact::NotCandidate)?;
        check_artifact_file(root, path)?;
        let found = self.lookups(stem)?;
        let is_default = |slug: &str| self.default_slug.as_deref() == Some(slug);
        // The default source's record first: if the bytes match its checksum they are the public registry's bytes
        // (the engine compares); else a user-marked public slug; else whatever else knows the gem.
        let pick = found
            .iter()
            .find(|f| is_default(&f.0) && f.3.is_some() && !self.marks.private.contains(&f.0))
            .or_else(|| {
                found.iter().find(|f| {
                    f.3.is_some()
                        && self.marks.public.contains(&f.0)
                        && !self.marks.private.contains(&f.0)
                })
            })
            .or_else(|| found.iter().find(|f| f.3.is_some()))
            .or_else(|| found.first());
        let Some((slug, name, version, sha256)) = pick.cloned() else {
            let (name, version) = split_points(stem)
                .next()
                .ok_or_else(|| NotAnArtifact::BadName(stem.to_owned()))?;
            return Ok(ArtifactIdentity {
                ecosystem: "rubygems",
                name: name.to_owned(),
                version: version.to_owned(),
                origin: GEM_UNRECORDED_ORIGIN.to_owned(),
                checksum: None,
                provenance: decide(
                    &OriginMarks { public: Vec::new(), private: self.marks.private.clone() },
                    GEM_UNRECORDED_ORIGIN,
                    None,
                    Provenance::Unknown {
                        reason: "RubyGems records no source for a cached gem and no Bundler compact index lists it".into(),
                    },
                ),
            });
        };
        let structural = is_default(&slug).then(|| {
            "sha256 listed by the compact index of RubyGems' default source (slug learned from the installed ruby)".to_owned()
        });
        let provenance = decide(
            &self.marks,
            &slug,
            structural,
            Provenance::Private {
                reason: "compact index of a gem source that is not RubyGems' default (an alternative source)".into(),
            },
        );
        Ok(ArtifactIdentity {
            ecosystem: "rubygems",
            name,
            version,
            origin: slug,
            checksum: sha256.map(|digest| RegistryChecksum {
                algo: ChecksumAlgo::Sha256,
                digest,
            }),
            provenance,
        })
    }
}

/// What the installed ruby says: the compact-index slug of the default source and its gem dirs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RubyDefaults {
    pub default_slug: Option<String>,
    pub gem_dirs: Vec<PathBuf>,
}

/// Script run once with the installed ruby: prints `slug <slug>` for RubyGems' built-in default source (slugged the
/// way the installed Bundler names its compact-index cache) and `dir <path>` for every gem dir.
const RUBY_PROBE: &str = r#"src = Gem.default_sources.first
slug = begin
  require "bundler"
  Bundler::Source::Rubygems::Remote.new(Gem::URI(src)).cache_slug
rescue Exception
  require "digest"; require "uri"
  u = URI(src); parts = [u.host, u.user, u.port, u.path]
  parts[-1] = Digest::MD5.hexdigest(parts.compact.join(".")); parts.compact.join(".")
end
puts "slug #{slug}" if slug
(Gem.path + [Gem.default_dir, Gem.user_dir]).uniq.each { |d| puts "dir #{d}" }
"#;

/// Parses the probe's output. Never panics.
pub fn parse_ruby_probe(out: &str) -> RubyDefaults {
    let mut d = RubyDefaults::default();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix("slug ") {
            d.default_slug =
                Some(s.trim().to_owned()).filter(|s| !s.is_empty() && !s.contains(['/', '\\']));
        } else if let Some(p) = line.strip_prefix("dir ") {
            d.gem_dirs.push(PathBuf::from(p.trim()));
        }
    }
    d
}

/// Asks the installed ruby (if any) for its defaults.
pub(crate) fn probe_ruby(env: &SourceEnv) -> RubyDefaults {
    run_tool("ruby", &["-e", RUBY_PROBE], env)
        .map(|o| parse_ruby_probe(&o))
        .unwrap_or_default()
}

/// `<bundle user cache>/compact_index`.
pub(crate) fn compact_index_dir(env: &SourceEnv) -> Option<PathBuf> {
    let cache = match (env.var("BUNDLE_USER_CACHE"), env.var("BUNDLE_USER_HOME")) {
        (Some(c), _) => PathBuf::from(c),
        (None, Some(h)) => Path::new(h).join("cache"),
        (None, None) => env.home.as_ref()?.join(".bundle").join("cache"),
    };
    Some(cache.join("compact_index"))
}

/// The `cache/` dirs of every gem dir: env, the ruby probe's dirs, and the usual places that exist.
pub(crate) fn gem_caches(env: &SourceEnv, probed: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(env.var("GEM_HOME").map(PathBuf::from));
    dirs.extend(env.var("GEM_PATH").map(split_path_list).unwrap_or_default());
    dirs.extend(probed.iter().cloned());
    if let Some(home) = &env.home {
        dirs.extend(subdirs(&home.join(".local/share/gem/ruby")));
        dirs.extend(subdirs(&home.join(".gem/ruby")));
        dirs.extend(subdirs(&home.join(".rvm/gems")));
        for v in subdirs(&home.join(".rbenv/versions")) {
            dirs.extend(subdirs(&v.join("lib/ruby/gems")));
        }
    }
    dirs.extend(subdirs(Path::new("/var/lib/gems")));
    let mut seen = std::collections::BTreeSet::new();
    dirs.into_iter()
        .map(|d| d.join("cache"))
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::fs;

    fn info(ci: &Path, slug: &str, name: &str, lines: &[(&str, &[u8])]) {
        let dir = ci.join(slug).join("info");
        fs::create_dir_all(&dir).unwrap();
        let mut s = String::from("---\n");
        for (v, bytes) in lines {
            s.push_str(&format!(
                "{v} dep:>= 0|checksum:{},ruby:>= 2.7\n",
                hex::encode(Sha256::digest(bytes))
            ));
        }
        fs::write(dir.join(name), s).unwrap();
    }

    fn source(
        t: &Path,
        default: Option<&str>,
        public: &[&str],
        private: &[&str],
    ) -> RubyGemsSource {
        RubyGemsSource::new(
            vec![t.join("gems/cache")],
            t.join("ci"),
            default.map(str::to_owned),
            OriginMarks {
                public: public.iter().map(|s| s.to_string()).collect(),
                private: private.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    fn gem(t: &Path, file: &str, bytes: &[u8]) -> PathBuf {
        let p = t.join("gems/cache").join(file);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn default_source_checksum_makes_public() {
        let t = tempfile::tempdir().unwrap();
        let t = t.path();
        info(
            &t.join("ci"),
            "h.443.abc",
            "tiny-gem2",
            &[("0.9", b"x"), ("1.0.0-x86_64-linux", b"gem")],
        );
        let p = gem(t, "tiny-gem2-1.0.0-x86_64-linux.gem", b"gem");
        let s = source(t, Some("h.443.abc"), &[], &[]);
        assert!(s.is_candidate(&p));
        let id = s.describe(&p).unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str(), id.origin.as_str()),
            ("tiny-gem2", "1.0.0-x86_64-linux", "h.443.abc")
        );
        assert_eq!(id.checksum.unwrap().digest, Sha256::digest(b"gem").to_vec());
        assert!(matches!(id.provenance, Provenance::Public { .. }));
        // A private mark wins over the structural decision.
        let s = source(t, Some("h.443.abc"), &[], &["h.443.abc"]);
        assert!(matches!(
            s.describe(&p).unwrap().provenance,
            Provenance::Private { .. }
        ));
    }

    #[test]
    fn other_sources_need_a_mark_and_unlisted_gems_are_unknown() {
        let t = tempfile::tempdir().unwrap();
        let t = t.path();
        info(&t.join("ci"), "p.80.def", "a", &[("1.0", b"a")]);
        let p = gem(t, "a-1.0.gem", b"a");
        assert!(matches!(
            source(t, Some("x"), &[], &[])
                .describe(&p)
                .unwrap()
                .provenance,
            Provenance::Private { .. }
        ));
        assert!(matches!(
            source(t, None, &["p.80.def"], &[])
                .describe(&p)
                .unwrap()
                .provenance,
            Provenance::Public { .. }
        ));
        let q = gem(t, "b-2.0.gem", b"b");
        let id = source(t, None, &[GEM_UNRECORDED_ORIGIN], &[])
            .describe(&q)
            .unwrap();
        assert_eq!(
            (id.origin.as_str(), id.checksum),
            (GEM_UNRECORDED_ORIGIN, None)
        );
        assert!(matches!(id.provenance, Provenance::Unknown { .. }));
    }

    #[test]
    fn both_sources_listing_a_gem_prefers_the_default_record() {
        let t = tempfile::tempdir().unwrap();
        let t = t.path();
        info(&t.join("ci"), "d.443.1", "c", &[("1.0", b"public")]);
        info(&t.join("ci"), "p.80.2", "c", &[("1.0", b"private")]);
        let p = gem(t, "c-1.0.gem", b"private");
        let id = source(t, Some("d.443.1"), &[], &[]).describe(&p).unwrap();
        // The engine will find the file's sha256 differs from the public record and refuse it.
        assert_eq!(
            id.checksum.unwrap().digest,
            Sha256::digest(b"public").to_vec()
        );
    }

    #[test]
    fn names_and_non_candidates() {
        let t = tempfile::tempdir().unwrap();
        let s = source(t.path(), None, &[], &[]);
        let c = t.path().join("gems/cache");
        for f in ["a.gem", ".a-1.gem", "a-1.gem.tmp", "sub/a-1.gem", "a-b.gem"] {
            assert!(!s.is_candidate(&c.join(f)), "{f}");
        }
        let v: Vec<_> = split_points("net-http2-0.1-java").collect();
        assert_eq!(v, vec![("net-http2", "0.1-java")]);
        let v: Vec<_> = split_points("x-2-3").collect();
        assert_eq!(v, vec![("x", "2-3"), ("x-2", "3")]);
        let e = gem(t.path(), "e-1.gem", b"");
        assert_eq!(s.describe(&e), Err(NotAnArtifact::Empty));
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        for input in [
            &b""[..],
            b"---",
            b" |",
            b"1.0 |checksum:zz",
            b"\xff",
            b"1 a|checksum:",
            b"---\n\n \n|||",
        ] {
            let _ = parse_compact_index_info(input);
        }
        let l = parse_compact_index_info(b"---\n1.0 |checksum:00\n2.0 a:>= 1&< 2|ruby:>= 2,checksum:0000000000000000000000000000000000000000000000000000000000000000\n").unwrap();
        assert_eq!(l[0].sha256, None);
        assert_eq!(l[1].sha256, Some(vec![0; 32]));
        let d = parse_ruby_probe("slug a.443.b\ndir /x\nslug ../../etc\n");
        assert_eq!(
            (d.default_slug, d.gem_dirs),
            (None, vec![PathBuf::from("/x")])
        );
        let _ = split_points("é-1-é").count();
    }
}
