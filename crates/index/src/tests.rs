//! Unit tests for the index and the zero-copy block store. Tests marked "needs unixfs" call
//! `pkgseed_unixfs::block_matches_cid` / `pb_leaf_block` (through `read_block`).

use std::fs::OpenOptions;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cid::multihash::Multihash;
use pkgseed_unixfs::DigestAlgo;
use sha2::{Digest, Sha256, Sha512};

use super::*;

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const MIB: u64 = 1024 * 1024;

fn sha256_mh(bytes: &[u8]) -> Multihash<64> {
    Multihash::wrap(0x12, &Sha256::digest(bytes)).unwrap()
}
fn raw_cid(bytes: &[u8]) -> Cid {
    Cid::new_v1(RAW, sha256_mh(bytes))
}
fn pb_cid(bytes: &[u8]) -> Cid {
    Cid::new_v1(DAG_PB, sha256_mh(bytes))
}
fn sha512_raw_cid(bytes: &[u8]) -> Cid {
    Cid::new_v1(RAW, Multihash::wrap(0x13, &Sha512::digest(bytes)).unwrap())
}

/// Deterministic, non-repeating file contents.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 7) as u8 ^ seed)
        .collect()
}

fn record_for(path: &Path, ecosystem: &str, name: &str) -> ArtifactRecord {
    let stamp = FileStamp::of_path(path).unwrap_or(FileStamp {
        size_bytes: 0,
        mtime_ns: 0,
        inode: 0,
    });
    ArtifactRecord {
        id: 0,
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: "1.0.0".into(),
        origin: "test-origin".into(),
        path: path.to_path_buf(),
        size_bytes: stamp.size_bytes,
        mtime_ns: stamp.mtime_ns,
        inode: stamp.inode,
        root_cid: "root".into(),
        profile: "unixfs-v1-2025".into(),
        checksum_cid: None,
        registry_checksum: "sha256:00".into(),
        content_range: None,
    }
}

/// Raw leaves of `chunk` bytes over `bytes`.
fn raw_leaves(bytes: &[u8], chunk: usize) -> Vec<PlannedBlock> {
    bytes
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| PlannedBlock {
            cid: raw_cid(c),
            kind: BlockKind::RawLeaf,
            offset: (i * chunk) as u64,
            len: c.len() as u64,
        })
        .collect()
}

/// A raw leaf claiming the range `offset..offset + len` (for ranges the file does not have).
fn raw_leaf_at(label: &[u8], offset: u64, len: u64) -> PlannedBlock {
    PlannedBlock {
        cid: raw_cid(label),
        kind: BlockKind::RawLeaf,
        offset,
        len,
    }
}

fn interior(bytes: Vec<u8>) -> PlannedBlock {
    PlannedBlock {
        cid: pb_cid(&bytes),
        kind: BlockKind::Interior(bytes),
        offset: 0,
        len: 0,
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open_index(dir: &Path) -> Index {
    Index::open(&dir.join("index.redb")).unwrap()
}

fn stored_interior(index: &Index, cid: &Cid) -> Option<Vec<u8>> {
    let txn = index.begin_read().unwrap();
    let table = txn.open_table(INTERIOR).unwrap();
    let found = table.get(cid.to_bytes().as_slice()).unwrap();
    found.map(|v| v.value().to_vec())
}

fn assert_stale(result: Result<Option<bytes::Bytes>, BlockReadError>, artifact: ArtifactId) {
    match result {
        Err(BlockReadError::Stale {
            artifact: got,
            reason,
        }) => {
            assert_eq!(
                got, artifact,
                "stale reported for the wrong artifact: {reason}"
            );
        }
        Err(other) => panic!("expected Stale, got error {other}"),
        Ok(Some(bytes)) => panic!("expected Stale, got {} bytes", bytes.len()),
        Ok(None) => panic!("expected Stale, got None"),
    }
}

#[test]
fn index_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Index>();
}

#[test]
fn put_get_replace_remove() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let v1 = pattern(3000, 1);
    let file = write_file(dir.path(), "a.crate", &v1);
    let blocks_v1 = {
        let mut b = raw_leaves(&v1, 1024);
        b.push(interior(b"interior v1".to_vec()));
        b
    };
    let id1 = index
        .put_artifact(record_for(&file, "cargo", "a"), &blocks_v1)
        .unwrap();

    let got = index
        .artifact_by_path(&file)
        .unwrap()
        .expect("indexed by path");
    assert_eq!(got.id, id1);
    assert_eq!(got.name, "a");
    assert_eq!(got.size_bytes, 3000);
    assert_eq!(index.artifact(id1).unwrap(), Some(got.clone()));
    assert_eq!(index.artifacts().unwrap(), vec![got.clone()]);
    assert_eq!(index.artifact_count().unwrap(), 1);
    for block in &blocks_v1 {
        assert!(index.has_block(&block.cid).unwrap());
    }
    let mut cids: Vec<Cid> = blocks_v1.iter().map(|b| b.cid).collect();
    cids.sort_by_key(|c| c.to_bytes());
    assert_eq!(index.block_cids_of(id1).unwrap(), cids);
    assert_eq!(
        index.artifacts_with_block(&blocks_v1[0].cid).unwrap(),
        vec![id1]
    );

    // Replace: same path, new contents.
    let v2 = pattern(2500, 2);
    std::fs::write(&file, &v2).unwrap();
    let mut blocks_v2 = raw_leaves(&v2, 1024);
    blocks_v2.push(interior(b"interior v2".to_vec()));
    let mut rec2 = record_for(&file, "cargo", "a");
    rec2.version = "2.0.0".into();
    let id2 = index.put_artifact(rec2, &blocks_v2).unwrap();
    assert_ne!(id1, id2, "a replacement gets a fresh id");
    assert_eq!(index.artifact(id1).unwrap(), None);
    assert!(index.block_cids_of(id1).unwrap().is_empty());
    let got2 = index.artifact_by_path(&file).unwrap().unwrap();
    assert_eq!(
        (got2.id, got2.version.as_str(), got2.size_bytes),
        (id2, "2.0.0", 2500)
    );
    assert_eq!(index.artifacts().unwrap().len(), 1);
    for block in &blocks_v1 {
        assert!(
            !index.has_block(&block.cid).unwrap(),
            "old block {} survived replacement",
            block.cid
        );
    }
    for block in &blocks_v2 {
        assert!(index.has_block(&block.cid).unwrap());
    }
    assert_eq!(
        stored_interior(&index, &blocks_v1.last().unwrap().cid),
        None
    );
    assert_eq!(
        stored_interior(&index, &blocks_v2.last().unwrap().cid),
        Some(b"interior v2".to_vec())
    );

    // Remove.
    let removed = index
        .remove_artifact(id2)
        .unwrap()
        .expect("record returned");
    assert_eq!(removed, got2);
    assert_eq!(index.remove_artifact(id2).unwrap(), None);
    assert_eq!(index.artifact_by_path(&file).unwrap(), None);
    assert!(index.artifacts().unwrap().is_empty());
    for block in &blocks_v2 {
        assert!(!index.has_block(&block.cid).unwrap());
    }
    assert_eq!(
        stored_interior(&index, &blocks_v2.last().unwrap().cid),
        None
    );
    assert!(index.read_block(&blocks_v2[0].cid).unwrap().is_none());
}

#[test]
fn reindexing_the_same_blocks_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(5000, 3);
    let file = write_file(dir.path(), "same.tgz", &bytes);
    let mut blocks = raw_leaves(&bytes, 2048);
    blocks.push(interior(b"node".to_vec()));
    let id1 = index
        .put_artifact(record_for(&file, "npm", "same"), &blocks)
        .unwrap();
    let id2 = index
        .put_artifact(record_for(&file, "npm", "same"), &blocks)
        .unwrap();
    assert!(id2 > id1);
    for block in &blocks {
        assert!(index.has_block(&block.cid).unwrap());
        assert_eq!(index.artifacts_with_block(&block.cid).unwrap(), vec![id2]);
    }
    assert_eq!(
        stored_interior(&index, &blocks.last().unwrap().cid),
        Some(b"node".to_vec())
    );
}

#[test]
fn shared_cid_survives_removal_of_one_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let shared = pattern(4096, 7);
    let a = write_file(dir.path(), "cache-a.crate", &shared);
    let b = write_file(dir.path(), "cache-b.crate", &shared);
    let mut blocks = raw_leaves(&shared, 1024);
    let node = interior(b"shared interior".to_vec());
    blocks.push(node.clone());
    let id_a = index
        .put_artifact(record_for(&a, "cargo", "x"), &blocks)
        .unwrap();
    let id_b = index
        .put_artifact(record_for(&b, "cargo", "x"), &blocks)
        .unwrap();
    assert_eq!(
        index.artifacts_with_block(&blocks[0].cid).unwrap(),
        vec![id_a, id_b]
    );

    index.remove_artifact(id_a).unwrap().unwrap();
    for block in &blocks {
        assert!(
            index.has_block(&block.cid).unwrap(),
            "{} lost with the other artifact",
            block.cid
        );
        assert_eq!(index.artifacts_with_block(&block.cid).unwrap(), vec![id_b]);
    }
    assert_eq!(
        stored_interior(&index, &node.cid),
        Some(b"shared interior".to_vec())
    );
    assert_eq!(index.block_cids_of(id_b).unwrap().len(), blocks.len());

    index.remove_artifact(id_b).unwrap().unwrap();
    for block in &blocks {
        assert!(!index.has_block(&block.cid).unwrap());
    }
    assert_eq!(stored_interior(&index, &node.cid), None);
}

#[test]
fn reopen_keeps_everything_and_never_reuses_ids() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = pattern(3000, 9);
    let file = write_file(dir.path(), "p.whl", &bytes);
    let mut blocks = raw_leaves(&bytes, 1000);
    blocks.push(interior(b"persisted".to_vec()));
    let mut record = record_for(&file, "pip", "p");
    record.mtime_ns = -1_234_567_890_123; // before the epoch
    record.checksum_cid = Some("bafkrei-checksum".into());
    let (id, saved) = {
        let index = open_index(dir.path());
        let id = index.put_artifact(record, &blocks).unwrap();
        let other = write_file(dir.path(), "q.whl", b"q");
        let id_q = index
            .put_artifact(record_for(&other, "pip", "q"), &raw_leaves(b"q", 1))
            .unwrap();
        index.remove_artifact(id_q).unwrap();
        (id, index.artifacts().unwrap())
    };
    let index = open_index(dir.path());
    assert_eq!(index.artifacts().unwrap(), saved);
    assert_eq!(saved[0].mtime_ns, -1_234_567_890_123);
    assert_eq!(index.artifact_by_path(&file).unwrap().unwrap().id, id);
    for block in &blocks {
        assert!(index.has_block(&block.cid).unwrap());
    }
    assert_eq!(
        stored_interior(&index, &blocks.last().unwrap().cid),
        Some(b"persisted".to_vec())
    );
    let next = index
        .put_artifact(record_for(&dir.path().join("r.whl"), "pip", "r"), &[])
        .unwrap();
    assert!(
        next > id + 1,
        "ids must not be reused after reopen: {next} after {id} and a removed id"
    );
}

#[test]
fn count_by_ecosystem_sums_counts_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    for (name, eco, size) in [("a", "cargo", 10usize), ("b", "cargo", 20), ("c", "npm", 5)] {
        let path = write_file(dir.path(), name, &pattern(size, 0));
        index
            .put_artifact(record_for(&path, eco, name), &[])
            .unwrap();
    }
    let counts = index.count_by_ecosystem().unwrap();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts["cargo"], (2, 30));
    assert_eq!(counts["npm"], (1, 5));
}

/// The totals every status reads are kept in step by puts, replacements and removals, and an index written
/// before the totals table existed gets them counted when it is opened.
#[test]
fn ecosystem_totals_follow_writes_and_are_filled_for_older_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let a = write_file(dir.path(), "a", &pattern(10, 0));
    let b = write_file(dir.path(), "b", &pattern(20, 0));
    let c = write_file(dir.path(), "c", &pattern(5, 0));
    index
        .put_artifact(record_for(&a, "cargo", "a"), &[])
        .unwrap();
    let b_id = index
        .put_artifact(record_for(&b, "cargo", "b"), &[])
        .unwrap();
    index.put_artifact(record_for(&c, "npm", "c"), &[]).unwrap();
    // Replacing the same path (the file grew) counts it once, with its new size.
    std::fs::write(&a, pattern(50, 1)).unwrap();
    index
        .put_artifact(record_for(&a, "cargo", "a"), &[])
        .unwrap();
    assert_eq!(index.count_by_ecosystem().unwrap()["cargo"], (2, 70));
    index.remove_artifact(b_id).unwrap();
    let counts = index.count_by_ecosystem().unwrap();
    assert_eq!(counts["cargo"], (1, 50));
    assert_eq!(counts["npm"], (1, 5));
    let c_id = index.artifact_by_path(&c).unwrap().unwrap().id;
    index.remove_artifact(c_id).unwrap();
    assert!(!index.count_by_ecosystem().unwrap().contains_key("npm"));
    index.put_artifact(record_for(&c, "npm", "c"), &[]).unwrap();
    drop(index);

    // An index from before the totals table: drop it, reopen, and the totals are counted from the records.
    {
        let db = redb::Database::open(dir.path().join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(ECOSYSTEM_TOTALS).unwrap());
        txn.commit().unwrap();
    }
    let index = open_index(dir.path());
    let counts = index.count_by_ecosystem().unwrap();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts["cargo"], (1, 50));
    assert_eq!(counts["npm"], (1, 5));
}

#[test]
fn indexed_paths_lists_each_current_path_once_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let a = write_file(dir.path(), "a", &pattern(10, 0));
    let b = write_file(dir.path(), "b", &pattern(20, 0));
    let a_id = index
        .put_artifact(record_for(&a, "cargo", "a"), &[])
        .unwrap();
    index
        .put_artifact(record_for(&b, "cargo", "b"), &[])
        .unwrap();
    // A replacement keeps one entry for its path, under the new id.
    let b_id = index
        .put_artifact(record_for(&b, "cargo", "b"), &[])
        .unwrap();
    assert_eq!(
        index.indexed_paths().unwrap(),
        vec![(a.clone(), a_id), (b.clone(), b_id)]
    );
    index.remove_artifact(a_id).unwrap();
    assert_eq!(index.indexed_paths().unwrap(), vec![(b, b_id)]);
}

#[test]
fn artifacts_after_pages_through_every_artifact_once() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let mut ids = Vec::new();
    for n in 0..7 {
        let path = write_file(dir.path(), &format!("f{n}"), &pattern(10 + n, 1));
        ids.push(
            index
                .put_artifact(record_for(&path, "cargo", &format!("f{n}")), &[])
                .unwrap(),
        );
    }
    index.remove_artifact(ids.remove(3)).unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = index.artifacts_after(after, 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page.iter().map(|record| record.id));
    }
    // Table order is not id order (the ids are scattered over the table), but every artifact comes once.
    assert_ne!(paged, ids);
    let mut sorted = paged.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ids);
    let all: Vec<ArtifactId> = index.artifacts().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(all, ids, "artifacts() is in id order");
    let last = *paged.last().unwrap();
    assert!(index.artifacts_after(Some(last), 2).unwrap().is_empty());
}

#[test]
fn scattered_ids_are_a_bijection_that_spreads_consecutive_ids() {
    for id in (0..10_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 63, 0x0123_4567_89ab_cdef]) {
        assert_eq!(ScatteredId::unmix(ScatteredId::mix(id)), id, "{id}");
    }
    // Consecutive ids fall into all 16 sixteenths of the key space, not next to each other.
    let mut sixteenths = std::collections::HashSet::new();
    for id in 1..=64u64 {
        sixteenths.insert(ScatteredId::mix(id) >> 60);
    }
    assert_eq!(sixteenths.len(), 16);
}

#[test]
fn rejects_block_ranges_outside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let path = write_file(dir.path(), "small", &pattern(100, 0));
    let bad = raw_leaf_at(b"x", 90, 20);
    let err = index
        .put_artifact(record_for(&path, "cargo", "small"), &[bad])
        .unwrap_err();
    assert!(matches!(err, IndexError::Invalid(_)), "{err}");
    let overflow = raw_leaf_at(b"y", u64::MAX, 2);
    assert!(index
        .put_artifact(record_for(&path, "cargo", "small"), &[overflow])
        .is_err());
    assert!(
        index.artifacts().unwrap().is_empty(),
        "nothing is written on a rejected put"
    );
}

#[test]
fn a_batch_is_written_in_one_transaction_and_skips_only_invalid_entries() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let a_bytes = pattern(5000, 1);
    let b_bytes = pattern(3000, 2);
    let a = write_file(dir.path(), "a.crate", &a_bytes);
    let b = write_file(dir.path(), "b.crate", &b_bytes);
    let bad = raw_leaf_at(b"z", 2990, 20);
    let ids = index
        .put_artifacts(vec![
            (record_for(&a, "cargo", "a"), raw_leaves(&a_bytes, 4096)),
            (record_for(&b, "cargo", "b-invalid"), vec![bad]),
            (record_for(&b, "cargo", "b"), raw_leaves(&b_bytes, 1024)),
            // A later entry for the same path replaces the earlier one, inside the batch.
            (record_for(&a, "cargo", "a2"), raw_leaves(&a_bytes, 2048)),
        ])
        .unwrap();
    assert!(matches!(ids[1], Err(IndexError::Invalid(_))));
    let (first_a, b_id, a_id) = (
        *ids[0].as_ref().unwrap(),
        *ids[2].as_ref().unwrap(),
        *ids[3].as_ref().unwrap(),
    );
    assert!(
        index.artifact(first_a).unwrap().is_none(),
        "replaced in the batch"
    );
    assert_eq!(index.artifact_by_path(&a).unwrap().unwrap().id, a_id);
    assert_eq!(index.artifact_by_path(&a).unwrap().unwrap().name, "a2");
    assert_eq!(index.artifact_by_path(&b).unwrap().unwrap().id, b_id);
    assert_eq!(index.artifact_count().unwrap(), 2);
    assert_eq!(
        index.count_by_ecosystem().unwrap()["cargo"],
        (2, 8000),
        "totals follow the batch"
    );
    for block in raw_leaves(&a_bytes, 2048)
        .iter()
        .chain(&raw_leaves(&b_bytes, 1024))
    {
        assert!(index.read_block(&block.cid).unwrap().is_some());
    }
    // Blocks of the replaced entry that the replacement does not share are gone.
    assert!(!index.has_block(&raw_leaves(&a_bytes, 4096)[0].cid).unwrap());
}

#[test]
fn unknown_cid_reads_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    assert!(index
        .read_block(&raw_cid(b"never indexed"))
        .unwrap()
        .is_none());
    assert!(!index.has_block(&raw_cid(b"never indexed")).unwrap());
}

// needs unixfs
#[test]
fn read_block_returns_exact_raw_leaf_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(10_000, 4);
    let file = write_file(dir.path(), "f.deb", &bytes);
    let blocks = raw_leaves(&bytes, 4096); // 4096, 4096, 1808
    index
        .put_artifact(record_for(&file, "apt", "f"), &blocks)
        .unwrap();
    for block in &blocks {
        let got = index.read_block(&block.cid).unwrap().expect("indexed");
        let (start, end) = (block.offset as usize, (block.offset + block.len) as usize);
        assert_eq!(&got[..], &bytes[start..end]);
    }
}

// needs unixfs
#[test]
fn read_block_serves_whole_file_checksum_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(70_000, 5);
    let file = write_file(dir.path(), "w.tgz", &bytes);
    let blocks = vec![
        PlannedBlock {
            cid: sha512_raw_cid(&bytes),
            kind: BlockKind::WholeFile(DigestAlgo::Sha512),
            offset: 0,
            len: 70_000,
        },
        PlannedBlock {
            cid: raw_cid(&bytes),
            kind: BlockKind::WholeFile(DigestAlgo::Sha256),
            offset: 0,
            len: 70_000,
        },
    ];
    index
        .put_artifact(record_for(&file, "npm", "w"), &blocks)
        .unwrap();
    for block in &blocks {
        assert_eq!(
            &index.read_block(&block.cid).unwrap().unwrap()[..],
            &bytes[..]
        );
    }
}

#[test]
fn provided_keys_are_found_by_their_first_8_digest_bytes_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(70_000, 7);
    let file = write_file(dir.path(), "k.tgz", &bytes);
    let (sha512, sha256) = (sha512_raw_cid(&bytes), raw_cid(&bytes));
    let legacy = Cid::new_v0(sha256_mh(b"a legacy leaf")).unwrap();
    let blocks = [
        (sha512, BlockKind::WholeFile(DigestAlgo::Sha512)),
        (sha256, BlockKind::WholeFile(DigestAlgo::Sha256)),
        (legacy, BlockKind::PbLeaf),
    ]
    .map(|(cid, kind)| PlannedBlock {
        cid,
        kind,
        offset: 0,
        len: 70_000,
    });
    let id = index
        .put_artifact(record_for(&file, "npm", "k"), &blocks)
        .unwrap();
    for cid in [sha512, sha256, legacy] {
        let prefix = &cid.hash().digest()[..8];
        assert_eq!(
            index.multihashes_with_digest_prefix(prefix).unwrap(),
            Some(vec![*cid.hash()]),
            "{cid}"
        );
    }
    // A dag-pb CID shares its multihash with a raw one of the same bytes: one key.
    let pb = pb_cid(b"an interior node");
    let raw = Cid::new_v1(RAW, *pb.hash());
    let pair = [pb, raw].map(|cid| PlannedBlock {
        cid,
        kind: BlockKind::RawLeaf,
        offset: 0,
        len: 10,
    });
    index
        .put_artifact(record_for(&file, "npm", "k2"), &pair)
        .unwrap();
    assert_eq!(
        index
            .multihashes_with_digest_prefix(&pb.hash().digest()[..8])
            .unwrap(),
        Some(vec![*pb.hash()])
    );
    let unknown = sha256_mh(b"never stored");
    assert_eq!(
        index
            .multihashes_with_digest_prefix(&unknown.digest()[..8])
            .unwrap(),
        Some(vec![])
    );
    // While the file is being compacted the answer is "not now", not a wait.
    let compacting = index.db.write().unwrap();
    assert_eq!(
        index
            .multihashes_with_digest_prefix(&sha256.hash().digest()[..8])
            .unwrap(),
        None
    );
    drop(compacting);
    index.remove_artifact(id).unwrap();
    assert_eq!(
        index
            .multihashes_with_digest_prefix(&sha256.hash().digest()[..8])
            .unwrap(),
        Some(vec![])
    );
}

// needs unixfs
#[test]
fn read_block_rebuilds_pb_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(600, 6);
    let file = write_file(dir.path(), "legacy.bin", &bytes);
    let leaf = pkgseed_unixfs::pb_leaf_block(&bytes[100..400]);
    let cid = Cid::new_v0(sha256_mh(&leaf)).unwrap();
    let id = index
        .put_artifact(
            record_for(&file, "cargo", "legacy"),
            &[PlannedBlock {
                cid,
                kind: BlockKind::PbLeaf,
                offset: 100,
                len: 300,
            }],
        )
        .unwrap();
    assert_eq!(index.read_block(&cid).unwrap().unwrap().to_vec(), leaf);
    assert_eq!(
        index.block_cids_of(id).unwrap(),
        vec![cid],
        "CIDv0 keys round trip"
    );
}

// needs unixfs (for the read); the stored-bytes half does not
#[test]
fn interior_bytes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let node_bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let node = interior(node_bytes.clone());
    // An interior node needs no file at all.
    index
        .put_artifact(
            record_for(&dir.path().join("gone"), "cargo", "i"),
            std::slice::from_ref(&node),
        )
        .unwrap();
    assert_eq!(stored_interior(&index, &node.cid), Some(node_bytes.clone()));
    assert_eq!(
        index.read_block(&node.cid).unwrap().unwrap().to_vec(),
        node_bytes
    );
}

// needs unixfs: the interior bytes do not hash to the CID, so they must not be served
#[test]
fn corrupted_interior_bytes_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let cid = pb_cid(b"the real node");
    let id = index
        .put_artifact(
            record_for(&dir.path().join("x"), "cargo", "x"),
            &[PlannedBlock {
                cid,
                kind: BlockKind::Interior(b"not the real node".to_vec()),
                offset: 0,
                len: 0,
            }],
        )
        .unwrap();
    assert_stale(index.read_block(&cid), id);
}

#[test]
fn stale_when_the_size_changes() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(8192, 1);
    let file = write_file(dir.path(), "grow", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let id = index
        .put_artifact(record_for(&file, "cargo", "grow"), &blocks)
        .unwrap();
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(&file, &longer).unwrap();
    assert_stale(index.read_block(&blocks[0].cid), id);
    std::fs::write(&file, &bytes[..100]).unwrap();
    assert_stale(index.read_block(&blocks[1].cid), id);
}

#[test]
fn stale_when_the_file_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(2048, 2);
    let file = write_file(dir.path(), "gone", &bytes);
    let blocks = raw_leaves(&bytes, 1024);
    let id = index
        .put_artifact(record_for(&file, "cargo", "gone"), &blocks)
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_stale(index.read_block(&blocks[0].cid), id);
    // A directory replacing the file's parent component also reads as stale, not as an I/O failure.
    let nested_dir = dir.path().join("nested");
    std::fs::create_dir(&nested_dir).unwrap();
    let nested = write_file(&nested_dir, "f", &bytes);
    let id2 = index
        .put_artifact(record_for(&nested, "cargo", "nested"), &blocks)
        .unwrap();
    std::fs::remove_dir_all(&nested_dir).unwrap();
    std::fs::write(&nested_dir, b"now a file").unwrap();
    match index.read_block(&blocks[0].cid) {
        Err(BlockReadError::Stale { artifact, .. }) => assert!(artifact == id || artifact == id2),
        other => panic!("expected Stale, got {other:?}"),
    }
}

#[test]
fn stale_when_same_size_bytes_change_and_mtime_moves() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(4096, 3);
    let file = write_file(dir.path(), "edit", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let mut record = record_for(&file, "cargo", "edit");
    record.mtime_ns -= 1_000_000_000; // as if indexed before the edit
    let id = index.put_artifact(record, &blocks).unwrap();
    assert_stale(index.read_block(&blocks[0].cid), id);
}

#[test]
fn stale_when_the_file_is_replaced_by_another_inode() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(4096, 4);
    let file = write_file(dir.path(), "swap", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let record = record_for(&file, "cargo", "swap");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let id = index.put_artifact(record, &blocks).unwrap();
    let tmp = write_file(dir.path(), "swap.tmp", &pattern(4096, 99));
    OpenOptions::new()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    if cfg!(unix) {
        assert_stale(index.read_block(&blocks[0].cid), id);
    }
}

// needs unixfs: the stamp still matches, only the hash check catches the change
#[cfg(unix)]
#[test]
fn stale_when_bytes_change_under_an_identical_stamp() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(8192, 5);
    let file = write_file(dir.path(), "sneaky", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let record = record_for(&file, "cargo", "sneaky");
    let id = index.put_artifact(record.clone(), &blocks).unwrap();

    let handle = OpenOptions::new().write(true).open(&file).unwrap();
    handle.write_all_at(b"XXXX", 5000).unwrap();
    handle.set_modified(mtime).unwrap();
    drop(handle);
    assert_eq!(
        FileStamp::of_path(&file).unwrap(),
        record.stamp(),
        "the edit must keep the stamp for this test"
    );

    // The untouched first leaf is still served; the edited second one is not.
    assert_eq!(
        &index.read_block(&blocks[0].cid).unwrap().unwrap()[..],
        &bytes[..4096]
    );
    assert_stale(index.read_block(&blocks[1].cid), id);
}

// needs unixfs
#[test]
fn a_stale_copy_falls_back_to_another_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(3000, 6);
    let a = write_file(dir.path(), "a", &bytes);
    let b = write_file(dir.path(), "b", &bytes);
    let blocks = raw_leaves(&bytes, 1500);
    index
        .put_artifact(record_for(&a, "cargo", "a"), &blocks)
        .unwrap();
    index
        .put_artifact(record_for(&b, "cargo", "b"), &blocks)
        .unwrap();
    std::fs::remove_file(&a).unwrap();
    assert_eq!(
        &index.read_block(&blocks[1].cid).unwrap().unwrap()[..],
        &bytes[1500..]
    );
}

#[test]
fn file_stamp_reads_size_mtime_and_inode() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "old", b"12345");
    let handle = OpenOptions::new().write(true).open(&file).unwrap();
    handle
        .set_modified(UNIX_EPOCH - Duration::from_millis(1500))
        .unwrap();
    let stamp = FileStamp::of(&handle.metadata().unwrap());
    assert_eq!(stamp.size_bytes, 5);
    assert_eq!(stamp.mtime_ns, -1_500_000_000);
    if cfg!(unix) {
        assert_ne!(stamp.inode, 0);
    }
    handle
        .set_modified(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789))
        .unwrap();
    assert_eq!(
        FileStamp::of_path(&file).unwrap().mtime_ns,
        1_700_000_000_123_456_789
    );
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    std::fs::write(&path, vec![0xAB; 64 * 1024]).unwrap();
    let err = Index::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("corrupt or not a pkgseed index"),
        "{message}"
    );
}

#[test]
fn second_open_of_the_same_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open_index(dir.path());
    let err = Index::open(&dir.path().join("index.redb")).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn schema_version_mismatch_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    drop(Index::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Index::open(&path).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

/// A file with an artifact's bytes in the middle (pip before 23.3: a msgpack header, the body, msgpack trailer), and
/// the record and raw leaves of that range. The leaves' offsets are relative to the range.
fn range_artifact(
    dir: &Path,
    name: &str,
    body: &[u8],
) -> (PathBuf, ArtifactRecord, Vec<PlannedBlock>) {
    let mut file = b"cc=4,\x82\xa8response\x87\xa4body\xc6".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_be_bytes());
    let offset = file.len() as u64;
    file.extend_from_slice(body);
    file.extend_from_slice(b"\xa7headers\x80 and the rest of the response");
    let path = write_file(dir, name, &file);
    let mut record = record_for(&path, "pip", name);
    record.content_range = Some(ContentRange {
        offset,
        len: body.len() as u64,
    });
    (path, record, raw_leaves(body, 4096))
}

/// An artifact that is a byte range of its file: blocks are read at the range's offset plus the block's, a whole-file
/// checksum block covers the range only, nothing outside the range is accepted, and a change anywhere in the file
/// (outside the range too) makes it stale.
#[test]
fn range_artifacts_serve_exactly_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let body = pattern(10_000, 3);
    let (path, record, mut blocks) = range_artifact(dir.path(), "inline", &body);
    let file_len = std::fs::metadata(&path).unwrap().len();
    blocks.push(PlannedBlock {
        cid: raw_cid(&body),
        kind: BlockKind::WholeFile(DigestAlgo::Sha256),
        offset: 0,
        len: body.len() as u64,
    });
    let id = index.put_artifact(record.clone(), &blocks).unwrap();
    let stored = index.artifact(id).unwrap().unwrap();
    assert_eq!(stored.content_range, record.content_range);
    assert_eq!(stored.content_len(), 10_000);
    assert_eq!(stored.size_bytes, file_len);
    assert_eq!(index.count_by_ecosystem().unwrap()["pip"], (1, 10_000));
    for (i, block) in blocks.iter().enumerate().take(3) {
        let got = index.read_block(&block.cid).unwrap().expect("indexed");
        assert_eq!(&got[..], &body[i * 4096..(i * 4096 + 4096).min(body.len())]);
    }
    let whole = index.read_block(&blocks[3].cid).unwrap().unwrap();
    assert_eq!(&whole[..], &body[..]);

    // A leaf past the end of the content (though inside the file) is refused at put.
    let past = PlannedBlock {
        cid: raw_cid(b"z"),
        kind: BlockKind::RawLeaf,
        offset: 9_999,
        len: 2,
    };
    assert!(matches!(
        index.put_artifact(record.clone(), &[past]),
        Err(IndexError::Invalid(_))
    ));
    // So is a content range that does not fit the file.
    let mut too_long = record.clone();
    too_long.content_range = Some(ContentRange {
        offset: 100,
        len: file_len,
    });
    assert!(matches!(
        index.put_artifact(too_long, &[]),
        Err(IndexError::Invalid(_))
    ));
    assert_eq!(index.artifact(id).unwrap().unwrap(), stored);

    // Bytes outside the range changed (the response headers): the file is no longer the one indexed.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_stale(index.read_block(&blocks[0].cid), id);
}

/// pkgseed's store keeps a hard link to the whole cache file: a range artifact moved there is still served from its
/// range, never from offset 0.
#[cfg(unix)]
#[test]
fn a_moved_range_artifact_is_served_from_its_range_in_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let body = pattern(9_000, 5);
    let (path, record, blocks) = range_artifact(dir.path(), "inline", &body);
    let id = index.put_artifact(record, &blocks).unwrap();
    let link = dir.path().join("link");
    std::fs::hard_link(&path, &link).unwrap();
    std::fs::remove_file(&path).unwrap();
    index.move_artifact(id, &link).unwrap().expect("known id");
    let (from, got) = index
        .read_block_located(&blocks[0].cid)
        .unwrap()
        .expect("served from the link");
    assert_eq!(from, id);
    assert_eq!(&got[..], &body[..4096]);
}

/// An index written by schema 2 (binary records, every one a whole file) opens, keeps its records, and is marked
/// with the current schema.
#[test]
fn a_schema_2_index_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let file = write_file(dir.path(), "old", &pattern(10, 0));
    let old_id = {
        let index = Index::open(&path).unwrap();
        index
            .put_artifact(record_for(&file, "cargo", "old"), &[])
            .unwrap()
    };
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let index = Index::open(&path).unwrap();
    let old = index.artifact(old_id).unwrap().unwrap();
    assert_eq!((old.content_offset(), old.content_len()), (0, 10));
    assert_eq!(stored_schema(&index), SCHEMA_VERSION);
}

/// The schema version an open index has recorded.
fn stored_schema(index: &Index) -> u64 {
    let txn = index.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let schema = meta.get(META_SCHEMA).unwrap().unwrap().value();
    schema
}

/// An index written by schema 1 (JSON records) opens, keeps its records readable, takes new binary records
/// beside them, and is marked with the current schema so an older build refuses it instead of misreading the new
/// records.
#[test]
fn a_schema_1_index_with_json_records_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let old_file = write_file(dir.path(), "old", &pattern(10, 0));
    let mut old = record_for(&old_file, "cargo", "old");
    old.id = 1;
    drop(Index::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 1)
            .unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_NEXT_ID, 2)
            .unwrap();
        let json = serde_json::to_vec(&old).unwrap();
        txn.open_table(LEGACY_ARTIFACTS)
            .unwrap()
            .insert(1, json.as_slice())
            .unwrap();
        txn.open_table(PATHS)
            .unwrap()
            .insert(path_key(&old_file), 1)
            .unwrap();
        // Schema 1 had no totals table either.
        txn.delete_table(ECOSYSTEM_TOTALS).unwrap();
        txn.commit().unwrap();
    }
    let index = Index::open(&path).unwrap();
    assert_eq!(
        index.artifact_by_path(&old_file).unwrap(),
        Some(old.clone())
    );
    let new_file = write_file(dir.path(), "new", &pattern(20, 0));
    let new_id = index
        .put_artifact(record_for(&new_file, "cargo", "new"), &[])
        .unwrap();
    assert_eq!(new_id, 2);
    assert_eq!(index.artifacts().unwrap().len(), 2);
    assert_eq!(index.count_by_ecosystem().unwrap()["cargo"], (2, 30));
    assert_eq!(stored_schema(&index), SCHEMA_VERSION);
}

#[test]
fn a_foreign_redb_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<&str, &str> = TableDefinition::new("meta");
        txn.open_table(other).unwrap().insert("k", "v").unwrap();
        txn.commit().unwrap();
    }
    let err = Index::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a pkgseed index"), "{err}");
}

#[test]
fn damaged_file_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    {
        let index = Index::open(&path).unwrap();
        for i in 0..50u32 {
            let p = dir.path().join(format!("f{i}"));
            let mut record = record_for(&p, "cargo", "f");
            record.size_bytes = 4 * MIB;
            let blocks: Vec<PlannedBlock> = (0..4u64)
                .map(|k| PlannedBlock {
                    cid: raw_cid(&[i as u8, k as u8]),
                    kind: BlockKind::RawLeaf,
                    offset: k * MIB,
                    len: MIB,
                })
                .collect();
            index.put_artifact(record, &blocks).unwrap();
        }
    }
    let mut data = std::fs::read(&path).unwrap();
    let len = data.len();
    for byte in &mut data[len / 3..len / 3 + 4096] {
        *byte ^= 0x5A;
    }
    std::fs::write(&path, &data).unwrap();
    // Either redb repairs/refuses it, or reads fail with errors: no panic either way.
    if let Ok(index) = Index::open(&path) {
        let _ = index.artifacts();
        let _ = index.count_by_ecosystem();
    }
    std::fs::write(&path, &data[..len / 2]).unwrap();
    if let Ok(index) = Index::open(&path) {
        let _ = index.artifacts();
    }
}

#[test]
fn concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(open_index(dir.path()));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let index = Arc::clone(&index);
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..20u8 {
                    let bytes = [t, i, 1, 2, 3];
                    let path = write_file(&dir, &format!("t{t}-{i}"), &bytes);
                    let blocks = raw_leaves(&bytes, 5);
                    ids.push(
                        index
                            .put_artifact(record_for(&path, "cargo", "c"), &blocks)
                            .unwrap(),
                    );
                    assert!(index.has_block(&blocks[0].cid).unwrap());
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<ArtifactId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 80);
    assert_eq!(index.artifacts().unwrap().len(), 80);
}

/// A synthetic 50 MiB artifact's block map: 50 raw 1 MiB leaves and one interior root of realistic size.
fn fifty_mib_artifact(dir: &Path, n: u64) -> (ArtifactRecord, Vec<PlannedBlock>) {
    let mut record = record_for(&dir.join(format!("big-{n}.crate")), "cargo", "big");
    record.size_bytes = 50 * MIB;
    record.root_cid = pb_cid(&n.to_le_bytes()).to_string();
    let mut blocks: Vec<PlannedBlock> = (0..50u64)
        .map(|i| PlannedBlock {
            cid: raw_cid(&[n.to_le_bytes(), i.to_le_bytes()].concat()),
            kind: BlockKind::RawLeaf,
            offset: i * MIB,
            len: MIB,
        })
        .collect();
    // 50 links of (CIDv1 36 B + name + tsize + framing) ≈ 46 B each, plus the UnixFS blocksizes and header.
    let mut node = pattern(50 * 46 + 50 * 4 + 10, 0);
    node.extend_from_slice(&n.to_le_bytes());
    blocks.push(interior(node));
    (record, blocks)
}

#[cfg(unix)]
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[cfg(not(unix))]
fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The extra disk the zero-copy index costs. redb starts a file at ~1 MiB (≈ 0.5 MiB allocated) whatever it
/// holds, so one artifact is dominated by that fixed base; the per-artifact cost is what scales with seeded bytes.
#[test]
fn extra_disk_for_50_mib_artifacts_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let db_path = dir.path().join("index.redb");
    let empty = index.disk_bytes().unwrap();

    let (record, blocks) = fifty_mib_artifact(dir.path(), 0);
    index.put_artifact(record, &blocks).unwrap();
    let one = index.disk_bytes().unwrap();
    let one_ratio = one as f64 / (50 * MIB) as f64;
    println!(
        "extra disk, 1 × 50 MiB artifact: {one} bytes (allocated {}) = {:.3}% of seeded bytes; empty index {empty} bytes",
        allocated_bytes(&db_path),
        one_ratio * 100.0
    );
    assert!(
        one_ratio <= 0.025,
        "one 50 MiB artifact costs {one} bytes ({:.3}%)",
        one_ratio * 100.0
    );

    let count = 40u64;
    for n in 1..count {
        let (record, blocks) = fifty_mib_artifact(dir.path(), n);
        index.put_artifact(record, &blocks).unwrap();
    }
    let many = index.disk_bytes().unwrap();
    let seeded = count * 50 * MIB;
    let ratio = many as f64 / seeded as f64;
    let per_artifact = (many - empty) / count;
    println!(
        "extra disk, {count} × 50 MiB artifacts: {many} bytes (allocated {}) = {:.4}% of {seeded} seeded bytes; \
         ≈ {per_artifact} bytes per artifact above the empty file",
        allocated_bytes(&db_path),
        ratio * 100.0
    );
    // Design target: extra disk ≤ 0.5% of seeded bytes.
    assert!(
        ratio <= 0.005,
        "index uses {many} bytes for {seeded} seeded bytes ({:.4}%)",
        ratio * 100.0
    );
    assert!(
        per_artifact <= 50 * MIB / 200,
        "{per_artifact} bytes per 50 MiB artifact is over 0.5%"
    );
}

#[test]
fn bulk_writes_are_visible_at_once_and_durable_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = pattern(3000, 9);
    let file = write_file(dir.path(), "bulk.crate", &bytes);
    {
        let index = open_index(dir.path());
        index.set_bulk_writes(true).unwrap();
        let id = index
            .put_artifact(
                record_for(&file, "cargo", "bulk"),
                &raw_leaves(&bytes, 1024),
            )
            .unwrap();
        // Readers see a bulk write as soon as it commits.
        assert_eq!(index.artifact(id).unwrap().unwrap().name, "bulk");
        // Many bulk commits in a row, each visible at once.
        for n in 0..130 {
            let path = write_file(dir.path(), &format!("more-{n}.crate"), &bytes);
            let id = index
                .put_artifact(
                    record_for(&path, "cargo", "more"),
                    &raw_leaves(&bytes, 1024),
                )
                .unwrap();
            assert!(index.artifact(id).unwrap().is_some());
        }
        index.set_bulk_writes(false).unwrap();
    }
    let reopened = open_index(dir.path());
    assert!(
        reopened.artifact_by_path(&file).unwrap().is_some(),
        "flushed bulk writes survive a reopen"
    );
    assert_eq!(reopened.count_by_ecosystem().unwrap()["cargo"].0, 131);
}

/// The file moved out of the cache and a symlink to it put in its place: same inode, same bytes, but it is no
/// longer under the cache root, so it must not be read (the read path never follows a symlink).
#[cfg(unix)]
#[test]
fn stale_when_the_file_is_swapped_for_a_symlink_to_the_same_inode() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(4096, 7);
    let file = write_file(dir.path(), "moved", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let id = index
        .put_artifact(record_for(&file, "cargo", "moved"), &blocks)
        .unwrap();
    let outside = tempfile::tempdir().unwrap();
    let moved = outside.path().join("moved");
    std::fs::rename(&file, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &file).unwrap();
    assert_eq!(
        FileStamp::of_path(&file).unwrap(),
        index.artifact(id).unwrap().unwrap().stamp(),
        "following the symlink gives the indexed stamp: only O_NOFOLLOW refuses it"
    );
    assert_stale(index.read_block(&blocks[0].cid), id);
}

/// A FIFO in the file's place must neither be read nor block the reader (opening a FIFO for reading blocks until a
/// writer appears unless it is opened non-blocking).
#[cfg(unix)]
#[test]
fn stale_without_blocking_when_the_file_is_replaced_by_a_fifo_or_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(open_index(dir.path()));
    let bytes = pattern(4096, 8);
    let fifo = write_file(dir.path(), "fifo", &bytes);
    let subdir = write_file(dir.path(), "subdir", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let fifo_id = index
        .put_artifact(record_for(&fifo, "cargo", "fifo"), &blocks)
        .unwrap();
    let dir_id = index
        .put_artifact(record_for(&subdir, "cargo", "subdir"), &blocks)
        .unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    std::fs::remove_file(&subdir).unwrap();
    std::fs::create_dir(&subdir).unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let reader = index.clone();
    let cid = blocks[0].cid;
    std::thread::spawn(move || {
        let _ = tx.send(reader.read_block(&cid));
    });
    // Both artifacts hold the CID: both locations fail, the first failure is reported.
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("read_block blocked on a FIFO");
    match result {
        Err(BlockReadError::Stale { artifact, .. }) => {
            assert!(artifact == fifo_id || artifact == dir_id)
        }
        other => panic!("expected Stale, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_moved_artifact_is_served_from_its_hard_link_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(10_000, 9);
    let original = write_file(dir.path(), "orig.crate", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let id = index
        .put_artifact(record_for(&original, "cargo", "m"), &blocks)
        .unwrap();
    let other = write_file(dir.path(), "other.crate", &pattern(100, 1));
    let other_id = index
        .put_artifact(
            record_for(&other, "cargo", "o"),
            &raw_leaves(&pattern(100, 1), 4096),
        )
        .unwrap();
    let link = dir.path().join("link");
    std::fs::hard_link(&original, &link).unwrap();
    std::fs::remove_file(&original).unwrap();
    assert_stale(index.read_block(&blocks[0].cid), id);

    let moved = index.move_artifact(id, &link).unwrap().expect("known id");
    assert_eq!((moved.id, moved.path.as_path()), (id, link.as_path()));
    assert_eq!(index.artifact_by_path(&original).unwrap(), None);
    assert_eq!(index.artifact_by_path(&link).unwrap(), Some(moved));
    let (from, got) = index
        .read_block_located(&blocks[2].cid)
        .unwrap()
        .expect("served from the link");
    assert_eq!(from, id);
    assert_eq!(&got[..], &bytes[8192..]);
    // Another artifact's path is never taken over; an unknown id moves nothing.
    assert!(matches!(
        index.move_artifact(id, &other),
        Err(IndexError::Invalid(_))
    ));
    assert_eq!(index.move_artifact(9999, &link).unwrap(), None);
    assert_eq!(index.artifact(other_id).unwrap().unwrap().path, other);
}

/// Every read applies the hard-link rule on the opened handle: a link made to the indexed file from elsewhere after
/// indexing (same stamp: a link changes neither size, mtime nor inode) makes it stale; the owner's own link
/// (here `<store>/<root CID>`, as pkgseed's store names it) is accounted for, and an artifact served from that link reads.
#[cfg(unix)]
#[test]
fn a_hard_link_the_owner_does_not_account_for_makes_the_file_stale() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let own_links = store.clone();
    index.account_own_links(move |root_cid| Some(own_links.join(root_cid)));
    let bytes = pattern(10_000, 3);
    let original = write_file(dir.path(), "linked.crate", &bytes);
    let blocks = raw_leaves(&bytes, 4096);
    let record = record_for(&original, "cargo", "linked");
    let own = store.join(&record.root_cid);
    let id = index.put_artifact(record, &blocks).unwrap();
    assert!(index.read_block(&blocks[0].cid).unwrap().is_some());

    std::fs::hard_link(&original, &own).unwrap();
    assert!(
        index.read_block(&blocks[0].cid).unwrap().is_some(),
        "the owner's store link is accounted for"
    );

    let elsewhere = dir.path().join("elsewhere");
    std::fs::hard_link(&original, &elsewhere).unwrap();
    match index.read_block(&blocks[0].cid) {
        Err(BlockReadError::Stale { artifact, reason }) => {
            assert_eq!(artifact, id);
            assert!(reason.contains("hard-linked: 3 links"), "{reason}");
        }
        other => panic!("expected stale, got {other:?}"),
    }
    std::fs::remove_file(&elsewhere).unwrap();
    assert!(index.read_block(&blocks[0].cid).unwrap().is_some());

    // The package manager deletes its copy: the artifact moves to the store's link (one link left) and reads.
    std::fs::remove_file(&original).unwrap();
    index.move_artifact(id, &own).unwrap().expect("known id");
    assert!(index.read_block(&blocks[1].cid).unwrap().is_some());
}

/// A single-chunk artifact as the indexer plans it (sha256): its raw leaf is its root, and the whole-file checksum
/// block has the same CID and range.
fn single_chunk_artifact(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> (ArtifactRecord, Vec<PlannedBlock>) {
    let file = write_file(dir, name, bytes);
    let cid = raw_cid(bytes);
    let mut record = record_for(&file, "cargo", name);
    record.root_cid = cid.to_string();
    record.checksum_cid = Some(cid.to_string());
    record.registry_checksum = format!("sha256:{}", hex_of(&Sha256::digest(bytes)));
    let len = bytes.len() as u64;
    let blocks = vec![
        PlannedBlock {
            cid,
            kind: BlockKind::RawLeaf,
            offset: 0,
            len,
        },
        PlannedBlock {
            cid,
            kind: BlockKind::WholeFile(DigestAlgo::Sha256),
            offset: 0,
            len,
        },
    ];
    (record, blocks)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rows of the two block tables: (`blocks` values, `artifact_blocks` values).
fn block_rows(index: &Index) -> (u64, u64) {
    let txn = index.begin_read().unwrap();
    let blocks = txn.open_multimap_table(BLOCKS).unwrap().len().unwrap();
    let by_artifact = txn
        .open_multimap_table(ARTIFACT_BLOCKS)
        .unwrap()
        .len()
        .unwrap();
    (blocks, by_artifact)
}

/// Schema 4 stores a single-chunk artifact's block once (the checksum block has the leaf's CID and range) and no
/// `artifact_blocks` row for the CIDs its record names; it is still served, listed and removed completely, and a
/// second artifact holding the same bytes keeps them when the first goes.
#[test]
fn a_single_chunk_artifact_keeps_one_block_row_and_is_still_served_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let bytes = pattern(5000, 3);
    let (record, blocks) = single_chunk_artifact(dir.path(), "a.crate", &bytes);
    let cid = blocks[0].cid;
    let a = index.put_artifact(record, &blocks).unwrap();
    assert_eq!(block_rows(&index), (1, 0));
    assert_eq!(&index.read_block(&cid).unwrap().unwrap()[..], &bytes[..]);
    assert_eq!(index.block_cids_of(a).unwrap(), vec![cid]);
    assert_eq!(index.artifacts_with_block(&cid).unwrap(), vec![a]);

    let (copy, copy_blocks) = single_chunk_artifact(dir.path(), "b.crate", &bytes);
    let b = index.put_artifact(copy, &copy_blocks).unwrap();
    assert_eq!(block_rows(&index), (2, 0));
    index.remove_artifact(a).unwrap().unwrap();
    assert_eq!(index.artifacts_with_block(&cid).unwrap(), vec![b]);
    assert_eq!(&index.read_block(&cid).unwrap().unwrap()[..], &bytes[..]);
    assert!(index.block_cids_of(a).unwrap().is_empty());
    index.remove_artifact(b).unwrap().unwrap();
    assert_eq!(block_rows(&index), (0, 0));
    assert!(index.read_block(&cid).unwrap().is_none());

    // A multi-block artifact keeps rows for its leaves (not for its root, which the record names).
    let big = pattern(3000, 4);
    let file = write_file(dir.path(), "c.crate", &big);
    let leaves = raw_leaves(&big, 1000);
    let mut record = record_for(&file, "cargo", "c");
    record.root_cid = leaves[0].cid.to_string();
    let c = index.put_artifact(record, &leaves).unwrap();
    assert_eq!(block_rows(&index), (3, 2));
    let mut expected: Vec<Cid> = leaves.iter().map(|l| l.cid).collect();
    expected.sort_by_key(|cid| cid.to_bytes());
    assert_eq!(index.block_cids_of(c).unwrap(), expected);
    index.remove_artifact(c).unwrap().unwrap();
    assert_eq!(block_rows(&index), (0, 0));
}

/// An index written by schema 3 (format-2 records, a second location for a single-chunk file's checksum block,
/// an `artifact_blocks` row for every CID) opens as schema 4, serves, lists and removes its artifacts completely,
/// and takes new artifacts in the new layout beside them.
#[test]
fn a_schema_3_index_with_its_block_rows_is_read_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let bytes = pattern(4000, 8);
    let (mut record, blocks) = single_chunk_artifact(dir.path(), "old.crate", &bytes);
    let cid = blocks[0].cid;
    record.id = 1;
    drop(Index::open(&path).unwrap());
    {
        // What schema 3's put wrote for this artifact, row by row.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_SCHEMA, 3).unwrap();
            meta.insert(META_NEXT_ID, 2).unwrap();
            let encoded = crate::record::tests::encode_format_2_or_3(&record);
            txn.open_table(LEGACY_ARTIFACTS)
                .unwrap()
                .insert(1, encoded.as_slice())
                .unwrap();
            txn.open_table(PATHS)
                .unwrap()
                .insert(path_key(&record.path), 1)
                .unwrap();
            txn.open_table(ECOSYSTEM_TOTALS)
                .unwrap()
                .insert("cargo", (1, 4000))
                .unwrap();
            let mut by_cid = txn.open_multimap_table(BLOCKS).unwrap();
            let mut by_artifact = txn.open_multimap_table(ARTIFACT_BLOCKS).unwrap();
            for block in &blocks {
                let location = Location {
                    artifact: 1,
                    kind: LocKind::of(&block.kind),
                    offset: block.offset,
                    len: block.len,
                };
                by_cid
                    .insert(cid.to_bytes().as_slice(), location.encode().as_slice())
                    .unwrap();
                by_artifact.insert(1, cid.to_bytes().as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let index = Index::open(&path).unwrap();
    assert_eq!(stored_schema(&index), SCHEMA_VERSION);
    // The whole-path table was moved to the hashed one, in the opening transaction.
    assert!(!table_exists(&index, PATHS.name()));
    assert_eq!(
        index.indexed_paths().unwrap(),
        vec![(record.path.clone(), 1)]
    );
    assert_eq!(block_rows(&index), (2, 1));
    assert_eq!(index.artifact(1).unwrap(), Some(record.clone()));
    assert_eq!(index.artifact_by_path(&record.path).unwrap().unwrap().id, 1);
    assert_eq!(&index.read_block(&cid).unwrap().unwrap()[..], &bytes[..]);
    assert_eq!(index.block_cids_of(1).unwrap(), vec![cid]);

    let (new, new_blocks) = single_chunk_artifact(dir.path(), "new.crate", &pattern(3000, 9));
    let new_id = index.put_artifact(new, &new_blocks).unwrap();
    assert_eq!(new_id, 2);
    assert_eq!(block_rows(&index), (3, 1));
    index.remove_artifact(1).unwrap().unwrap();
    assert_eq!(block_rows(&index), (1, 0));
    assert!(index.read_block(&cid).unwrap().is_none());
    index.remove_artifact(new_id).unwrap().unwrap();
    assert_eq!(block_rows(&index), (0, 0));
    assert_eq!(index.count_by_ecosystem().unwrap().get("cargo"), None);
}

/// An index written by schema 4 (records in id order in `artifacts`, format 4) opens as schema 5: every record
/// moved to the scattered table and re-encoded, in the opening transaction; a record that does not decode is moved
/// as it was and still reads as corrupt, and the others are unaffected.
#[test]
fn a_schema_4_index_moves_its_records_to_the_scattered_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let mut written = Vec::new();
    {
        let index = Index::open(&path).unwrap();
        for n in 0..5u8 {
            let (record, blocks) = single_chunk_artifact(
                dir.path(),
                &format!("crate-{n}.crate"),
                &pattern(3000 + usize::from(n), n),
            );
            let id = index.put_artifact(record, &blocks).unwrap();
            written.push((index.artifact(id).unwrap().unwrap(), blocks[0].cid));
        }
    }
    {
        // Rewrite the records as schema 4 kept them; its other tables are the same as schema 5's.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(ARTIFACTS).unwrap();
        {
            let mut legacy = txn.open_table(LEGACY_ARTIFACTS).unwrap();
            for (record, _) in &written {
                let encoded = crate::record::tests::encode_format_4_or_5(record);
                legacy.insert(record.id, encoded.as_slice()).unwrap();
            }
            legacy.insert(99, b"\x04 damaged".as_slice()).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 4)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let index = Index::open(&path).unwrap();
    assert_eq!(stored_schema(&index), SCHEMA_VERSION);
    assert!(!table_exists(&index, LEGACY_ARTIFACTS.name()));
    for (record, cid) in &written {
        assert_eq!(index.artifact(record.id).unwrap().as_ref(), Some(record));
        assert_eq!(
            index.artifact_by_path(&record.path).unwrap().as_ref(),
            Some(record)
        );
        assert_eq!(
            index.read_block(cid).unwrap().unwrap().len() as u64,
            record.size_bytes
        );
        let txn = index.begin_read().unwrap();
        let stored = txn.open_table(ARTIFACTS).unwrap();
        let bytes = stored.get(record.id).unwrap().unwrap().value().to_vec();
        assert_eq!(bytes[0], 6, "re-encoded in format 6");
        assert!(bytes.len() < crate::record::tests::encode_format_4_or_5(record).len());
    }
    assert!(
        index.artifact(99).is_err(),
        "the damaged record still reads as corrupt"
    );
    assert_eq!(index.artifact_count().unwrap(), 6);
}

/// After many batches (a scan) the file is larger than its tables; compaction gives that back, every artifact and
/// block is still found, and a second call does nothing while the file has not grown.
#[test]
fn compaction_shrinks_the_file_and_keeps_every_artifact_and_block() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    index.set_bulk_writes(true).unwrap();
    let mut written = Vec::new();
    for batch_number in 0..120u32 {
        let mut batch = Vec::new();
        for n in 0..16u32 {
            let bytes = pattern(600 + (batch_number * 16 + n) as usize, n as u8);
            let name = format!("crate-{batch_number}-{n}-with-a-longer-name-like-real-ones.crate");
            batch.push(single_chunk_artifact(dir.path(), &name, &bytes));
        }
        for (outcome, (record, blocks)) in index
            .put_artifacts(batch.clone())
            .unwrap()
            .into_iter()
            .zip(batch)
        {
            written.push((outcome.unwrap(), record.path, blocks[0].cid));
        }
    }
    // Replacing and removing leave freed pages behind, as rescans do.
    for (n, (id, _, _)) in written.iter().enumerate() {
        if n % 3 != 0 {
            index.remove_artifact(*id).unwrap().unwrap();
        }
    }
    index.set_bulk_writes(false).unwrap();
    // The file's length, what compaction gives back (as `disk_bytes` measured before it became the allocated size:
    // moving pages into never-written holes at the front can allocate as much as truncating the end frees).
    let before = index.file_len().unwrap();
    assert!(index.compact_if_grown().unwrap());
    let after = index.file_len().unwrap();
    println!("compaction: {before} -> {after} bytes");
    assert!(after < before, "{before} -> {after} bytes");
    for (n, (id, path, cid)) in written.iter().enumerate() {
        let kept = n % 3 == 0;
        assert_eq!(
            index.artifact(*id).unwrap().is_some(),
            kept,
            "artifact {id}"
        );
        assert_eq!(index.artifact_by_path(path).unwrap().is_some(), kept);
        assert_eq!(
            index.read_block(cid).unwrap().is_some(),
            kept,
            "block of {id}"
        );
    }
    assert!(!index.compact_if_grown().unwrap(), "nothing grew since");
    drop(index);
    let reopened = open_index(dir.path());
    assert_eq!(
        reopened.artifact_count().unwrap(),
        written.len().div_ceil(3) as u64
    );
}

/// A reader that has begun a transaction when compaction starts delays it (bounded) instead of failing it.
#[test]
fn compaction_waits_for_a_read_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(open_index(dir.path()));
    let (record, blocks) = single_chunk_artifact(dir.path(), "a.crate", &pattern(2000, 1));
    let cid = blocks[0].cid;
    index.put_artifact(record, &blocks).unwrap();
    let reader = index.begin_read().unwrap();
    let compactor = {
        let index = index.clone();
        std::thread::spawn(move || index.compact_if_grown())
    };
    std::thread::sleep(Duration::from_millis(50));
    drop(reader);
    assert!(compactor.join().unwrap().unwrap());
    assert!(index.read_block(&cid).unwrap().is_some());
}

fn table_exists(index: &Index, name: &str) -> bool {
    let txn = index.begin_read().unwrap();
    let found = txn.list_tables().unwrap().any(|table| table.name() == name);
    found
}

/// Two paths whose hashes collide share one `path_ids` entry; each path still names its own artifact (the
/// record's path decides), and replacing or removing one leaves the other.
#[test]
fn colliding_path_hashes_still_name_each_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let index = open_index(dir.path());
    let a = write_file(dir.path(), "a.crate", &pattern(10, 1));
    let b = write_file(dir.path(), "b.crate", &pattern(20, 2));
    let a_id = index
        .put_artifact(record_for(&a, "cargo", "a"), &[])
        .unwrap();
    let b_id = index
        .put_artifact(record_for(&b, "cargo", "b"), &[])
        .unwrap();
    {
        // Make b's hash collide with a's: b listed first under a's hash, b's own entry gone.
        let txn = index.begin_write().unwrap();
        {
            let mut paths = txn.open_table(PATH_IDS).unwrap();
            put_ids_at_hash(&mut paths, path_hash(&a), &[b_id, a_id]).unwrap();
            put_ids_at_hash(&mut paths, path_hash(&b), &[]).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(index.artifact_by_path(&a).unwrap().unwrap().id, a_id);
    // b is no longer found by its own hash (the entry was moved), so a put of b adds a new artifact there.
    assert_eq!(index.artifact_by_path(&b).unwrap(), None);
    let a2 = index
        .put_artifact(record_for(&a, "cargo", "a"), &[])
        .unwrap();
    assert!(index.artifact(a_id).unwrap().is_none(), "replaced");
    assert!(
        index.artifact(b_id).unwrap().is_some(),
        "the other artifact under the hash stays"
    );
    let txn = index.begin_read().unwrap();
    let ids = ids_at_hash(&txn.open_table(PATH_IDS).unwrap(), path_hash(&a)).unwrap();
    assert_eq!(ids, vec![b_id, a2]);
    drop(txn);
    index.remove_artifact(a2).unwrap().unwrap();
    assert_eq!(index.artifact_by_path(&a).unwrap(), None);
    let txn = index.begin_read().unwrap();
    let ids = ids_at_hash(&txn.open_table(PATH_IDS).unwrap(), path_hash(&a)).unwrap();
    assert_eq!(ids, vec![b_id]);
}
