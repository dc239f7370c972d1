//! Hand-written protobuf encoding of the two dag-pb node shapes a UnixFS file DAG needs, byte for byte as the
//! reference (`@ipld/dag-pb` with links-first field order, `ipfs-unixfs` marshal) writes them.
//!
//! dag-pb `PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }`, links written before data.
//! `PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }` — the reference writes
//! `Name: ""` as an explicit empty field (`12 00`).
//! UnixFS `Data { Type = 1; Data = 2 (omitted when empty); filesize = 3; repeated blocksizes = 4 (unpacked) }`.

use cid::Cid;

const UNIXFS_TYPE_FILE: u64 = 2;

const TAG_PBNODE_DATA: u8 = 0x0a; // field 1, length-delimited
const TAG_PBNODE_LINK: u8 = 0x12; // field 2, length-delimited
const TAG_PBLINK_HASH: u8 = 0x0a; // field 1, length-delimited
const TAG_PBLINK_NAME: u8 = 0x12; // field 2, length-delimited
const TAG_PBLINK_TSIZE: u8 = 0x18; // field 3, varint
const TAG_UNIXFS_TYPE: u8 = 0x08; // field 1, varint
const TAG_UNIXFS_DATA: u8 = 0x12; // field 2, length-delimited
const TAG_UNIXFS_FILESIZE: u8 = 0x18; // field 3, varint
const TAG_UNIXFS_BLOCKSIZE: u8 = 0x20; // field 4, varint

/// Appends `value` as an unsigned LEB128 varint (protobuf's and multiformats' encoding).
pub fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len_bytes(value: u64) -> usize {
    let significant_bits = 64 - (value | 1).leading_zeros() as usize;
    significant_bits.div_ceil(7)
}

/// One link of an interior node: the child's CID, its cumulative size (`Tsize`: the child's block plus everything
/// below it) and how many file bytes it covers (the `blocksizes` entry).
#[derive(Debug, Clone)]
pub(crate) struct ChildLink {
    pub cid: Cid,
    pub tsize_bytes: u64,
    pub file_bytes: u64,
}

/// Encodes an interior dag-pb node: one link per child (empty name), then UnixFS `File` data with `filesize` and one
/// `blocksizes` entry per child.
pub(crate) fn encode_interior_node(children: &[ChildLink]) -> Vec<u8> {
    let mut unixfs_data = Vec::with_capacity(16 + children.len() * 4);
    unixfs_data.push(TAG_UNIXFS_TYPE);
    push_varint(&mut unixfs_data, UNIXFS_TYPE_FILE);
    unixfs_data.push(TAG_UNIXFS_FILESIZE);
    push_varint(
        &mut unixfs_data,
        children.iter().map(|child| child.file_bytes).sum(),
    );
    for child in children {
        unixfs_data.push(TAG_UNIXFS_BLOCKSIZE);
        push_varint(&mut unixfs_data, child.file_bytes);
    }

    let mut node = Vec::with_capacity(unixfs_data.len() + 8 + children.len() * 56);
    let mut link = Vec::with_capacity(56);
    for child in children {
        let hash = child.cid.to_bytes();
        link.clear();
        link.push(TAG_PBLINK_HASH);
        push_varint(&mut link, hash.len() as u64);
        link.extend_from_slice(&hash);
        link.push(TAG_PBLINK_NAME);
        push_varint(&mut link, 0);
        link.push(TAG_PBLINK_TSIZE);
        push_varint(&mut link, child.tsize_bytes);

        node.push(TAG_PBNODE_LINK);
        push_varint(&mut node, link.len() as u64);
        node.extend_from_slice(&link);
    }
    node.push(TAG_PBNODE_DATA);
    push_varint(&mut node, unixfs_data.len() as u64);
    node.extend_from_slice(&unixfs_data);
    node
}

/// The bytes a legacy dag-pb leaf puts around the `chunk_len` file bytes it wraps: `(prefix, suffix)`, so that the
/// block is `prefix ++ chunk ++ suffix`. Lets a leaf be hashed without copying the chunk.
pub(crate) fn pb_leaf_framing(chunk_len: u64) -> (Vec<u8>, Vec<u8>) {
    let mut suffix = Vec::with_capacity(11);
    suffix.push(TAG_UNIXFS_FILESIZE);
    push_varint(&mut suffix, chunk_len);

    // UnixFS message: Type, then Data (only when non-empty: the reference drops an empty Data), then filesize.
    let data_field_len = if chunk_len == 0 {
        0
    } else {
        1 + varint_len_bytes(chunk_len) + chunk_len as usize
    };
    let unixfs_len = 2 + data_field_len + suffix.len();

    let mut prefix = Vec::with_capacity(16);
    prefix.push(TAG_PBNODE_DATA);
    push_varint(&mut prefix, unixfs_len as u64);
    prefix.push(TAG_UNIXFS_TYPE);
    push_varint(&mut prefix, UNIXFS_TYPE_FILE);
    if chunk_len > 0 {
        prefix.push(TAG_UNIXFS_DATA);
        push_varint(&mut prefix, chunk_len);
    }
    (prefix, suffix)
}

/// Reads a protobuf base-128 varint at the start of `bytes`: `(value, rest)`.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err("truncated or overlong varint".into())
}

/// One protobuf field split off a message: (field number, length-delimited body if any, the rest of the message).
type Field<'a> = (u64, Option<&'a [u8]>, &'a [u8]);

/// Splits one protobuf field off `bytes`. Varint fields are skipped (no body); the fixed-width and group wire types
/// never occur in dag-pb and are refused.
fn next_field(bytes: &[u8]) -> Result<Field<'_>, String> {
    let (key, rest) = read_varint(bytes)?;
    match key & 7 {
        0 => Ok((key >> 3, None, read_varint(rest)?.1)),
        2 => {
            let (len, rest) = read_varint(rest)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= rest.len())
                .ok_or_else(|| format!("field of {len} bytes runs past the end of the node"))?;
            let (body, rest) = rest.split_at(len);
            Ok((key >> 3, Some(body), rest))
        }
        wire => Err(format!("unsupported protobuf wire type {wire}")),
    }
}

/// The child CIDs of a dag-pb node, in link order (`PBNode.Links[].Hash`). Names, sizes and the UnixFS data are
/// skipped; a malformed node is an error, never a guess.
pub(crate) fn dag_pb_links(block: &[u8]) -> Result<Vec<Cid>, String> {
    let mut links = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (field, body, after) = next_field(rest)?;
        rest = after;
        if field != 2 {
            continue;
        }
        let mut link = body.ok_or("a dag-pb link is not length-delimited")?;
        let mut hash = None;
        while !link.is_empty() {
            let (field, body, after) = next_field(link)?;
            link = after;
            if field == 1 {
                let bytes = body.ok_or("a dag-pb link hash is not length-delimited")?;
                hash = Some(Cid::try_from(bytes).map_err(|e| format!("bad link CID: {e}"))?);
            }
        }
        links.push(hash.ok_or("a dag-pb link has no hash")?);
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_encoding() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            262_144,
            1 << 35,
            u64::MAX,
        ] {
            let mut encoded = Vec::new();
            push_varint(&mut encoded, value);
            assert_eq!(encoded.len(), varint_len_bytes(value), "value {value}");
        }
        let mut encoded = Vec::new();
        push_varint(&mut encoded, 300);
        assert_eq!(encoded, [0xac, 0x02]);
    }

    #[test]
    fn empty_pb_leaf_is_the_well_known_empty_file_node() {
        let (prefix, suffix) = pb_leaf_framing(0);
        let block = [prefix, suffix].concat();
        // PBNode{Data: UnixFS{Type: File, filesize: 0}} — the block behind QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH.
        assert_eq!(block, [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn dag_pb_links_reads_back_the_links_of_an_interior_node() {
        let children: Vec<ChildLink> = (0..3u8)
            .map(|i| ChildLink {
                cid: crate::checksum_cid(crate::DigestAlgo::Sha256, &[i; 32]).unwrap(),
                tsize_bytes: 1 << 20,
                file_bytes: 1 << 20,
            })
            .collect();
        let node = encode_interior_node(&children);
        let links = dag_pb_links(&node).unwrap();
        assert_eq!(
            links,
            children.iter().map(|c| c.cid).collect::<Vec<_>>(),
            "links in order"
        );
        // A leaf has no links; truncated or garbage nodes are errors.
        assert!(dag_pb_links(&crate::pb_leaf_block(b"abc"))
            .unwrap()
            .is_empty());
        assert!(dag_pb_links(&node[..node.len() - 3]).is_err());
        assert!(dag_pb_links(&[0x12, 0x05, 0x0a, 0x03, 1, 2, 3]).is_err());
    }
}
