//! A small run of `pkgseed bench` so the benchmark command cannot rot: every row is printed and every figure is a
//! finite, positive number (issue 6). Speed targets are judged in docs/benchmarks.md, never here.
//!
//! The network rows (serving, cap accuracy, pause latency, announcing) run with a small file, 1 s cap windows and a
//! few keys; they must have figures whenever tests/js has its node_modules (as the other e2e tests require). The
//! desktop row runs when `pkgseed-desktop` sits next to the binary under test and Xvfb is installed; otherwise it
//! must say why it was skipped. A row that failed is never accepted.

use std::process::Command;
use std::time::Duration;

/// The rows the table must have, by the start of their label.
const ROWS: &[&str] = &[
    "hash throughput",
    "index throughput",
    "extra disk per seeded byte",
    "first scan, ",
    "first scan: CPU s / peak RSS MB",
    "restart to serving",
    "restart: startup scan re-checked every file",
    "new artifact written -> served",
    "idle over",
    "daemon index on disk per seeded byte",
];

/// Rows that need node and tests/js.
const NET_ROWS: &[&str] = &[
    "serving 4 MB to a Helia peer",
    "upload cap 256 KiB/s",
    "upload cap 1 MiB/s",
    "upload cap 10 MiB/s",
    "pause -> last block byte out",
    "announcing: keys stored at DHT peers",
];

const DESKTOP_ROW: &str = "desktop tray app, dashboard closed";

/// This checkout's tests/js (the bench's new tools live there).
fn js_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// The figures in a row's value column.
fn figures(line: &str) -> Vec<f64> {
    let value = line.split('|').nth(2).unwrap_or("").trim();
    value
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}

fn assert_sane(row: &str, line: &str, may_be_zero: bool) {
    let numbers = figures(line);
    assert!(!numbers.is_empty(), "row {row:?} has no figure: {line}");
    for n in &numbers {
        assert!(n.is_finite(), "row {row:?} has a non-finite figure: {line}");
    }
    assert!(
        numbers[0] > 0.0 || may_be_zero,
        "row {row:?} has a zero figure: {line}"
    );
}

/// `pkgseed bench` over a small cache (60 artifacts, 30 MB for the daemon rows, 2 s idle) in `work`, with `more`.
fn small_bench(work: &std::path::Path, more: &[&str]) -> Command {
    let mut cmd = Command::new(pkgseed_e2e::pkgseed_bin());
    cmd.args([
        "bench",
        "--artifacts",
        "60",
        "--idle-seconds",
        "2",
        "--daemon-total-bytes",
        "30000000",
    ])
    .args(more)
    .arg("--work-dir")
    .arg(work);
    cmd
}

#[test]
fn bench_prints_every_row_with_sane_figures() {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = small_bench(
        work.path(),
        &[
            "--serve-bytes",
            "4000000",
            "--cap-window-seconds",
            "1",
            "--announce-artifacts",
            "40",
            "--dht-nodes",
            "3",
            "--desktop-settle-seconds",
            "2",
        ],
    );
    cmd.arg("--js-dir")
        .arg(js_dir())
        .env("NODE", pkgseed_e2e::node_bin());
    let out = pkgseed_e2e::run(&mut cmd, Duration::from_secs(900));
    assert!(out.success(), "bench failed:\n{}", out.describe());
    eprintln!("{}", out.stdout);
    let table: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| measurement"))
        .collect();
    let find = |row: &str| -> &str {
        table
            .iter()
            .find(|l| l.trim_start_matches("| ").starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} row in:\n{}", out.stdout))
    };
    for row in ROWS {
        // Throughputs, times, sizes and RSS are positive; only the rehash count and idle CPU may be zero.
        assert_sane(row, find(row), row.starts_with("idle over"));
    }
    let restart = find("restart: startup scan re-checked every file");
    assert!(
        restart.contains("(0)"),
        "a restart rehashed files: {restart}"
    );

    let js_installed = js_dir().join("node_modules/helia/package.json").is_file();
    for row in NET_ROWS {
        let line = find(row);
        if js_installed {
            assert_sane(row, line, false);
        } else {
            assert!(line.contains("skipped: "), "{line}");
        }
        assert!(!line.contains("failed:"), "row {row:?} failed: {line}");
    }
    for rate in [
        "upload cap 256 KiB/s",
        "upload cap 1 MiB/s",
        "upload cap 10 MiB/s",
    ] {
        if js_installed {
            // Loose: a 1 s window on a shared machine. The ±5 % goal is judged over 10 s in docs/benchmarks.md.
            let ratio = figures(find(rate))[0];
            assert!(
                (0.7..1.3).contains(&ratio),
                "{rate}: achieved/configured {ratio}"
            );
        }
    }
    if js_installed {
        let announcing = find("announcing: keys stored at DHT peers");
        assert!(
            announcing.contains("all ") && announcing.contains(" keys in "),
            "not every announced key reached the DHT nodes: {announcing}"
        );
    }

    let desktop = find(DESKTOP_ROW);
    assert!(!desktop.contains("failed:"), "{desktop}");
    if !desktop.contains("skipped: ") {
        assert_sane(DESKTOP_ROW, desktop, false);
    }
}

/// The daemon rows over an npm-like cache (npm's `_cacache` layout): every artifact is seeded (the bench fails
/// otherwise), nothing is rehashed after a restart, and the rows have sane figures.
#[test]
fn bench_daemon_rows_run_over_an_npm_like_cache() {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = small_bench(
        work.path(),
        &["--daemon-ecosystem", "npm", "--no-net", "--no-desktop"],
    );
    let out = pkgseed_e2e::run(&mut cmd, Duration::from_secs(600));
    assert!(out.success(), "bench failed:\n{}", out.describe());
    eprintln!("{}", out.stdout);
    let first_scan = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| first scan, "))
        .unwrap_or_else(|| panic!("no first-scan row in:\n{}", out.stdout));
    assert!(first_scan.contains(" 60 npm artifacts "), "{first_scan}");
    assert_sane("first scan, ", first_scan, false);
    for row in [
        "restart to serving",
        "new artifact written -> served",
        "daemon index on disk per seeded byte",
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start_matches("| ").starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} row in:\n{}", out.stdout));
        assert_sane(row, line, false);
    }
    let restart = out
        .stdout
        .lines()
        .find(|l| l.contains("restart: startup scan re-checked every file"))
        .expect("restart row");
    assert!(
        restart.contains("(0)"),
        "a restart rehashed files: {restart}"
    );
}
