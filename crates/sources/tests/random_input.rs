//! Every cache-metadata parser, fed seeded random and mutated inputs for a few thousand iterations each: none may
//! panic. (The same parsers have cargo-fuzz targets in `fuzz/`; this keeps them covered in CI without cargo-fuzz.)

use pkgseed_sources as s;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Inputs: pure random bytes, random bytes from a text-ish alphabet, and mutations (flips, cuts, splices,
/// duplications) of the seeds.
fn inputs(seed: u64, seeds: &[&[u8]], count: usize) -> Vec<Vec<u8>> {
    const TEXTY: &[u8] = b"\0\n\r\t :=,;\"'{}[]<>/\\|-_.+@#abczAZ019\xff\xc3\xa9";
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let len = rng.below(512);
        let input = match i % 4 {
            0 => (0..len).map(|_| rng.next() as u8).collect(),
            1 => (0..len).map(|_| TEXTY[rng.below(TEXTY.len())]).collect(),
            _ if seeds.is_empty() => Vec::new(),
            _ => {
                let mut v = seeds[rng.below(seeds.len())].to_vec();
                for _ in 0..1 + rng.below(8) {
                    match rng.below(5) {
                        0 if !v.is_empty() => {
                            let at = rng.below(v.len());
                            v[at] ^= 1 << rng.below(8);
                        }
                        1 if !v.is_empty() => v.truncate(rng.below(v.len())),
                        2 => {
                            let at = rng.below(v.len() + 1);
                            v.insert(at, TEXTY[rng.below(TEXTY.len())]);
                        }
                        3 if !v.is_empty() => {
                            let a = rng.below(v.len());
                            let b = (a + rng.below(64)).min(v.len());
                            let piece = v[a..b].to_vec();
                            let at = rng.below(v.len() + 1);
                            v.splice(at..at, piece);
                        }
                        _ => {
                            let other = seeds[rng.below(seeds.len())];
                            let at = rng.below(v.len() + 1);
                            v.truncate(at);
                            v.extend_from_slice(&other[rng.below(other.len() + 1)..]);
                        }
                    }
                }
                v
            }
        };
        out.push(input);
    }
    out
}

const ITERATIONS: usize = 4000;

fn index_cache_seed() -> Vec<u8> {
    let mut b = vec![3u8, 2, 0, 0, 0];
    b.extend_from_slice(b"etag\0");
    for v in ["1.0.0", "1.0.1-rc.1+meta"] {
        b.extend_from_slice(v.as_bytes());
        b.push(0);
        b.extend_from_slice(
            format!(
                r#"{{"name":"seed","vers":"{v}","deps":[],"cksum":"{}","features":{{}}}}"#,
                "ab".repeat(32)
            )
            .as_bytes(),
        );
        b.push(0);
    }
    b
}

#[test]
fn cargo_index_cache_never_panics_on_random_input() {
    let seed = index_cache_seed();
    for input in inputs(1, &[&seed], ITERATIONS) {
        if let Ok(entries) = s::parse_index_cache(&input) {
            for e in entries {
                let _ = e.record();
            }
        }
    }
}

#[test]
fn text_metadata_parsers_never_panic_on_random_input() {
    let seeds: &[&[u8]] = &[
        b"Metadata-Version: 2.1\nName: seed\nVersion: 1.0\nRequires-Dist: x\n",
        b"Wheel-Version: 1.0\nGenerator: bdist_wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        b"Package: seed\nVersion: 1.0\nFilename: pool/s/seed.deb\nSize: 10\nSHA256: abab\n\nPackage: b\n",
        b"Origin: x\nSuite: stable\nSHA256:\n abab 10 main/binary-amd64/Packages\n",
        b"Dir \"/\";\nDir::Cache \"var/cache/apt/\";\nDir::Cache::archives \"archives/\";\n",
        b"<settings><localRepository>/x</localRepository><mirrors><mirror><id>a</id><url>u</url></mirror></mirrors></settings>",
        b"0123456789abcdef0123456789abcdef01234567  seed.jar\n",
        b"<?xml version=\"1.0\"?><project a='b'><!-- c --><x>&amp;<![CDATA[y]]></x></project>",
        b"GOPATH=/go\nGOMODCACHE='/go/pkg/mod'\nGOFLAGS=\"-mod=mod\"\n",
        b"h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        b"example.com/m v1.0.0\n123\nexample.com/m v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        b"registry=http://r.invalid/\n//r.invalid/:_authToken=x\n@scope:registry=http://s.invalid/\n",
        b"sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
        b"http://r.invalid/@scope/name/-/name-1.0.0.tgz",
        b"{\"packages\": {\"x\": {}}}\nrepositories: default\n",
        b"GEM_HOME=/g\nGEM_PATH=/g:/h\n",
    ];
    let env = s::SourceEnv::default();
    for input in inputs(2, seeds, ITERATIONS) {
        let text = String::from_utf8_lossy(&input);
        let _ = s::pip::parse_core_metadata(&text);
        let _ = s::pip::parse_wheel_file(&text);
        let _ = s::apt::parse_packages(&text);
        let _ = s::apt::parse_release(&text);
        let _ = s::apt::parse_apt_config_dump(&text);
        let _ = s::maven::parse_settings(&text);
        let _ = s::maven::parse_sha1_file(&text);
        let _ = s::xmlmini::parse_xml(&text);
        let _ = s::golang::parse_go_env_file(&text);
        let _ = s::golang::parse_h1(&text);
        let mut parts = text.splitn(3, '\n');
        let (m, v, rec) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let _ = s::golang::parse_sumdb_lookup(rec, m, v);
        let _ = s::npm::registry::parse_npmrc(&text, &env);
        let _ = s::npm::registry::parse_sri_sha512(&text);
        let _ = s::npm::registry::parse_tarball_url(&text);
        let _ = s::rubygems::parse_ruby_probe(&text);
        let _ = s::composer::parse_default_repositories(&text);
    }
}

#[test]
fn binary_and_json_metadata_parsers_never_panic_on_random_input() {
    let seeds: &[&[u8]] = &[
        b"5e1f3c\t{\"key\":\"make-fetch-happen:request-cache:http://r.invalid/x.tgz\",\"integrity\":\"sha512-AA==\",\"time\":1,\"size\":3}\n",
        b"{\"name\":\"seed\",\"version\":\"1\",\"sha256\":\"abab\",\"md5\":\"x\",\"url\":\"http://c.invalid/x.conda\"}",
        b"---\n1.0.0 dep:>= 1|checksum:abab,ruby:>= 2\n1.0.1 |checksum:cdcd\n",
        b"{\"packages\":{\"vendor/package\":[{\"version\":\"1.0.0\",\"dist\":{\"type\":\"zip\",\"url\":\"u\",\"shasum\":\"ab\"}}]}}",
        b"{\"version\":2,\"contentHash\":\"AAAA\",\"source\":\"http://n.invalid/v3/index.json\"}",
        b"z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
        b"{\"name\":\"seed\",\"versions\":{\"1.0.0\":{\"dist\":{\"integrity\":\"sha512-AA==\",\"tarball\":\"u\"}}}}",
        b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0aPK\x01\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0aPK\x05\x06\0\0\0\0\x01\0\x01\0\x2f\0\0\0\x1f\0\0\0\0\0",
    ];
    for input in inputs(3, seeds, ITERATIONS) {
        let _ = s::npm::parse_index_bucket(&input);
        let _ = s::conda::parse_repodata_record(&input);
        let _ = s::rubygems::parse_compact_index_info(&input);
        let _ = s::composer::parse_composer_metadata(&input, "vendor/package");
        let _ = s::nuget::parse_nupkg_metadata(&input);
        let _ = s::nuget::parse_nupkg_sha512(&input);
        let _ = s::yarn::parse_yarn_metadata(&input);
        let _ = s::zipread::read_zip_entries(&input, &|_| true, 1 << 20);
    }
}

/// The lookups that take a second input (the path or file name looked for): the first line of each input is that
/// name, the rest the file (Gradle's `resource-at-url.bin`, Maven's `_remote.repositories`).
#[test]
fn gradle_and_maven_lookups_never_panic_on_random_input() {
    let seeds: &[&[u8]] = &[
        b"/org/example/lib/1.0/lib-1.0.jar\n\0\0\0=https://repo.invalid/maven2/org/example/lib/1.0/lib-1.0.jar\0\x01\0*file:/srv/m2/org/example/lib/1.0/lib-1.0.jar\0",
        b"/a/http://x\n/a/http://x",
        b"lib-1.0.jar\n#NOTE: a Maven Resolver file\n#Mon Jan 01 00:00:00 UTC 2024\nlib-1.0.jar>central=\nlib-1.0.pom>=\n",
    ];
    for input in inputs(5, seeds, ITERATIONS) {
        let (first, rest) = match input.iter().position(|&b| b == b'\n') {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (&input[..], &[][..]),
        };
        let name = String::from_utf8_lossy(first);
        let _ = s::gradle::repository_urls_in(rest, &name);
        let _ = s::maven::remote_repo_id(&String::from_utf8_lossy(rest), &name);
    }
    // A Maven path that itself holds a scheme is not a repository URL (this used to slice out of bounds).
    assert!(s::gradle::repository_urls_in(b"/a/http://x", "/a/http://x").is_empty());
}

#[test]
fn pip_http_cache_entries_never_panic_on_random_input() {
    // A pre-23.3 entry as cachecontrol writes it (`cc=4,` + msgpack, the body inline) and a 23.3+ metadata file.
    let seeds: &[&[u8]] = &[
        b"cc=4,\x82\xa8response\x87\xa4body\xc4\x04PK\x03\x04\xa7headers\x81\xaeContent-Length\xa14\xa6status\xcc\xc8\xa7version\x0b\xa6reason\xa2OK\xa6strict\x00\xaedecode_content\xc2\xa4vary\x80",
        b"cc=4,\x82\xa8response\x82\xa4body\xc4\x00\xa6status\xcd\x00\xc8\xa4vary\x81\xa6Accept\xc0",
    ];
    for input in inputs(4, seeds, ITERATIONS) {
        if let Ok(range) = s::pip::locate_inline_body(&mut std::io::Cursor::new(&input)) {
            assert!(range.offset + range.len <= input.len() as u64);
        }
        let _ = s::pip::inspect_body(&mut std::io::Cursor::new(&input));
    }
    assert!(s::pip::locate_inline_body(&mut std::io::Cursor::new(seeds[0])).is_ok());
}
