//! Interop: our root CIDs and block sets must equal what the reference JS importer (`ipfs-unixfs-importer`, run by
//! `tests/js/unixfs-cids.mjs`) makes for the same files, at the sizes where chunking and layout change shape, and
//! for every crate in this machine's cargo cache. Needs node and `tests/js/node_modules`; fails (never skips)
//! without them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use pkgseed_unixfs::{
    block_matches_cid, dag_of_file, pb_leaf_block, BlockKind, DagBuilder, FileDag, Profile,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

fn reference_script() -> PathBuf {
    let root = repo_root();
    let script = root.join("tests/js/unixfs-cids.mjs");
    assert!(
        script.is_file(),
        "reference script missing: {}",
        script.display()
    );
    for package in ["ipfs-unixfs-importer", "blockstore-core"] {
        let package_dir = root.join("tests/js/node_modules").join(package);
        assert!(
            package_dir.is_dir(),
            "the reference importer needs {} — run `npm ci` in tests/js (it is missing, so this interop test fails \
             rather than skipping)",
            package_dir.display()
        );
    }
    match Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`node --version` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            panic!("node (Node.js ≥ 20) is required to run the reference importer: {error}")
        }
    }
    script
}

/// What the reference made for one file.
#[derive(Debug)]
struct ReferenceDag {
    root: String,
    blocks: BTreeSet<String>,
}

/// Runs the reference importer over `paths` and returns one result per path, in order.
fn reference_dags(
    profile: Profile,
    layout_args: &[String],
    paths: &[PathBuf],
) -> Vec<ReferenceDag> {
    let mut command = Command::new("node");
    command
        .current_dir(repo_root())
        .arg(reference_script())
        .arg("--blocks")
        .args(layout_args)
        .arg(profile.name())
        .args(paths);
    let output = command.output().expect("node runs");
    assert!(
        output.status.success(),
        "reference importer failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("reference output is UTF-8");
    let mut dags: Vec<ReferenceDag> = Vec::new();
    for line in stdout.lines() {
        if let Some(block_cid) = line.strip_prefix("block ") {
            dags.last_mut()
                .expect("a block line follows a root line")
                .blocks
                .insert(block_cid.to_string());
        } else {
            let (root, path) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("unexpected reference line {line:?}"));
            let expected_path = &paths[dags.len()];
            assert_eq!(
                Path::new(path),
                expected_path.as_path(),
                "reference output is in input order"
            );
            dags.push(ReferenceDag {
                root: root.to_string(),
                blocks: BTreeSet::new(),
            });
        }
    }
    assert_eq!(dags.len(), paths.len(), "one reference result per file");
    dags
}

fn our_block_cids(dag: &FileDag) -> BTreeSet<String> {
    dag.blocks
        .iter()
        .map(|block| block.cid.to_string())
        .collect()
}

/// Re-reads every block we planned from the file (or the index, for interior nodes) and checks it hashes to its CID.
fn assert_blocks_rebuild_from_file(dag: &FileDag, path: &Path) {
    let file = std::fs::read(path).unwrap();
    for block in &dag.blocks {
        let range = block.offset as usize..(block.offset + block.len) as usize;
        let block_bytes = match &block.kind {
            BlockKind::RawLeaf => file[range].to_vec(),
            BlockKind::PbLeaf => pb_leaf_block(&file[range]),
            BlockKind::Interior(node_bytes) => node_bytes.clone(),
            BlockKind::WholeFile(_) => panic!("a DAG holds no whole-file blocks"),
        };
        assert!(
            block_matches_cid(&block.cid, &block_bytes),
            "block {} of {}",
            block.cid,
            path.display()
        );
    }
}

/// Compares our DAGs with the reference for `paths`: roots always, block sets always (they are only CIDs).
fn assert_matches_reference(profile: Profile, paths: &[PathBuf]) {
    let reference = reference_dags(profile, &[], paths);
    for (path, reference_dag) in paths.iter().zip(&reference) {
        let ours = dag_of_file(path, profile, false).unwrap();
        assert_eq!(
            ours.root.to_string(),
            reference_dag.root,
            "{} root of {}",
            profile.name(),
            path.display()
        );
        let our_blocks = our_block_cids(&ours);
        assert_eq!(
            our_blocks.len(),
            ours.blocks.len(),
            "our blocks are distinct"
        );
        assert_eq!(
            our_blocks,
            reference_dag.blocks,
            "{} blocks of {}",
            profile.name(),
            path.display()
        );
        assert_eq!(ours.size_bytes, std::fs::metadata(path).unwrap().len());
        if ours.size_bytes <= 64 * MIB {
            assert_blocks_rebuild_from_file(&ours, path);
        }
    }
}

/// Seeded xorshift64* byte stream: reproducible, incompressible-looking, so no two chunks repeat.
struct PatternBytes {
    state: u64,
}

impl PatternBytes {
    fn new(seed: u64) -> PatternBytes {
        PatternBytes {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }
    fn fill(&mut self, buffer: &mut [u8]) {
        for word in buffer.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let value = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&value[..word.len()]);
        }
    }
}

/// Writes `len_bytes` of pattern data.
fn write_pattern_file(path: &Path, len_bytes: u64, seed: u64) {
    let mut writer = BufWriter::new(File::create(path).unwrap());
    let mut pattern = PatternBytes::new(seed);
    let mut buffer = vec![0u8; MIB as usize];
    let mut remaining_bytes = len_bytes;
    while remaining_bytes > 0 {
        let piece_len = remaining_bytes.min(MIB) as usize;
        pattern.fill(&mut buffer[..piece_len]);
        writer.write_all(&buffer[..piece_len]).unwrap();
        remaining_bytes -= piece_len as u64;
    }
    writer.flush().unwrap();
}

/// Writes a sparse file of `len_bytes`: zeros, except 64 pattern bytes at a chunk-dependent spot in every
/// `mark_every_bytes`, so every chunk differs while the file takes almost no disk.
fn write_sparse_marked_file(path: &Path, len_bytes: u64, mark_every_bytes: u64, seed: u64) {
    let mut file = File::create(path).unwrap();
    file.set_len(len_bytes).unwrap();
    let mut pattern = PatternBytes::new(seed);
    let mut mark = [0u8; 64];
    let mut mark_index = 0u64;
    while mark_index * mark_every_bytes < len_bytes {
        let spot =
            mark_index * mark_every_bytes + (mark_index * 4099) % (mark_every_bytes - 64).max(1);
        let mark_len = (len_bytes.saturating_sub(spot)).min(64) as usize;
        if mark_len > 0 {
            pattern.fill(&mut mark);
            file.seek(SeekFrom::Start(spot)).unwrap();
            file.write_all(&mark[..mark_len]).unwrap();
        }
        mark_index += 1;
    }
    // The last byte is marked too, so a 1-byte final chunk is not all zeros.
    if len_bytes > 0 {
        file.seek(SeekFrom::Start(len_bytes - 1)).unwrap();
        file.write_all(&[0xa5]).unwrap();
    }
}

fn sized_pattern_files(directory: &Path, prefix: &str, sizes_bytes: &[u64]) -> Vec<PathBuf> {
    sizes_bytes
        .iter()
        .map(|&size_bytes| {
            let path = directory.join(format!("{prefix}-{size_bytes}.bin"));
            write_pattern_file(&path, size_bytes, size_bytes ^ 0x5eed);
            path
        })
        .collect()
}

#[test]
fn v1_2025_boundary_sizes_match_reference() {
    let directory = tempfile::tempdir().unwrap();
    let sizes_bytes = [
        0,
        1,
        5,
        MIB - 1,
        MIB,
        MIB + 1,
        2 * MIB,
        2 * MIB + 1,
        3 * MIB + 17,
    ];
    let paths = sized_pattern_files(directory.path(), "v1", &sizes_bytes);
    assert_matches_reference(Profile::UnixfsV1_2025, &paths);
}

#[test]
fn v0_2015_boundary_sizes_match_reference() {
    let directory = tempfile::tempdir().unwrap();
    let chunk = 256 * KIB;
    let mut paths = sized_pattern_files(
        directory.path(),
        "v0",
        &[
            0,
            1,
            5,
            chunk - 1,
            chunk,
            chunk + 1,
            MIB - 1,
            MIB,
            MIB + 1,
            2 * MIB,
            2 * MIB + 1,
        ],
    );
    // 174 chunks fill one node; 175 need a second level. Sparse so the test stays disk-light.
    for size_bytes in [
        174 * chunk - 1,
        174 * chunk,
        174 * chunk + 1,
        175 * chunk,
        348 * chunk + 1,
    ] {
        let path = directory.path().join(format!("v0-sparse-{size_bytes}.bin"));
        write_sparse_marked_file(&path, size_bytes, chunk, size_bytes);
        paths.push(path);
    }
    assert_matches_reference(Profile::UnixfsV0_2015, &paths);
}

/// 1024 chunks fill one v1 node, 1025 need a second level: 1 GiB files, sparse, read in full by both sides.
#[test]
fn v1_2025_one_gib_files_match_reference() {
    let directory = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = [GIB - 1, GIB, GIB + 1]
        .into_iter()
        .map(|size_bytes| {
            let path = directory.path().join(format!("v1-sparse-{size_bytes}.bin"));
            write_sparse_marked_file(&path, size_bytes, MIB, size_bytes);
            path
        })
        .collect();
    let started = std::time::Instant::now();
    assert_matches_reference(Profile::UnixfsV1_2025, &paths);
    eprintln!(
        "3 GiB compared with the reference in {:.1?}",
        started.elapsed()
    );
}

/// Tiny chunks and narrow nodes give deep trees from small files, exercising the balanced layout's upper levels the
/// real profiles only reach with many GiB. Uses the test-only layout hooks on both sides.
#[test]
fn deep_trees_from_small_layouts_match_reference() {
    let directory = tempfile::tempdir().unwrap();
    let sizes_bytes = [
        0, 1, 2, 3, 4, 5, 9, 10, 16, 17, 47, 48, 49, 100, 431, 432, 433, 1000, 4000, 4097,
    ];
    let paths = sized_pattern_files(directory.path(), "small", &sizes_bytes);
    for profile in Profile::ALL {
        for (chunk_size_bytes, max_links_per_node) in [(1u64, 2usize), (16, 3), (7, 5)] {
            let layout_args = vec![
                "--chunk-bytes".to_string(),
                chunk_size_bytes.to_string(),
                "--max-links".to_string(),
                max_links_per_node.to_string(),
            ];
            let reference = reference_dags(profile, &layout_args, &paths);
            for (path, reference_dag) in paths.iter().zip(&reference) {
                let mut builder = DagBuilder::with_layout_for_tests(
                    profile,
                    chunk_size_bytes,
                    max_links_per_node,
                    false,
                );
                builder.update(&std::fs::read(path).unwrap());
                let ours = builder.finish();
                let context = format!(
                    "{} chunk {chunk_size_bytes} links {max_links_per_node} {}",
                    profile.name(),
                    path.display()
                );
                assert_eq!(ours.root.to_string(), reference_dag.root, "root, {context}");
                assert_eq!(
                    our_block_cids(&ours),
                    reference_dag.blocks,
                    "blocks, {context}"
                );
                assert_blocks_rebuild_from_file(&ours, path);
            }
        }
    }
}

fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(cargo_home) => PathBuf::from(cargo_home),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo"),
    }
}

/// Every `*.crate` in `$CARGO_HOME/registry/cache/*/` — real artifacts of the kind pkgseed seeds.
#[test]
fn cached_crates_match_reference() {
    let cache_dir = cargo_home().join("registry/cache");
    let mut crate_paths = Vec::new();
    if let Ok(index_dirs) = std::fs::read_dir(&cache_dir) {
        for index_dir in index_dirs.flatten() {
            let Ok(entries) = std::fs::read_dir(index_dir.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path
                    .extension()
                    .is_some_and(|extension| extension == "crate")
                    && path.is_file()
                {
                    crate_paths.push(path);
                }
            }
        }
    }
    crate_paths.sort();
    if crate_paths.is_empty() {
        eprintln!(
            "no *.crate under {}; nothing to compare",
            cache_dir.display()
        );
        return;
    }
    for profile in Profile::ALL {
        assert_matches_reference(profile, &crate_paths);
    }
    eprintln!(
        "{} cached crates match the reference in both profiles",
        crate_paths.len()
    );
}
