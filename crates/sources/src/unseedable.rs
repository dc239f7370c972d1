//! Caches that keep only extracted files (or re-packed archives), so the registry's original artifact bytes cannot
//! be rebuilt: pnpm's store, yarn berry's cache, bun, deno, uv and dart pub. They are listed when present, with a
//! reason, and never seeded. (pip's pre-23.3 `http/` cache, whose bodies sit inline in msgpack files, is not one of
//! them: the pip source seeds those bodies as byte ranges of their files.)

use std::path::{Path, PathBuf};

use crate::{SourceEnv, UnseedableCache};

/// Every such cache present (as a directory) under this environment's locations, deduplicated, in a stable order.
pub(crate) fn detect(env: &SourceEnv) -> Vec<UnseedableCache> {
    let mut found: Vec<UnseedableCache> = Vec::new();
    for (ecosystem, paths, reason) in candidates(env) {
        for path in paths {
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir && !found.iter().any(|c| c.path == path) {
                found.push(UnseedableCache {
                    ecosystem: ecosystem.to_owned(),
                    path,
                    reason: reason.to_owned(),
                });
            }
        }
    }
    found
}

fn candidates(env: &SourceEnv) -> Vec<(&'static str, Vec<PathBuf>, &'static str)> {
    let home = |rel: &str| env.home.as_ref().map(|h| h.join(rel));
    let var = |name: &str| env.var(name).map(PathBuf::from);
    let local_app_data = |rel: &str| env.var("LOCALAPPDATA").map(|l| Path::new(l).join(rel));
    let windows = cfg!(windows);
    let macos = cfg!(target_os = "macos");
    let xdg_cache = var("XDG_CACHE_HOME").or_else(|| home(".cache"));
    let xdg_data = var("XDG_DATA_HOME").or_else(|| home(".local/share"));
    let mut out = Vec::new();

    // pnpm: content-addressed store of individual files.
    let mut pnpm: Vec<PathBuf> = Vec::new();
    pnpm.extend(var("npm_config_store_dir").or_else(|| var("NPM_CONFIG_STORE_DIR")));
    pnpm.extend(var("PNPM_HOME").map(|p| p.join("store")));
    if windows {
        pnpm.extend(local_app_data("pnpm\\store"));
    } else if macos {
        pnpm.extend(home("Library/pnpm/store"));
    } else {
        pnpm.extend(xdg_data.as_ref().map(|d| d.join("pnpm/store")));
    }
    out.push((
        "pnpm",
        pnpm,
        "pnpm's store keeps individual files of extracted packages, not the registry tarballs",
    ));

    // yarn berry: zips re-packed by yarn.
    let mut berry: Vec<PathBuf> = Vec::new();
    berry.extend(var("YARN_GLOBAL_FOLDER").map(|p| p.join("cache")));
    if windows {
        berry.extend(local_app_data("Yarn\\Berry\\cache"));
    } else {
        berry.extend(var("XDG_DATA_HOME").map(|d| d.join("yarn/berry/cache")));
        berry.extend(home(".yarn/berry/cache"));
    }
    out.push((
        "yarn-berry",
        berry,
        "yarn 2+ keeps zips it re-packed itself, not the registry tarballs",
    ));

    // bun: extracted packages.
    let mut bun: Vec<PathBuf> = Vec::new();
    bun.extend(var("BUN_INSTALL_CACHE_DIR"));
    bun.extend(var("BUN_INSTALL").map(|p| p.join("install/cache")));
    bun.extend(home(".bun/install/cache"));
    out.push(("bun", bun, "bun keeps extracted packages only"));

    // deno: extracted npm packages and remote modules.
    let mut deno: Vec<PathBuf> = Vec::new();
    deno.extend(var("DENO_DIR"));
    if windows {
        deno.extend(local_app_data("deno"));
    } else if macos {
        deno.extend(home("Library/Caches/deno"));
    } else {
        deno.extend(xdg_cache.as_ref().map(|c| c.join("deno")));
    }
    out.push((
        "deno",
        deno,
        "deno keeps extracted npm packages, not the registry tarballs",
    ));

    // uv: unzipped wheels.
    let mut uv: Vec<PathBuf> = Vec::new();
    uv.extend(var("UV_CACHE_DIR"));
    if windows {
        uv.extend(local_app_data("uv\\cache"));
    } else {
        uv.extend(xdg_cache.as_ref().map(|c| c.join("uv")));
    }
    out.push(("uv", uv, "uv keeps unzipped wheels, not the wheel files"));

    // dart pub: extracted packages.
    let mut pub_cache: Vec<PathBuf> = Vec::new();
    pub_cache.extend(var("PUB_CACHE"));
    if windows {
        pub_cache.extend(local_app_data("Pub\\Cache"));
    } else {
        pub_cache.extend(home(".pub-cache"));
    }
    out.push(("pub", pub_cache, "dart pub keeps extracted packages only"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(home: &Path, vars: &[(&str, &Path)]) -> SourceEnv {
        SourceEnv {
            home: Some(home.to_owned()),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string()))
                .collect(),
        }
    }

    #[test]
    fn nothing_is_listed_in_an_empty_home() {
        let dir = tempfile::tempdir().unwrap();
        assert!(detect(&env_with(dir.path(), &[])).is_empty());
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn present_caches_are_listed_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        for rel in [
            ".local/share/pnpm/store",
            ".yarn/berry/cache",
            ".bun/install/cache",
            ".cache/deno",
            ".pub-cache",
            // pip's caches, both layouts, are seeded by the pip source: never listed here.
            ".cache/pip/http",
            ".cache/pip/http-v2",
        ] {
            std::fs::create_dir_all(home.join(rel)).unwrap();
        }
        let uv = dir.path().join("elsewhere/uv");
        std::fs::create_dir_all(&uv).unwrap();
        // A file where a cache dir would be is not a cache.
        std::fs::write(home.join("not-a-dir"), b"x").unwrap();
        let found = detect(&env_with(
            home,
            &[("UV_CACHE_DIR", &uv), ("DENO_DIR", &home.join("not-a-dir"))],
        ));
        let names: Vec<(&str, PathBuf)> = found
            .iter()
            .map(|c| (c.ecosystem.as_str(), c.path.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("pnpm", home.join(".local/share/pnpm/store")),
                ("yarn-berry", home.join(".yarn/berry/cache")),
                ("bun", home.join(".bun/install/cache")),
                ("deno", home.join(".cache/deno")),
                ("uv", uv.clone()),
                ("pub", home.join(".pub-cache")),
            ]
        );
        assert!(found.iter().all(|c| !c.reason.is_empty()));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn the_same_dir_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join(".local/share/pnpm/store");
        std::fs::create_dir_all(&store).unwrap();
        let found = detect(&env_with(dir.path(), &[("npm_config_store_dir", &store)]));
        assert_eq!(found.len(), 1);
    }
}
