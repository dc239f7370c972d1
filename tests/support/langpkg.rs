//! Helpers shared by the RubyGems, Composer, NuGet and Conda end-to-end tests: a step runner that reports every
//! failed step, a "the required client must exist" check, and small readers of `ls --json` / `status --json`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{poll, status, TestEnv};

/// Runs named steps, collects failures, and fails once at the end listing every failed step.
#[derive(Default)]
pub struct Steps {
    failures: Vec<(String, String)>,
    passed: Vec<String>,
}

impl Steps {
    pub fn new() -> Steps {
        Steps::default()
    }

    pub fn run(&mut self, name: &str, f: impl FnOnce()) -> bool {
        eprintln!("\n=== step {name} ===");
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => {
                eprintln!("=== step {name}: ok ({:.1?}) ===", t.elapsed());
                self.passed.push(name.to_string());
                true
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic)".into());
                eprintln!("=== step {name}: FAILED ({:.1?}) ===", t.elapsed());
                self.failures.push((name.to_string(), msg));
                false
            }
        }
    }

    pub fn finish(self) {
        eprintln!("\npassed steps: {:?}", self.passed);
        if !self.failures.is_empty() {
            let mut s = format!("{} step(s) failed:\n", self.failures.len());
            for (name, msg) in &self.failures {
                s.push_str(&format!(
                    "\n--- {name} ---\n{}\n",
                    crate::proc::tail(msg, 6000)
                ));
            }
            panic!("{s}");
        }
    }
}

/// Panics with a clear message when `program` cannot be run (`program --version`).
#[track_caller]
pub fn require_tool(program: &str, apt_package: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{program}` is required by this test and could not be run: install the Debian package `{apt_package}` \
         (scripts/setup.sh does)"
    );
}

pub use crate::ls;

/// The `ls` entry whose path is `path`.
pub fn ls_by_path<'a>(ls: &'a [Value], path: &Path) -> Option<&'a Value> {
    ls.iter().find(|e| {
        e["path"].as_str().is_some_and(|p| {
            Path::new(p) == path
                || std::fs::canonicalize(p).ok() == std::fs::canonicalize(path).ok()
        })
    })
}

/// The file names of the `ls` entries of `ecosystem`, sorted.
pub fn seeded_file_names(ls: &[Value], ecosystem: &str) -> Vec<String> {
    let mut names: Vec<String> = ls
        .iter()
        .filter(|e| e["ecosystem"] == ecosystem)
        .filter_map(|e| e["path"].as_str())
        .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p).to_owned())
        .collect();
    names.sort();
    names
}

/// Polls `ls` until an entry for `path` appears.
#[track_caller]
pub fn wait_seeded(env: &TestEnv, path: &Path, timeout: Duration) -> Value {
    let mut last = Vec::new();
    poll(timeout, Duration::from_millis(200), || {
        last = ls(env);
        ls_by_path(&last, path).cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "{} not seeded within {timeout:?}; ls: {last:#?}",
            path.display()
        )
    })
}

/// Polls `ls` until no entry for `path` is left.
#[track_caller]
pub fn wait_withdrawn(env: &TestEnv, path: &Path, timeout: Duration) {
    let mut last = Vec::new();
    poll(timeout, Duration::from_millis(200), || {
        last = ls(env);
        ls_by_path(&last, path).is_none().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{} still seeded {timeout:?} after removal; ls: {last:#?}",
            path.display()
        )
    })
}

/// The `status.origins` entry of `origin`.
#[track_caller]
pub fn origin_status(env: &TestEnv, origin: &str) -> Value {
    let st = status(env);
    let origins = st["origins"].as_array().cloned().unwrap_or_default();
    origins
        .iter()
        .find(|o| o["origin"].as_str() == Some(origin))
        .cloned()
        .unwrap_or_else(|| panic!("origin {origin} missing from status.origins: {origins:#?}"))
}

/// Fetches `cids` from the daemon of `env` with Helia (the foreign peer) and asserts every one arrives with exactly
/// `expected` bytes.
#[track_caller]
pub fn assert_helia_fetches(env: &TestEnv, cids: &[String], expected: &[u8]) {
    let out_dir = env.work.join("helia");
    let r = crate::helia_fetch(&crate::HeliaFetch {
        peer: crate::dial_addr(&status(env)),
        cids: cids.to_vec(),
        out_dir: out_dir.clone(),
        timeout_seconds: Some(30),
        ..Default::default()
    });
    for cid in cids {
        let line = r
            .line(cid)
            .unwrap_or_else(|| panic!("no line for {cid}\n{}", r.output.describe()));
        assert_eq!(
            line["ok"],
            Value::Bool(true),
            "{line}\n{}",
            r.output.describe()
        );
        assert!(
            std::fs::read(out_dir.join(cid)).unwrap() == expected,
            "bytes of {cid} differ from the served artifact"
        );
    }
}
