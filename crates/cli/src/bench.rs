//! `pkgseed bench`: creates a synthetic cargo-like cache (seeded RNG, realistic size mix), then measures, in one
//! run, the indexing path against its baseline and prints one table: one-pass DAG + checksum throughput vs plain
//! sha256 of the same files, and the extra disk the index takes per seeded byte; then the daemon rows
//! (`bench_daemon`), the network rows (`bench_net`) and the desktop row (`bench_desktop`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use pkgseed_index::{ArtifactRecord, FileStamp, Index};
use pkgseed_unixfs::{BlockKind, DigestAlgo, PlannedBlock, Profile, MAX_BLOCK_BYTES};
use rand::{Rng, RngCore, SeedableRng};
use sha2::Digest;

/// Alternating rounds of plain sha256 and the one-pass DAG over the in-process cache; each row is the best round.
const HASH_ROUNDS: usize = 3;

pub struct BenchOptions {
    pub artifacts: usize,
    /// Artifacts of the in-process rows' full-size cache (hashing, index); the daemon rows use `artifacts`.
    pub in_process_artifacts: usize,
    pub seed: u64,
    pub work_dir: Option<PathBuf>,
    /// Also run the daemon rows (first scan, restart, new-artifact latency, idle).
    pub daemon: bool,
    /// Cap on the synthetic daemon cache's total size (sizes are scaled down to fit).
    pub daemon_total_bytes: u64,
    /// The daemon rows' synthetic cache.
    pub daemon_ecosystem: crate::bench_daemon::SyntheticEcosystem,
    pub idle_seconds: u64,
    /// The network rows (serving, caps, pause, announcing); `None` leaves them out.
    pub net: Option<crate::bench_net::NetBenchOptions>,
    /// The desktop row; `None` leaves it out.
    pub desktop: Option<crate::bench_desktop::DesktopBenchOptions>,
}

/// One row of the printed table.
pub(crate) struct Row {
    measurement: String,
    value: String,
    baseline: String,
    ratio: String,
}

impl Row {
    pub fn new(measurement: String, value: String, baseline: String, ratio: String) -> Row {
        Row {
            measurement,
            value,
            baseline,
            ratio,
        }
    }

    /// A row that could not be measured here: no figure, and why.
    pub fn skipped(measurement: String, reason: &str) -> Row {
        Row::new(
            measurement,
            "-".into(),
            format!("skipped: {reason}"),
            "-".into(),
        )
    }
}

pub fn run(options: BenchOptions) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let root = options
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let cache_dir = root.join("cache");
    std::fs::create_dir_all(&cache_dir)?;
    let files = generate_cargo_like_cache(&cache_dir, options.in_process_artifacts, options.seed)?;
    let total_bytes: u64 = files.iter().map(|(_, size)| size).sum();
    eprintln!(
        "bench: {} synthetic artifacts, {} bytes in {}",
        files.len(),
        total_bytes,
        cache_dir.display()
    );

    // A first pass warms the page cache so every measurement reads from memory, not from the disk; then plain
    // sha256 and the one-pass DAG alternate, best of HASH_ROUNDS each, so both get the same chances on a machine
    // whose speed drifts (one run of each differed by up to ±0.08x between runs of the same binary).
    time_plain_sha256(&files)?;
    let mut baseline_secs = f64::MAX;
    let mut dag_secs = f64::MAX;
    for _ in 0..HASH_ROUNDS {
        baseline_secs = baseline_secs.min(time_plain_sha256(&files)?);
        dag_secs = dag_secs.min(time_dag_only(&files)?);
    }
    let index = Index::open(&root.join("index.redb"))?;
    // As the engine's first scan does: atomic commits, one flush at the end.
    index.set_bulk_writes(true)?;
    // As the engine's scan writes: several artifacts per transaction.
    let index_start = Instant::now();
    for chunk in files.chunks(pkgseed_engine::INDEX_BATCH_MAX_ARTIFACTS) {
        let batch = chunk
            .iter()
            .map(|(path, _)| describe_one(path))
            .collect::<Result<Vec<_>>>()?;
        for written in index.put_artifacts(batch)? {
            written?;
        }
    }
    index.set_bulk_writes(false)?;
    // As the engine does when a scan is done.
    index.compact_if_grown()?;
    let index_secs = index_start.elapsed().as_secs_f64();

    let mb = total_bytes as f64 / 1e6;
    let index_disk = index.disk_bytes()?;
    let rows = vec![
        Row {
            measurement: "hash throughput: one-pass DAG + sha256 (MB/s)".into(),
            value: format!("{:.0}", mb / dag_secs),
            baseline: format!("{:.0} (plain sha256)", mb / baseline_secs),
            ratio: format!("{:.2}x", baseline_secs / dag_secs),
        },
        Row {
            measurement: "index throughput: DAG + checksum + index write (MB/s)".into(),
            value: format!("{:.0}", mb / index_secs),
            baseline: format!("{:.0} (plain sha256)", mb / baseline_secs),
            ratio: format!("{:.2}x", baseline_secs / index_secs),
        },
        Row {
            measurement: "extra disk per seeded byte (index file, allocated)".into(),
            value: format!("{:.3}%", 100.0 * index_disk as f64 / total_bytes as f64),
            baseline: format!("{} B index / {} B seeded", index_disk, total_bytes),
            ratio: "goal <= 0.5%".into(),
        },
    ];
    let mut rows = rows;
    if options.daemon {
        let daemon_dir = root.join("daemon");
        let figures = crate::bench_daemon::run(
            &crate::bench_daemon::DaemonBenchOptions {
                artifacts: options.artifacts,
                seed: options.seed,
                total_bytes_budget: options.daemon_total_bytes,
                ecosystem: options.daemon_ecosystem,
                idle_seconds: options.idle_seconds,
            },
            &daemon_dir,
        )?;
        rows.extend(daemon_rows(&figures));
    }
    if let Some(net) = &options.net {
        rows.extend(crate::bench_net::rows(net, &root.join("net")));
    }
    if let Some(desktop) = &options.desktop {
        rows.push(crate::bench_desktop::row(desktop, &root.join("desktop")));
    }
    print_table(&rows);
    Ok(())
}

fn daemon_rows(f: &crate::bench_daemon::DaemonFigures) -> Vec<Row> {
    let mb = f.bytes as f64 / 1e6;
    vec![
        Row {
            measurement: format!(
                "first scan, {} {} artifacts ({:.0} MB): wall s",
                f.artifacts, f.ecosystem, mb
            ),
            value: format!("{:.2}", f.scan_wall_secs),
            baseline: format!("{:.2} (plain sha256 of the files)", f.sha256_secs),
            ratio: format!("{:.2}x", f.sha256_secs / f.scan_wall_secs),
        },
        Row {
            measurement: "first scan: CPU s / peak RSS MB".into(),
            value: format!(
                "{:.2} / {:.1}",
                f.scan_cpu_secs,
                f.scan_peak_rss_bytes as f64 / 1e6
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
        Row {
            measurement: "restart to serving: wall s (an indexed artifact fetched)".into(),
            value: format!("{:.2}", f.restart_to_serving_secs),
            baseline: format!("{:.2} (first scan)", f.scan_wall_secs),
            ratio: format!(
                "{:.3}x; goal <= 1 s",
                f.restart_to_serving_secs / f.scan_wall_secs
            ),
        },
        Row {
            measurement: "restart: startup scan re-checked every file: wall s (files rehashed)"
                .into(),
            value: format!(
                "{:.2} ({})",
                f.restart_to_rescan_done_secs, f.restart_files_hashed
            ),
            baseline: format!("{:.2} (first scan)", f.scan_wall_secs),
            ratio: format!(
                "{:.3}x; goal 0 rehashed",
                f.restart_to_rescan_done_secs / f.scan_wall_secs
            ),
        },
        Row {
            measurement: "new artifact written -> served: ms".into(),
            value: format!("{:.0}", f.new_artifact_latency_secs * 1000.0),
            baseline: "goal <= 1000".into(),
            ratio: format!("{:.2}x of goal", f.new_artifact_latency_secs),
        },
        Row {
            measurement: format!("idle over {} s: CPU % of a core / RSS MB", f.idle_seconds),
            value: format!(
                "{:.3} / {:.1}",
                f.idle_cpu_percent,
                f.idle_rss_bytes as f64 / 1e6
            ),
            baseline: "goal <= 0.2 / <= 50".into(),
            ratio: "-".into(),
        },
        Row {
            measurement: "daemon index on disk per seeded byte".into(),
            value: format!(
                "{:.3}%",
                100.0 * f.index_disk_bytes as f64 / f.bytes.max(1) as f64
            ),
            baseline: format!("{} B index", f.index_disk_bytes),
            ratio: "goal <= 0.5%".into(),
        },
    ]
}

/// Crate sizes follow a long tail like a real cargo cache: most are tens of KB, a few are several MB.
fn generate_cargo_like_cache(dir: &Path, count: usize, seed: u64) -> Result<Vec<(PathBuf, u64)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut files = Vec::with_capacity(count);
    let mut buffer = Vec::new();
    for n in 0..count {
        let bucket: f64 = rng.gen();
        let size: u64 = if bucket < 0.70 {
            rng.gen_range(2_000..60_000)
        } else if bucket < 0.95 {
            rng.gen_range(60_000..1_000_000)
        } else {
            rng.gen_range(1_000_000..12_000_000)
        };
        buffer.resize(size as usize, 0);
        rng.fill_bytes(&mut buffer);
        let path = dir.join(format!("synthetic-crate-{n}-0.1.0.crate"));
        std::fs::write(&path, &buffer)?;
        files.push((path, size));
    }
    Ok(files)
}

pub(crate) fn time_plain_sha256(files: &[(PathBuf, u64)]) -> Result<f64> {
    let start = Instant::now();
    let mut buffer = vec![0u8; 1 << 20];
    for (path, _) in files {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        std::hint::black_box(hasher.finalize());
    }
    Ok(start.elapsed().as_secs_f64())
}

fn time_dag_only(files: &[(PathBuf, u64)]) -> Result<f64> {
    let start = Instant::now();
    for (path, _) in files {
        std::hint::black_box(pkgseed_unixfs::dag_of_file(
            path,
            Profile::UnixfsV1_2025,
            false,
        )?);
    }
    Ok(start.elapsed().as_secs_f64())
}

/// What the engine does per public artifact, minus provenance: one read, the DAG and the checksum CID, as the
/// record and blocks an index write takes.
fn describe_one(path: &Path) -> Result<(ArtifactRecord, Vec<PlannedBlock>)> {
    let metadata = std::fs::metadata(path)?;
    let stamp = FileStamp::of(&metadata);
    let dag = pkgseed_unixfs::dag_of_file(path, Profile::UnixfsV1_2025, false)?;
    let mut blocks: Vec<PlannedBlock> = dag.blocks.clone();
    let checksum_cid = if dag.size_bytes <= MAX_BLOCK_BYTES {
        let cid = pkgseed_unixfs::checksum_cid(DigestAlgo::Sha256, &dag.sha256)?;
        blocks.push(PlannedBlock {
            cid,
            kind: BlockKind::WholeFile(DigestAlgo::Sha256),
            offset: 0,
            len: dag.size_bytes,
        });
        Some(cid.to_string())
    } else {
        None
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("file name")?
        .to_string();
    let record = ArtifactRecord {
        id: 0,
        ecosystem: "cargo".into(),
        name,
        version: "0.1.0".into(),
        origin: "bench".into(),
        path: path.to_path_buf(),
        size_bytes: stamp.size_bytes,
        mtime_ns: stamp.mtime_ns,
        inode: stamp.inode,
        root_cid: dag.root.to_string(),
        profile: Profile::UnixfsV1_2025.name().into(),
        checksum_cid,
        registry_checksum: format!("sha256:{}", hex_lower(&dag.sha256)),
        content_range: None,
    };
    Ok((record, blocks))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_table(rows: &[Row]) {
    let widths = [
        rows.iter()
            .map(|r| r.measurement.len())
            .max()
            .unwrap_or(0)
            .max(11),
        rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5),
        rows.iter()
            .map(|r| r.baseline.len())
            .max()
            .unwrap_or(0)
            .max(8),
    ];
    println!(
        "| {:w0$} | {:>w1$} | {:w2$} | ratio |",
        "measurement",
        "value",
        "baseline",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    );
    println!(
        "|{}|{}|{}|-------|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2)
    );
    for row in rows {
        println!(
            "| {:w0$} | {:>w1$} | {:w2$} | {} |",
            row.measurement,
            row.value,
            row.baseline,
            row.ratio,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
}
