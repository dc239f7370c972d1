//! Unit tests: split independence, checksum CIDs, leaf rebuilding, block verification, and a DAG walk that decodes
//! every node we produce and rebuilds the file from it.

use std::collections::HashMap;

use super::*;

/// Deterministic pseudo-random bytes (xorshift64*), so chunks differ and no leaf is deduplicated by accident.
fn pattern_bytes(len_bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len_bytes)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn build_whole(builder: DagBuilder, bytes: &[u8]) -> FileDag {
    let mut builder = builder;
    builder.update(bytes);
    builder.finish()
}

fn build_split(mut builder: DagBuilder, bytes: &[u8], piece_lens: &[usize]) -> FileDag {
    let mut rest = bytes;
    let mut piece_index = 0;
    while !rest.is_empty() {
        let piece_len = piece_lens[piece_index % piece_lens.len()].min(rest.len());
        builder.update(&rest[..piece_len]);
        builder.update(&[]);
        rest = &rest[piece_len..];
        piece_index += 1;
    }
    builder.finish()
}

fn assert_same_dag(left: &FileDag, right: &FileDag) {
    assert_eq!(left.root, right.root);
    assert_eq!(left.size_bytes, right.size_bytes);
    assert_eq!(left.sha256, right.sha256);
    assert_eq!(left.sha512, right.sha512);
    assert_eq!(left.sha1, right.sha1);
    assert_eq!(left.blocks, right.blocks);
}

/// A decoded dag-pb node: `(child CID, Tsize)` links and the UnixFS data fields we use.
#[derive(Debug)]
struct DecodedNode {
    links: Vec<(Cid, u64)>,
    unixfs_type: u64,
    unixfs_data: Vec<u8>,
    unixfs_filesize: u64,
    unixfs_blocksizes: Vec<u64>,
}

fn read_varint(bytes: &[u8], position: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*position];
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// Splits a protobuf message into `(field number, wire type, varint value, length-delimited bytes)`.
fn read_fields(bytes: &[u8]) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let mut fields = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let tag = read_varint(bytes, &mut position);
        match tag & 7 {
            0 => fields.push((tag >> 3, 0, read_varint(bytes, &mut position), Vec::new())),
            2 => {
                let len = read_varint(bytes, &mut position) as usize;
                fields.push((tag >> 3, 2, 0, bytes[position..position + len].to_vec()));
                position += len;
            }
            wire_type => panic!("unexpected wire type {wire_type}"),
        }
    }
    fields
}

fn decode_node(bytes: &[u8]) -> DecodedNode {
    let mut node = DecodedNode {
        links: Vec::new(),
        unixfs_type: u64::MAX,
        unixfs_data: Vec::new(),
        unixfs_filesize: u64::MAX,
        unixfs_blocksizes: Vec::new(),
    };
    let mut seen_data = false;
    for (field, wire_type, _, body) in read_fields(bytes) {
        match (field, wire_type) {
            (2, 2) => {
                assert!(!seen_data, "links must precede data (canonical dag-pb)");
                let link_fields = read_fields(&body);
                let field_numbers: Vec<u64> = link_fields.iter().map(|field| field.0).collect();
                assert_eq!(
                    field_numbers,
                    [1, 2, 3],
                    "link has Hash, Name, Tsize in order"
                );
                assert!(link_fields[1].3.is_empty(), "link name is empty");
                let cid = Cid::try_from(link_fields[0].3.as_slice()).expect("link hash is a CID");
                node.links.push((cid, link_fields[2].2));
            }
            (1, 2) => {
                seen_data = true;
                for (unixfs_field, _, value, unixfs_body) in read_fields(&body) {
                    match unixfs_field {
                        1 => node.unixfs_type = value,
                        2 => node.unixfs_data = unixfs_body,
                        3 => node.unixfs_filesize = value,
                        4 => node.unixfs_blocksizes.push(value),
                        other => panic!("unexpected UnixFS field {other}"),
                    }
                }
            }
            other => panic!("unexpected PBNode field {other:?}"),
        }
    }
    node
}

/// Walks the DAG from `cid`, rebuilding the file bytes from the planned blocks alone and checking every block's hash,
/// Tsize and blocksizes. Returns `(file bytes under cid, cumulative size of cid's subtree)`.
fn walk(
    cid: &Cid,
    blocks_by_cid: &HashMap<Cid, &PlannedBlock>,
    file: &[u8],
    depth: usize,
) -> (Vec<u8>, u64) {
    let block = blocks_by_cid
        .get(cid)
        .unwrap_or_else(|| panic!("block {cid} is not in the block list"));
    let range = block.offset as usize..(block.offset + block.len) as usize;
    match &block.kind {
        BlockKind::RawLeaf => {
            assert_eq!(cid.codec(), CODEC_RAW);
            assert!(block_matches_cid(cid, &file[range.clone()]));
            (file[range].to_vec(), block.len)
        }
        BlockKind::PbLeaf => {
            let leaf_bytes = pb_leaf_block(&file[range.clone()]);
            assert!(block_matches_cid(cid, &leaf_bytes));
            assert_eq!(cid.version(), cid::Version::V0);
            let node = decode_node(&leaf_bytes);
            assert!(node.links.is_empty());
            assert_eq!(node.unixfs_type, 2);
            assert_eq!(node.unixfs_filesize, block.len);
            assert_eq!(node.unixfs_data, file[range]);
            (node.unixfs_data, leaf_bytes.len() as u64)
        }
        BlockKind::Interior(node_bytes) => {
            assert!(depth < 64, "DAG too deep: a cycle?");
            assert_eq!((block.offset, block.len), (0, 0));
            assert_eq!(cid.codec(), CODEC_DAG_PB);
            assert!(block_matches_cid(cid, node_bytes));
            let node = decode_node(node_bytes);
            assert_eq!(node.unixfs_type, 2);
            assert!(node.unixfs_data.is_empty());
            assert_eq!(node.links.len(), node.unixfs_blocksizes.len());
            let mut content = Vec::new();
            let mut subtree_bytes = node_bytes.len() as u64;
            for ((child_cid, child_tsize), child_blocksize) in
                node.links.iter().zip(&node.unixfs_blocksizes)
            {
                assert_eq!(
                    child_cid.version(),
                    cid.version(),
                    "children use the parent's CID version"
                );
                let (child_content, child_subtree_bytes) =
                    walk(child_cid, blocks_by_cid, file, depth + 1);
                assert_eq!(*child_tsize, child_subtree_bytes, "Tsize is cumulative");
                assert_eq!(*child_blocksize, child_content.len() as u64);
                subtree_bytes += child_subtree_bytes;
                content.extend_from_slice(&child_content);
            }
            assert_eq!(node.unixfs_filesize, content.len() as u64);
            (content, subtree_bytes)
        }
        BlockKind::WholeFile(_) => panic!("a DAG holds no whole-file blocks"),
    }
}

/// Every structural property we can check without the reference: the DAG rebuilds the file, all hashes verify,
/// leaf ranges tile the file (when no chunk repeats), blocks are distinct, and no node is wider than allowed.
fn check_dag(dag: &FileDag, file: &[u8], max_links_per_node: usize) {
    assert_eq!(dag.size_bytes, file.len() as u64);
    assert_eq!(dag.sha256, <[u8; 32]>::from(Sha256::digest(file)));
    let blocks_by_cid: HashMap<Cid, &PlannedBlock> =
        dag.blocks.iter().map(|block| (block.cid, block)).collect();
    assert_eq!(blocks_by_cid.len(), dag.blocks.len(), "blocks are distinct");
    let (content, _) = walk(&dag.root, &blocks_by_cid, file, 0);
    assert_eq!(content, file, "the DAG rebuilds the file");
    for block in &dag.blocks {
        if let BlockKind::Interior(node_bytes) = &block.kind {
            assert!(decode_node(node_bytes).links.len() <= max_links_per_node);
        }
    }
}

fn assert_leaves_tile_file(dag: &FileDag) {
    let mut leaf_ranges: Vec<(u64, u64)> = dag
        .blocks
        .iter()
        .filter(|block| matches!(block.kind, BlockKind::RawLeaf | BlockKind::PbLeaf))
        .map(|block| (block.offset, block.len))
        .collect();
    leaf_ranges.sort();
    let mut next_offset = 0;
    for (offset, len) in leaf_ranges {
        assert_eq!(offset, next_offset, "leaf ranges are contiguous");
        next_offset += len;
    }
    assert_eq!(
        next_offset, dag.size_bytes,
        "leaf ranges cover the whole file"
    );
}

#[test]
fn profile_names_round_trip() {
    for profile in Profile::ALL {
        assert_eq!(Profile::parse(profile.name()), Some(profile));
    }
    assert_eq!(
        Profile::parse("unixfs-v1-2025"),
        Some(Profile::UnixfsV1_2025)
    );
    assert_eq!(
        Profile::parse("unixfs-v0-2015"),
        Some(Profile::UnixfsV0_2015)
    );
    assert_eq!(Profile::parse("v1"), None);
    assert_eq!(Profile::UnixfsV1_2025.chunk_size_bytes(), 1_048_576);
    assert_eq!(Profile::UnixfsV0_2015.chunk_size_bytes(), 262_144);
    assert_eq!(Profile::UnixfsV1_2025.max_links_per_node(), 1024);
    assert_eq!(Profile::UnixfsV0_2015.max_links_per_node(), 174);
}

#[test]
fn any_split_gives_the_same_dag_on_small_layouts() {
    for profile in Profile::ALL {
        for (chunk_size_bytes, max_links) in [(1u64, 2usize), (3, 2), (5, 3), (16, 4)] {
            for file_len in [
                0usize, 1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 26, 27, 28, 63, 64, 65, 81, 200,
            ] {
                let file = pattern_bytes(file_len, file_len as u64 + chunk_size_bytes);
                let make = || {
                    DagBuilder::with_layout_for_tests(profile, chunk_size_bytes, max_links, true)
                };
                let whole = build_whole(make(), &file);
                for piece_lens in [&[1usize][..], &[2, 7, 1], &[chunk_size_bytes as usize + 1]] {
                    assert_same_dag(&whole, &build_split(make(), &file, piece_lens));
                }
                check_dag(&whole, &file, max_links);
                if chunk_size_bytes >= 3 {
                    assert_leaves_tile_file(&whole);
                }
                assert_eq!(whole.sha512, Some(<[u8; 64]>::from(Sha512::digest(&file))));
            }
        }
    }
}

#[test]
fn any_split_gives_the_same_dag_on_real_profiles() {
    for profile in Profile::ALL {
        let chunk = profile.chunk_size_bytes() as usize;
        for file_len in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk + 5] {
            let file = pattern_bytes(file_len, 7);
            let whole = build_whole(DagBuilder::new(profile, false), &file);
            assert_eq!(whole.profile, profile);
            assert_eq!(whole.sha512, None);
            check_dag(&whole, &file, profile.max_links_per_node());
            assert_leaves_tile_file(&whole);
            assert_same_dag(
                &whole,
                &build_split(DagBuilder::new(profile, false), &file, &[4097, 1, 65_536]),
            );
            if file_len <= 2000 {
                assert_same_dag(
                    &whole,
                    &build_split(DagBuilder::new(profile, false), &file, &[1]),
                );
            }
            let expected_leaf_count = file_len.div_ceil(chunk).max(1);
            let leaf_count = whole
                .blocks
                .iter()
                .filter(|block| !matches!(block.kind, BlockKind::Interior(_)))
                .count();
            assert_eq!(leaf_count, expected_leaf_count);
            let interior_count = whole.blocks.len() - leaf_count;
            assert_eq!(interior_count, usize::from(expected_leaf_count > 1));
        }
    }
}

#[test]
fn one_byte_at_a_time_matches_whole_over_several_real_chunks() {
    let file = pattern_bytes(2 * 262_144 + 3, 11);
    let profile = Profile::UnixfsV0_2015;
    let whole = build_whole(DagBuilder::new(profile, true), &file);
    assert_same_dag(
        &whole,
        &build_split(DagBuilder::new(profile, true), &file, &[1]),
    );
}

#[test]
fn single_chunk_file_is_its_own_root() {
    for file_len in [0usize, 1, 1000, 1_048_576] {
        let file = pattern_bytes(file_len, 3);
        let v1 = build_whole(DagBuilder::new(Profile::UnixfsV1_2025, false), &file);
        assert_eq!(v1.blocks.len(), 1);
        assert_eq!(v1.blocks[0].kind, BlockKind::RawLeaf);
        assert_eq!(v1.root, v1.blocks[0].cid);
        // The checksum CID of a sha256 artifact ≤ 1 MiB is its v1-2025 root.
        assert_eq!(
            v1.root,
            checksum_cid(DigestAlgo::Sha256, &v1.sha256).unwrap()
        );

        let v0 = build_whole(
            DagBuilder::new(Profile::UnixfsV0_2015, false),
            &file[..file_len.min(262_144)],
        );
        assert_eq!(v0.blocks.len(), 1);
        assert_eq!(v0.blocks[0].kind, BlockKind::PbLeaf);
        assert_eq!(v0.root, v0.blocks[0].cid);
        assert_eq!(v0.root.version(), cid::Version::V0);
    }
}

#[test]
fn empty_file_roots_are_the_well_known_empty_blocks() {
    let v1 = build_whole(DagBuilder::new(Profile::UnixfsV1_2025, false), &[]);
    assert_eq!(
        v1.root.to_string(),
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );
    assert_eq!(v1.blocks[0].len, 0);
    let v0 = build_whole(DagBuilder::new(Profile::UnixfsV0_2015, false), &[]);
    assert_eq!(
        v0.root.to_string(),
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    );
    assert!(block_matches_cid(&v0.root, &pb_leaf_block(&[])));
}

#[test]
fn a_lone_leaf_in_a_later_batch_gets_its_own_parent() {
    // Like 1025 chunks under a 1024-link profile: [4 leaves] [1 leaf] -> each batch becomes a parent.
    let file = pattern_bytes(5, 1);
    let dag = build_whole(
        DagBuilder::with_layout_for_tests(Profile::UnixfsV1_2025, 1, 4, false),
        &file,
    );
    let BlockKind::Interior(root_bytes) = &dag
        .blocks
        .iter()
        .find(|block| block.cid == dag.root)
        .unwrap()
        .kind
    else {
        panic!("root is interior");
    };
    let root = decode_node(root_bytes);
    assert_eq!(root.unixfs_blocksizes, [4, 1]);
    let second_child = dag
        .blocks
        .iter()
        .find(|block| block.cid == root.links[1].0)
        .unwrap();
    let BlockKind::Interior(second_child_bytes) = &second_child.kind else {
        panic!("second child is interior");
    };
    assert_eq!(decode_node(second_child_bytes).links.len(), 1);
    check_dag(&dag, &file, 4);
}

#[test]
fn repeated_chunks_are_listed_once() {
    let file = vec![0u8; 3 * 262_144];
    let dag = build_whole(DagBuilder::new(Profile::UnixfsV0_2015, false), &file);
    assert_eq!(dag.blocks.len(), 2, "one leaf and the root");
    check_dag(&dag, &file, 174);
}

#[test]
fn checksum_cids_wrap_the_registry_digest() {
    let artifact = b"a small crate";
    let sha256_digest = Sha256::digest(artifact);
    let sha256_cid = checksum_cid(DigestAlgo::Sha256, &sha256_digest).unwrap();
    assert_eq!(sha256_cid.version(), cid::Version::V1);
    assert_eq!(sha256_cid.codec(), CODEC_RAW);
    assert_eq!(sha256_cid.hash().code(), MULTIHASH_SHA2_256);
    assert_eq!(sha256_cid.hash().digest(), sha256_digest.as_slice());
    assert!(block_matches_cid(&sha256_cid, artifact));
    assert!(sha256_cid.to_string().starts_with("bafkrei"));

    let sha512_digest = Sha512::digest(artifact);
    let sha512_cid = checksum_cid(DigestAlgo::Sha512, &sha512_digest).unwrap();
    assert_eq!(sha512_cid.codec(), CODEC_RAW);
    assert_eq!(sha512_cid.hash().code(), MULTIHASH_SHA2_512);
    assert_eq!(sha512_cid.hash().digest(), sha512_digest.as_slice());
    assert!(block_matches_cid(&sha512_cid, artifact));
    assert!(!block_matches_cid(&sha512_cid, b"a small crate!"));
    // Round trip through the string form.
    assert_eq!(sha512_cid.to_string().parse::<Cid>().unwrap(), sha512_cid);

    let error = checksum_cid(DigestAlgo::Sha256, &sha512_digest).unwrap_err();
    assert!(matches!(
        error,
        CidError::DigestLength {
            expected: 32,
            actual: 64,
            ..
        }
    ));
    assert!(checksum_cid(DigestAlgo::Sha512, &sha256_digest).is_err());
    assert!(checksum_cid(DigestAlgo::Sha256, &[]).is_err());
}

#[test]
fn block_matches_cid_checks_the_hash_and_rejects_other_functions() {
    let bytes = pattern_bytes(5000, 9);
    let raw_cid = Cid::new_v1(CODEC_RAW, sha256_multihash(&Sha256::digest(&bytes)));
    assert!(block_matches_cid(&raw_cid, &bytes));
    let mut altered = bytes.clone();
    altered[4999] ^= 1;
    assert!(!block_matches_cid(&raw_cid, &altered));
    assert!(!block_matches_cid(&raw_cid, &bytes[..4999]));
    // Same digest bytes but labelled identity (0x00) or sha3-256 (0x16): not verifiable, so never a match.
    for unusable_code in [0x00u64, 0x16] {
        let relabelled = Cid::new_v1(
            CODEC_RAW,
            Multihash::wrap(unusable_code, &Sha256::digest(&bytes)).unwrap(),
        );
        assert!(!block_matches_cid(&relabelled, &bytes));
    }
    // A truncated sha2-256 digest must not match.
    let truncated = Cid::new_v1(
        CODEC_RAW,
        Multihash::wrap(MULTIHASH_SHA2_256, &Sha256::digest(&bytes)[..16]).unwrap(),
    );
    assert!(!block_matches_cid(&truncated, &bytes));
}

#[test]
fn pb_leaf_block_round_trips_through_the_builder() {
    for file_len in [0usize, 1, 127, 128, 16_384, 262_143, 262_144] {
        let file = pattern_bytes(file_len, 5);
        let leaf_block = pb_leaf_block(&file);
        let node = decode_node(&leaf_block);
        assert!(node.links.is_empty());
        assert_eq!(node.unixfs_type, 2);
        assert_eq!(node.unixfs_data, file);
        assert_eq!(node.unixfs_filesize, file_len as u64);
        assert!(node.unixfs_blocksizes.is_empty());
        let dag = build_whole(DagBuilder::new(Profile::UnixfsV0_2015, false), &file);
        assert!(block_matches_cid(&dag.root, &leaf_block));
        assert_eq!(
            (dag.blocks[0].offset, dag.blocks[0].len),
            (0, file_len as u64)
        );
    }
}

#[test]
fn dag_of_file_matches_the_streaming_builder() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("artifact.bin");
    // At and just above the size where the helper thread takes over the whole-file digests, and far above it.
    let chunk = Profile::UnixfsV1_2025.chunk_size_bytes() as usize;
    for file_len in [chunk, chunk + 1, 3 * 1_048_576 + 12_345, 9 * 1_048_576 + 7] {
        let file = pattern_bytes(file_len, 21);
        std::fs::write(&path, &file).unwrap();
        for profile in Profile::ALL {
            for also_sha512 in [false, true] {
                let from_path = dag_of_file(&path, profile, also_sha512).unwrap();
                let streamed =
                    build_split(DagBuilder::new(profile, also_sha512), &file, &[100_003]);
                assert_same_dag(&from_path, &streamed);
                check_dag(&from_path, &file, profile.max_links_per_node());
                assert_leaves_tile_file(&from_path);
            }
        }
    }
    assert!(dag_of_file(
        &directory.path().join("missing"),
        Profile::UnixfsV1_2025,
        false
    )
    .is_err());
}

/// The digest helper thread is started once per calling thread and serves every later input, also after an input
/// whose read failed half-way (that one is an error, the next one hashes right), until it is stopped.
#[test]
fn each_thread_keeps_one_digest_helper_across_inputs_and_read_errors() {
    struct FailsAtEnd<'a>(&'a [u8]);
    impl std::io::Read for FailsAtEnd<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buffer.len().min(self.0.len());
            buffer[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let profile = Profile::UnixfsV1_2025;
    let chunk = profile.chunk_size_bytes() as usize;
    let file = pattern_bytes(3 * chunk + 5, 4);
    let len = file.len() as u64;
    let expected = build_whole(DagBuilder::new(profile, true), &file);
    let extra = ExtraDigests::sha512_if(true);
    let started = || file_reader::HELPERS_STARTED_HERE.with(|started| started.get());
    let before = started();
    for _ in 0..5 {
        assert_same_dag(
            &crate::dag_of_reader(&file[..], len, profile, extra).unwrap(),
            &expected,
        );
    }
    let half = FailsAtEnd(&file[..2 * chunk + 100]);
    assert!(crate::dag_of_reader(half, len, profile, extra).is_err());
    assert_same_dag(
        &crate::dag_of_reader(&file[..], len, profile, extra).unwrap(),
        &expected,
    );
    assert!(
        started() >= 1 && started() - before <= 1,
        "{before} -> {}",
        started()
    );
    // Stopped (a scan ended): the next large input starts a new helper.
    let running = started();
    crate::stop_digest_helper();
    assert_same_dag(
        &crate::dag_of_reader(&file[..], len, profile, extra).unwrap(),
        &expected,
    );
    assert_eq!(started(), running + 1);
}

/// A byte range inside a larger file has exactly the DAG (and digests) of a file holding only those bytes, at the
/// interesting sizes on both read paths, with block offsets relative to the range; a range past the end is an error.
#[test]
fn dag_of_a_file_range_is_the_dag_of_the_extracted_bytes() {
    let directory = tempfile::tempdir().unwrap();
    let (container, extracted) = (
        directory.path().join("container.bin"),
        directory.path().join("extracted.bin"),
    );
    let chunk = Profile::UnixfsV1_2025.chunk_size_bytes() as usize;
    let prefix = pattern_bytes(517, 1);
    let suffix = pattern_bytes(300, 2);
    for range_len in [
        0,
        1,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk - 1,
        2 * chunk + 1,
        4 * 1_048_576 + 3,
    ] {
        let body = pattern_bytes(range_len, 31);
        std::fs::write(&container, [&prefix[..], &body, &suffix].concat()).unwrap();
        std::fs::write(&extracted, &body).unwrap();
        let extra = ExtraDigests {
            sha512: true,
            sha1: false,
        };
        for profile in Profile::ALL {
            let from_range = dag_of_file_range_with(
                &container,
                prefix.len() as u64,
                range_len as u64,
                profile,
                extra,
            )
            .unwrap();
            let from_file = dag_of_file_with(&extracted, profile, extra).unwrap();
            assert_same_dag(&from_range, &from_file);
            assert_leaves_tile_file(&from_range);
        }
    }
    let file_len = std::fs::metadata(&container).unwrap().len();
    for (offset, len) in [(0, file_len + 1), (file_len, 1), (u64::MAX, 2)] {
        assert!(
            dag_of_file_range_with(
                &container,
                offset,
                len,
                Profile::UnixfsV1_2025,
                ExtraDigests::default()
            )
            .is_err(),
            "{offset}+{len}"
        );
    }
}

#[test]
fn io_write_feeds_the_builder() {
    use std::io::Write;
    let file = pattern_bytes(70_000, 2);
    let mut builder = DagBuilder::with_layout_for_tests(Profile::UnixfsV0_2015, 1000, 3, false);
    builder.write_all(&file).unwrap();
    let written = builder.finish();
    let direct = build_whole(
        DagBuilder::with_layout_for_tests(Profile::UnixfsV0_2015, 1000, 3, false),
        &file,
    );
    assert_same_dag(&written, &direct);
}

#[test]
fn extra_digests_include_sha1_on_both_read_paths() {
    use sha1::Sha1;
    let dir = tempfile::tempdir().unwrap();
    // Below and above the helper-thread threshold: both whole-file hashing paths must fill in sha1.
    for file_len in [0usize, 5, 262_144, 262_145, 4 * 1_048_576 + 3] {
        let bytes = pattern_bytes(file_len, 11);
        let path = dir.path().join(format!("f{file_len}"));
        std::fs::write(&path, &bytes).unwrap();
        let expected_sha1: [u8; 20] = Sha1::digest(&bytes).into();
        let both = ExtraDigests {
            sha512: true,
            sha1: true,
        };
        let dag = dag_of_file_with(&path, Profile::UnixfsV1_2025, both).unwrap();
        assert_eq!(dag.sha1, Some(expected_sha1), "len {file_len}");
        assert_eq!(dag.sha512, Some(<[u8; 64]>::from(Sha512::digest(&bytes))));
        assert_eq!(dag.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        let only_sha1 = ExtraDigests {
            sha512: false,
            sha1: true,
        };
        let dag1 = dag_of_file_with(&path, Profile::UnixfsV0_2015, only_sha1).unwrap();
        assert_eq!((dag1.sha1, dag1.sha512), (Some(expected_sha1), None));
        let plain = dag_of_file(&path, Profile::UnixfsV1_2025, false).unwrap();
        assert_eq!((plain.sha1, plain.sha512), (None, None));
        assert_eq!(plain.root, dag.root);
        let mut builder = DagBuilder::with_extra_digests(Profile::UnixfsV1_2025, only_sha1);
        builder.update(&bytes);
        assert_eq!(builder.finish().sha1, Some(expected_sha1));
    }
}

/// A symlink, a FIFO or a directory in a file's place is refused at once (never followed, never blocking on the
/// FIFO's open): the indexer checks the path with `symlink_metadata` first and must not be raced into reading
/// something else.
#[cfg(unix)]
#[test]
fn dag_of_file_refuses_symlinks_fifos_and_dirs_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::write(&real, b"bytes").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<bool> = [&link, &fifo, &sub]
            .iter()
            .map(|p| crate::dag_of_file(p, crate::Profile::UnixfsV1_2025, false).is_err())
            .collect();
        let _ = tx.send(results);
    });
    let refused = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("dag_of_file blocked on a FIFO");
    assert_eq!(refused, vec![true, true, true]);
    assert!(crate::dag_of_file(&real, crate::Profile::UnixfsV1_2025, false).is_ok());
}

/// A hard link has no target to check: a cache file with more links than pkgseed accounts for (its own name, plus
/// pkgseed's store link when that is the same file) may be a private file from outside the root, and is refused.
#[cfg(unix)]
#[test]
fn check_confined_refuses_a_hard_link_out_of_the_root_unless_the_extra_link_is_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside, store) = (
        dir.path().join("root"),
        dir.path().join("outside"),
        dir.path().join("store"),
    );
    for d in [&root, &outside, &store] {
        std::fs::create_dir(d).unwrap();
    }
    let private = outside.join("secret.tar.gz");
    std::fs::write(&private, b"private bytes").unwrap();
    let artifact = root.join("x-1.0.0.crate");
    std::fs::hard_link(&private, &artifact).unwrap();
    let meta = std::fs::symlink_metadata(&artifact).unwrap();
    let refused = check_confined(&meta, || None).unwrap_err();
    assert_eq!(
        refused,
        Unconfined::HardLinked {
            links: 2,
            accounted: 1
        }
    );
    assert!(refused.to_string().contains("outside the cache root"));
    // A link named as ours but that is another file accounts for nothing.
    let other = store.join("bafyother");
    std::fs::write(&other, b"private bytes").unwrap();
    assert!(check_confined(&meta, || Some(other.clone())).is_err());

    // pkgseed's store holds one link: accounted for, but the outside link still is not.
    let own = store.join("bafyown");
    std::fs::hard_link(&artifact, &own).unwrap();
    let meta = std::fs::symlink_metadata(&artifact).unwrap();
    assert_eq!(
        check_confined(&meta, || Some(own.clone())),
        Err(Unconfined::HardLinked {
            links: 3,
            accounted: 2
        })
    );
    std::fs::remove_file(&private).unwrap();
    let meta = std::fs::symlink_metadata(&artifact).unwrap();
    assert_eq!(check_confined(&meta, || Some(own.clone())), Ok(()));
    assert!(check_confined(&meta, || None).is_err());
    // The store's file itself (the artifact moved there once the original is gone) has one link.
    std::fs::remove_file(&artifact).unwrap();
    let meta = std::fs::symlink_metadata(&own).unwrap();
    assert_eq!(check_confined(&meta, || Some(own.clone())), Ok(()));
    assert_eq!(check_confined(&meta, || None), Ok(()));
}

/// A 1 TiB file of holes is refused from its metadata alone (no byte read, so at once); a file of
/// [`SPARSE_CHECK_MIN_BYTES`] or more that is mostly written passes, and a smaller sparse one is not checked.
#[cfg(unix)]
#[test]
fn check_confined_refuses_an_enormous_sparse_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge-1.0.0.crate");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(1 << 40).unwrap();
    let started = std::time::Instant::now();
    let refused = check_confined(&std::fs::symlink_metadata(&huge).unwrap(), || None);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match refused {
        Err(Unconfined::Sparse {
            len_bytes,
            allocated_bytes,
        }) => {
            assert_eq!(len_bytes, 1 << 40);
            assert!(allocated_bytes < 1 << 20, "{allocated_bytes}");
        }
        other => panic!("expected a sparse refusal, got {other:?}"),
    }
    drop(file);

    let small = dir.path().join("small");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(SPARSE_CHECK_MIN_BYTES - 1)
        .unwrap();
    assert_eq!(
        check_confined(&std::fs::symlink_metadata(&small).unwrap(), || None),
        Ok(())
    );

    // 64 MiB written, then extended to 100 MiB: 64 % allocated, which passes (an archive is written in full).
    let written = dir.path().join("written");
    let mut file = std::fs::File::create(&written).unwrap();
    std::io::Write::write_all(
        &mut file,
        &pattern_bytes(SPARSE_CHECK_MIN_BYTES as usize, 7),
    )
    .unwrap();
    file.set_len(100 << 20).unwrap();
    file.sync_all().unwrap();
    assert_eq!(
        check_confined(&std::fs::symlink_metadata(&written).unwrap(), || None),
        Ok(())
    );
}

/// Devices, FIFOs, directories and symlinks are refused, saying what they are.
#[cfg(unix)]
#[test]
fn check_confined_refuses_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link-1.0.0.crate");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let sub = dir.path().join("dir-1.0.0.crate");
    std::fs::create_dir(&sub).unwrap();
    let meta = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(
        check_confined(&meta(&link), || None),
        Err(Unconfined::NotRegular("a symlink (never followed)"))
    );
    assert_eq!(
        check_confined(&meta(&sub), || None),
        Err(Unconfined::NotRegular("a directory"))
    );
    assert_eq!(
        check_confined(&meta(std::path::Path::new("/dev/null")), || None),
        Err(Unconfined::NotRegular("a character device"))
    );
}
