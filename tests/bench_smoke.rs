//! A small run of `pkgseed bench` so the benchmark command cannot rot: every row is printed and every figure is a
//! finite, positive number (issue 6). Speed targets are judged in docs/benchmarks.md, never here.

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
    "new artifact written -> served",
    "idle over",
    "daemon index on disk per seeded byte",
];

#[test]
fn bench_prints_every_row_with_sane_figures() {
    let work = tempfile::tempdir().unwrap();
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
    .arg("--work-dir")
    .arg(work.path());
    let out = pkgseed_e2e::run(&mut cmd, Duration::from_secs(300));
    assert!(out.success(), "bench failed:\n{}", out.describe());
    let table: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| measurement"))
        .collect();
    for row in ROWS {
        let line = table
            .iter()
            .find(|l| l.trim_start_matches("| ").starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} row in:\n{}", out.stdout));
        let value = line.split('|').nth(2).unwrap_or("").trim();
        let numbers: Vec<f64> = value
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        assert!(!numbers.is_empty(), "row {row:?} has no figure: {line}");
        for n in &numbers {
            assert!(n.is_finite(), "row {row:?} has a non-finite figure: {line}");
        }
        // Throughputs, times, sizes and RSS are positive; only the rehash count and idle CPU may be zero.
        assert!(
            numbers[0] > 0.0 || row.starts_with("idle over"),
            "row {row:?} has a zero figure: {line}"
        );
    }
    let restart = table
        .iter()
        .find(|l| l.contains("restart to serving"))
        .unwrap();
    assert!(
        restart.contains("(0)"),
        "a restart rehashed files: {restart}"
    );
}
