//! The real cargo client fetches from a small sparse registry served on 127.0.0.1 into a temp cargo home; the
//! cargo source must then describe what cargo wrote, as a private (alternative-registry) artifact.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{fs, thread};

use pkgseed_sources::{
    cargo_index_cache_path, parse_index_cache, CacheSource, CargoSource, NotAnArtifact,
    OriginMarks, Provenance,
};
use sha2::{Digest, Sha256};

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The outer `cargo test` may set the first ones; the inner cargo must use only the temp dirs. A proxy from
    // the environment would intercept the loopback registry.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_HTTP_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running cargo");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packages a dependency-free library crate with the real cargo and returns the `.crate` bytes.
fn package(work: &Path, cargo_home: &Path, name: &str, version: &str) -> Vec<u8> {
    let dir = work.join(format!("src-{name}"));
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\nlicense = \"MIT\"\n\
             description = \"test crate\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("src/lib.rs"),
        format!("pub const NAME: &str = \"{name}\";\n"),
    )
    .unwrap();
    run(cargo()
        .args([
            "package",
            "--no-verify",
            "--allow-dirty",
            "--offline",
            "--quiet",
        ])
        .env("CARGO_HOME", cargo_home)
        .current_dir(&dir));
    fs::read(dir.join(format!("target/package/{name}-{version}.crate"))).unwrap()
}

/// Serves `files` (URL path → body) over HTTP/1.1, one request per connection, until the test process ends.
fn serve(listener: TcpListener, files: Vec<(String, Vec<u8>)>) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(n) if n > 2 => continue,
                    _ => break,
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match files.iter().find(|(p, _)| p == path) {
                Some((_, body)) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", &b""[..]),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(body));
        }
    });
}

fn index_path(name: &str) -> String {
    let name = name.to_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

#[test]
fn real_cargo_fetch_from_a_local_registry() {
    let work = tempfile::tempdir().unwrap();
    let cargo_home = work.path().join("cargo-home");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    fs::create_dir_all(&cargo_home).unwrap();

    // (name, version, dependency requirement): a dashed name, and a 3-char uppercase name with pre-release and
    // build metadata (exercises cargo's lowercased `3/<c>/` prefix and the file-name split).
    let crates = [
        ("acme-internal", "0.1.0", "0.1"),
        ("Zed", "1.0.0-rc.1+meta.7", "=1.0.0-rc.1"),
    ];
    let config = format!(r#"{{"dl":"http://127.0.0.1:{port}/dl","api":null}}"#);
    let mut files = vec![("/index/config.json".to_owned(), config.into_bytes())];
    let mut sums = Vec::new();
    for (name, version, _) in crates {
        let bytes = package(work.path(), &cargo_home, name, version);
        let cksum = hex::encode(Sha256::digest(&bytes));
        let line = format!(
            r#"{{"name":"{name}","vers":"{version}","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
        );
        files.push((
            format!("/index/{}", index_path(name)),
            format!("{line}\n").into_bytes(),
        ));
        files.push((format!("/dl/{name}/{version}/download"), bytes));
        sums.push(cksum);
    }
    serve(listener, files);

    // A consumer project depending on both, fetched by the real cargo into the temp cargo home.
    let app = work.path().join("app");
    fs::create_dir_all(app.join("src")).unwrap();
    let deps: String = crates
        .iter()
        .map(|(name, _, req)| format!("{name} = {{ version = \"{req}\", registry = \"local\" }}\n"))
        .collect();
    fs::write(
        app.join("Cargo.toml"),
        format!("[package]\nname = \"app\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n{deps}"),
    )
    .unwrap();
    fs::write(app.join("src/lib.rs"), "").unwrap();
    run(cargo()
        .arg("fetch")
        .env("CARGO_HOME", &cargo_home)
        .env(
            "CARGO_REGISTRIES_LOCAL_INDEX",
            format!("sparse+http://127.0.0.1:{port}/index/"),
        )
        .env("CARGO_HTTP_MULTIPLEXING", "false")
        .current_dir(&app));

    let source = CargoSource::new(cargo_home.clone(), OriginMarks::default());
    let cache_dirs: Vec<PathBuf> = fs::read_dir(&source.roots()[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cache_dirs.len(), 1, "{cache_dirs:?}");
    let index_dir = cache_dirs[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(index_dir.starts_with("127.0.0.1-"), "{index_dir}");

    for ((name, version, _), cksum) in crates.iter().zip(&sums) {
        let path = cache_dirs[0].join(format!("{name}-{version}.crate"));
        assert!(source.is_candidate(&path), "{}", path.display());

        // The index cache cargo wrote is where we look for it, in the format we parse.
        let cache = fs::read(cargo_index_cache_path(&cargo_home, &index_dir, name)).unwrap();
        assert_eq!(
            &cache[..5],
            &[3, 2, 0, 0, 0],
            "cache version 3, index schema 2"
        );
        let entries = parse_index_cache(&cache).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].version, *version);

        let id = source.describe(&path).unwrap();
        assert_eq!((id.name.as_str(), id.version.as_str()), (*name, *version));
        assert_eq!(id.origin, index_dir);
        assert_eq!(hex::encode(id.checksum.unwrap().digest), *cksum);
        assert!(
            matches!(id.provenance, Provenance::Private { .. }),
            "{:?}",
            id.provenance
        );

        let marked = CargoSource::new(
            cargo_home.clone(),
            OriginMarks {
                public: vec![index_dir.clone()],
                private: vec![],
            },
        );
        assert!(matches!(
            marked.describe(&path).unwrap().provenance,
            Provenance::Public { .. }
        ));
    }

    // An interrupted download as cargo leaves it: the file truncated to 0 bytes.
    let first = cache_dirs[0].join("acme-internal-0.1.0.crate");
    fs::write(&first, b"").unwrap();
    assert_eq!(source.describe(&first), Err(NotAnArtifact::Empty));
}
