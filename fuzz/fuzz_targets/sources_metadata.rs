//! Every other cache-metadata parser in `pkgseed-sources`, one target: the first byte picks the parser, the rest is
//! its input. (One binary keeps the sanitizer build of the dependency tree to one.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use pkgseed_sources as s;

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(input);
    match which % 26 {
        0 => {
            let _ = s::npm::parse_index_bucket(input);
        }
        1 => {
            let _ = s::npm::registry::parse_tarball_url(&text);
        }
        2 => {
            let _ = s::npm::registry::parse_sri_sha512(&text);
        }
        3 => {
            let _ = s::npm::registry::parse_npmrc(&text, &s::SourceEnv::default());
        }
        4 => {
            let _ = s::pip::parse_core_metadata(&text);
        }
        5 => {
            let _ = s::pip::parse_wheel_file(&text);
        }
        6 => {
            let _ = s::apt::parse_packages(&text);
        }
        7 => {
            let _ = s::apt::parse_release(&text);
        }
        8 => {
            let _ = s::apt::parse_apt_config_dump(&text);
        }
        9 => {
            let _ = s::maven::parse_settings(&text);
        }
        10 => {
            let _ = s::maven::parse_sha1_file(&text);
        }
        11 => {
            let _ = s::xmlmini::parse_xml(&text);
        }
        12 => {
            let _ = s::golang::parse_go_env_file(&text);
        }
        13 => {
            let _ = s::golang::parse_h1(&text);
        }
        14 => {
            let mut parts = text.splitn(3, '\n');
            let (m, v, rec) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let _ = s::golang::parse_sumdb_lookup(rec, m, v);
        }
        15 => {
            let _ = s::nuget::parse_nupkg_metadata(input);
        }
        16 => {
            let _ = s::nuget::parse_nupkg_sha512(input);
        }
        17 => {
            let _ = s::conda::parse_repodata_record(input);
        }
        18 => {
            let _ = s::rubygems::parse_compact_index_info(input);
        }
        19 => {
            let _ = s::rubygems::parse_ruby_probe(&text);
        }
        20 => {
            let _ = s::composer::parse_composer_metadata(input, "vendor/package");
        }
        21 => {
            let _ = s::composer::parse_default_repositories(&text);
        }
        22 => {
            let _ = s::yarn::parse_yarn_metadata(input);
        }
        23 => {
            let _ = s::zipread::read_zip_entries(input, &|_| true, 1 << 20);
        }
        24 => {
            // Gradle's `resource-at-url.bin`: the first line is the Maven path looked for, the rest the file.
            let (maven_path, bin) = split_first_line(input);
            let _ = s::gradle::repository_urls_in(bin, &String::from_utf8_lossy(maven_path));
        }
        _ => {
            // Maven's `_remote.repositories`: the first line is the file name looked up, the rest the file.
            let (file, rest) = split_first_line(input);
            let _ = s::maven::remote_repo_id(
                &String::from_utf8_lossy(rest),
                &String::from_utf8_lossy(file),
            );
        }
    }
});

/// `(first line, the rest)` of `input`, split at the first `\n`.
fn split_first_line(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[]),
    }
}
