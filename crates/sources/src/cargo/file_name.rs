//! `<name>-<version>.crate` file names and cargo's semver grammar, validated without a semver dependency.

/// Splits `<name>-<version>` (the file stem of a `.crate`) at the last `-` followed by a valid semver.
///
/// Crate names are ASCII letters, digits, `-` and `_` (no `.`), so at most one split point yields a valid
/// `major.minor.patch` version; searching from the right is just the cheap order.
pub fn split_crate_file_name(stem: &str) -> Option<(&str, &str)> {
    stem.rmatch_indices('-').find_map(|(i, _)| {
        let (name, version) = (&stem[..i], &stem[i + 1..]);
        (is_crate_name(name) && is_semver(version)).then_some((name, version))
    })
}

fn is_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SemVer 2.0.0 as the `semver` crate (which cargo uses) accepts it: `major.minor.patch` as u64 without leading
/// zeros, an optional `-pre` of dot-separated identifiers (numeric ones without leading zeros) and an optional
/// `+build` of dot-separated identifiers (leading zeros allowed).
pub fn is_semver(s: &str) -> bool {
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let mut parts = core.split('.');
    let core_ok =
        (0..3).all(|_| parts.next().is_some_and(is_numeric_part)) && parts.next().is_none();
    core_ok
        && pre.is_none_or(|pre| pre.split('.').all(is_pre_identifier))
        && build.is_none_or(|build| build.split('.').all(is_build_identifier))
}

fn is_numeric_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u64>().is_ok()
}

fn is_pre_identifier(s: &str) -> bool {
    is_build_identifier(s)
        && (!s.bytes().all(|b| b.is_ascii_digit()) || s == "0" || !s.starts_with('0'))
}

fn is_build_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_with_dashes_and_full_semver() {
        let cases = [
            ("foo-1.2.3", ("foo", "1.2.3")),
            ("foo-bar-1.2.3", ("foo-bar", "1.2.3")),
            (
                "foo-bar-1.2.3-alpha.1+build.5",
                ("foo-bar", "1.2.3-alpha.1+build.5"),
            ),
            ("sha-1-0.10.1", ("sha-1", "0.10.1")),
            ("notify-9.0.0-rc.7", ("notify", "9.0.0-rc.7")),
            (
                "libp2p-stream-0.4.0-alpha",
                ("libp2p-stream", "0.4.0-alpha"),
            ),
            (
                "wasi-0.11.1+wasi-snapshot-preview1",
                ("wasi", "0.11.1+wasi-snapshot-preview1"),
            ),
            (
                "toml_edit-0.25.20+spec-1.1.0",
                ("toml_edit", "0.25.20+spec-1.1.0"),
            ),
            (
                "openssl-src-110.0.0+1.1.0f",
                ("openssl-src", "110.0.0+1.1.0f"),
            ),
            ("a-1-2.0.0", ("a-1", "2.0.0")),
            ("Inflector-0.11.4", ("Inflector", "0.11.4")),
            ("x-0.0.0-0.3.7", ("x", "0.0.0-0.3.7")),
            ("x-1.0.0-x-y-z.--", ("x", "1.0.0-x-y-z.--")),
        ];
        for (stem, want) in cases {
            assert_eq!(split_crate_file_name(stem), Some(want), "{stem}");
        }
    }

    #[test]
    fn rejects_unparseable_names() {
        for stem in [
            "foo",
            "foo-",
            "-1.2.3",
            "foo-1.2",
            "foo-1.2.3.4",
            "foo-01.2.3",
            "foo-1.2.3-",
            "foo-1.2.3+",
            "foo-1.2.3-01",
            "foo-1.2.3-a..b",
            "foo-v1.2.3",
            "fo.o-1.2.3",
            "foo-1.2.3 ",
            "foo-18446744073709551616.0.0",
            "föo-1.2.3",
        ] {
            assert_eq!(split_crate_file_name(stem), None, "{stem}");
        }
    }

    #[test]
    fn semver_grammar() {
        for ok in [
            "0.0.0",
            "1.2.3-0",
            "1.2.3-0a",
            "1.2.3-01a",
            "1.2.3+001",
            "1.2.3-rc.1+b.2",
            "18446744073709551615.0.0",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.",
            ".1.2",
            "1.2.-3",
            "1.2.3-",
            "1.2.3-00",
            "1.2.3+a+b",
            "1.2.3-a_b",
            "01.0.0",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
