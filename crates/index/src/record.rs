//! The compact binary encoding of an [`ArtifactRecord`] stored in the `artifacts` table (schemas 2 and 3), and the
//! reader for the JSON records schema 1 wrote (still decoded, so an upgraded index keeps its records).
//!
//! Layout, all integers little-endian: format byte [`FORMAT_BINARY`]; size_bytes u64; mtime_ns i128; inode u64;
//! then the text fields, each a LEB128 length and its bytes: ecosystem, name, version, origin, path, profile; then
//! root_cid and checksum_cid as a tagged CID (0 = absent, 1 = text, 2 = binary CID that prints as the stored text);
//! then registry_checksum as a tagged checksum (1 = text, 2 = `algo` text and the raw digest of a lowercase hex
//! suffix). The id is the table key and is not repeated. A JSON record starts with `{`, never with a format byte.
//!
//! An artifact that is a byte range of its file (schema 3) is written with format byte [`FORMAT_BINARY_RANGE`]: the
//! same layout followed by the content offset and length (u64 each). Whole-file records keep format 2, byte for
//! byte, so every record written before decodes unchanged, with the content = the whole file.
//!
//! Schema 4 writes format [`FORMAT_VARINT`] ([`FORMAT_VARINT_RANGE`] with a range): the same fields, but size,
//! inode, the content range and the zigzagged mtime as LEB128 (≈ 17 bytes instead of 32 or 48), and two more tags
//! that name what the record already holds: a checksum CID equal to the root CID is [`TAG_SAME_AS_ROOT`] (a
//! single-chunk file's root is its raw sha256 CID, the checksum CID), and a registry checksum whose digest is the
//! checksum CID's multihash digest is [`TAG_CID_DIGEST`] followed by its `algo` text only. Together ≈ 100 bytes
//! less per typical cargo record. Formats 2 and 3 are still read.
//!
//! Schema 5 writes format [`FORMAT_PACKED`] ([`FORMAT_PACKED_RANGE`] with a range): format 4 with the ecosystem and
//! the profile as one-byte codes of frozen name lists (text after code 0 for any other name), and the path as
//! parts: literal runs, and one-byte references to the record's name, version and origin wherever the path holds
//! them (a cargo crate's path holds all three). ≈ 70 bytes less per cargo record than format 4.

use std::path::PathBuf;

use cid::Cid;
use pkgseed_unixfs::push_varint;

use crate::{ArtifactId, ArtifactRecord, ContentRange, IndexError};

/// First byte of a binary record (a JSON record starts with `{`).
const FORMAT_BINARY: u8 = 2;
/// First byte of a binary record followed by its content range.
const FORMAT_BINARY_RANGE: u8 = 3;
/// First byte of a record with LEB128 integers (schema 4), whole file.
const FORMAT_VARINT: u8 = 4;
/// First byte of a record with LEB128 integers (schema 4), followed by its content range.
const FORMAT_VARINT_RANGE: u8 = 5;
/// First byte of a format-4 record whose ecosystem and profile are codes and whose path refers to its other text
/// fields (schema 5), whole file.
const FORMAT_PACKED: u8 = 6;
/// The same, followed by its content range.
const FORMAT_PACKED_RANGE: u8 = 7;

/// The ecosystem names a packed record stores as one byte (code = position + 1; 0 = the name follows as text).
/// Frozen: a name may be added at the end, never moved or removed, or old records would decode wrongly.
const KNOWN_ECOSYSTEMS: [&str; 12] = [
    "cargo", "npm", "yarn", "pip", "apt", "rubygems", "composer", "nuget", "conda", "maven",
    "gradle", "go",
];
/// The profile names a packed record stores as one byte, frozen the same way.
const KNOWN_PROFILES: [&str; 2] = ["unixfs-v1-2025", "unixfs-v0-2015"];
/// The checksum algorithm names a packed record stores as one byte, frozen the same way.
const KNOWN_ALGOS: [&str; 4] = ["sha256", "sha512", "sha1", "md5"];

/// A packed path is a series of parts, each introduced by a LEB128 code: the end, one of the record's own text
/// fields (the path of a cargo crate holds its registry dir, name and version), a slice of the registry checksum's
/// digest in lowercase hex (npm's cache names each file by its integrity digest), or a run of literal bytes.
const PART_END: u64 = 0;
/// Codes 1..=3: the record's name, version and origin, in that order ([`path_references`]).
const PART_FIELDS: u64 = 3;
/// Followed by the slice's start and length in the digest's hex text.
const PART_DIGEST_HEX: u64 = 4;
/// Codes from here on: a literal run of (code - 4) bytes follows.
const PART_FIRST_LITERAL: u64 = 5;
/// A field is referred to only where it is at least this long (a reference costs one byte).
const MIN_FIELD_REFERENCE_BYTES: usize = 2;
/// A digest slice is referred to only where it is at least this long (a reference costs about three bytes).
const MIN_DIGEST_REFERENCE_BYTES: usize = 6;

const TAG_ABSENT: u8 = 0;
const TAG_TEXT: u8 = 1;
const TAG_COMPACT: u8 = 2;
/// The checksum CID is the root CID (format 4 and later).
const TAG_SAME_AS_ROOT: u8 = 3;
/// The registry checksum's digest is the checksum CID's multihash digest; only its `algo` is stored (format 4 and
/// later: as text, as a code in formats 6 and 7).
const TAG_CID_DIGEST: u8 = 3;

/// Encodes `record` compactly (format 6, or 7 with a content range). A path that is not representable as bytes on
/// this platform (non-UTF-8 outside unix) is written as JSON, which [`decode`] also reads.
///
/// Layout after the format byte: size, zigzagged mtime and inode as LEB128; the ecosystem code; name, version and
/// origin as text; the profile code; the root CID, the checksum CID and the registry checksum as formats 4 and 5
/// write them (the checksum's algorithm as a code); the path as parts ([`put_path`]); the content range.
pub(crate) fn encode(record: &ArtifactRecord) -> Result<Vec<u8>, IndexError> {
    let Some(path) = path_bytes(record) else {
        return serde_json::to_vec(record)
            .map_err(|e| IndexError::Db(format!("cannot encode artifact record: {e}")));
    };
    let mut out = Vec::with_capacity(64 + path.len());
    out.push(match record.content_range {
        None => FORMAT_PACKED,
        Some(_) => FORMAT_PACKED_RANGE,
    });
    push_varint(&mut out, record.size_bytes);
    push_varint(&mut out, zigzag(record.mtime_ns));
    push_varint(&mut out, record.inode);
    put_named(&mut out, &record.ecosystem, &KNOWN_ECOSYSTEMS);
    put_bytes(&mut out, record.name.as_bytes());
    put_bytes(&mut out, record.version.as_bytes());
    put_bytes(&mut out, record.origin.as_bytes());
    put_named(&mut out, &record.profile, &KNOWN_PROFILES);
    put_cids_and_checksum(&mut out, record, Some(&KNOWN_ALGOS));
    put_path(
        &mut out,
        path,
        path_references(record),
        digest_hex(&record.registry_checksum),
    );
    put_range(&mut out, record);
    Ok(out)
}

/// The fields a packed path may refer to, by part code - 1.
fn path_references(record: &ArtifactRecord) -> [&[u8]; PART_FIELDS as usize] {
    [
        record.name.as_bytes(),
        record.version.as_bytes(),
        record.origin.as_bytes(),
    ]
}

/// The lowercase hex digest of an `algo:hex` registry checksum, which a packed path may refer to.
fn digest_hex(registry_checksum: &str) -> &[u8] {
    match registry_checksum.split_once(':') {
        Some((_, hex)) if lowercase_hex(hex).is_some() => hex.as_bytes(),
        _ => &[],
    }
}

/// `text` as a code from `known`, or as text after code 0.
fn put_named(out: &mut Vec<u8>, text: &str, known: &[&str]) {
    match known.iter().position(|name| *name == text) {
        Some(at) => out.push(at as u8 + 1),
        None => {
            out.push(0);
            put_bytes(out, text.as_bytes());
        }
    }
}

/// `path` as parts: wherever one of `fields` starts (the longest if several do) a one-byte reference to it, else
/// wherever a long enough slice of `digest_hex` starts (the longest) a reference to that slice; literal runs between.
fn put_path(
    out: &mut Vec<u8>,
    path: &[u8],
    fields: [&[u8]; PART_FIELDS as usize],
    digest_hex: &[u8],
) {
    let put_literal = |out: &mut Vec<u8>, run: &[u8]| {
        if !run.is_empty() {
            push_varint(out, PART_FIRST_LITERAL + run.len() as u64 - 1);
            out.extend_from_slice(run);
        }
    };
    let mut literal_from = 0;
    let mut at = 0;
    while at < path.len() {
        let rest = &path[at..];
        let field = (0..fields.len())
            .filter(|&k| {
                fields[k].len() >= MIN_FIELD_REFERENCE_BYTES && rest.starts_with(fields[k])
            })
            .max_by_key(|&k| fields[k].len());
        if let Some(k) = field {
            put_literal(out, &path[literal_from..at]);
            push_varint(out, k as u64 + 1);
            at += fields[k].len();
            literal_from = at;
            continue;
        }
        // Only where at least the minimum run of hex digits starts (most positions of a path are not).
        let hex_run_starts = rest.len() >= MIN_DIGEST_REFERENCE_BYTES
            && rest[..MIN_DIGEST_REFERENCE_BYTES]
                .iter()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        let digest_slice = (0..digest_hex.len())
            .filter(|_| hex_run_starts)
            .map(|start| {
                let len = digest_hex[start..]
                    .iter()
                    .zip(rest)
                    .take_while(|(a, b)| a == b)
                    .count();
                (start, len)
            })
            .max_by_key(|&(_, len)| len)
            .filter(|&(_, len)| len >= MIN_DIGEST_REFERENCE_BYTES);
        if let Some((start, len)) = digest_slice {
            put_literal(out, &path[literal_from..at]);
            push_varint(out, PART_DIGEST_HEX);
            push_varint(out, start as u64);
            push_varint(out, len as u64);
            at += len;
            literal_from = at;
            continue;
        }
        at += 1;
    }
    put_literal(out, &path[literal_from..]);
    push_varint(out, PART_END);
}

/// The root CID, the checksum CID (by reference when it is the root) and the registry checksum (by reference when
/// its digest is the checksum CID's), as formats 4 to 7 write them; the checksum's algorithm as a code of `algos`
/// when given (formats 6 and 7), else as text.
fn put_cids_and_checksum(out: &mut Vec<u8>, record: &ArtifactRecord, algos: Option<&[&str]>) {
    put_cid(out, Some(&record.root_cid));
    let checksum_cid = record.checksum_cid.as_deref();
    if checksum_cid == Some(record.root_cid.as_str()) {
        out.push(TAG_SAME_AS_ROOT);
    } else {
        put_cid(out, checksum_cid);
    }
    let cid_digest = checksum_cid.and_then(|text| text.parse::<Cid>().ok());
    put_checksum(
        out,
        &record.registry_checksum,
        cid_digest.as_ref().map(|cid| cid.hash().digest()),
        algos,
    );
}

/// The content range, if any, as LEB128 (formats 4 to 7).
fn put_range(out: &mut Vec<u8>, record: &ArtifactRecord) {
    if let Some(range) = record.content_range {
        push_varint(out, range.offset);
        push_varint(out, range.len);
    }
}

/// The text fields in their stored order (formats 2 to 5).
#[cfg(test)]
fn text_fields<'a>(record: &'a ArtifactRecord, path: &'a [u8]) -> [&'a [u8]; 6] {
    [
        record.ecosystem.as_bytes(),
        record.name.as_bytes(),
        record.version.as_bytes(),
        record.origin.as_bytes(),
        path,
        record.profile.as_bytes(),
    ]
}

/// Decodes a record of any format; `id` is its key.
pub(crate) fn decode(id: ArtifactId, bytes: &[u8]) -> Result<ArtifactRecord, IndexError> {
    let corrupt = |what: &str| IndexError::Db(format!("artifact record {id} is corrupt: {what}"));
    let Some(format) = Format::of(bytes) else {
        return serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string()));
    };
    let mut reader = Reader { rest: &bytes[1..] };
    let record = if format.packed {
        decode_packed(id, &mut reader, format.with_range)
    } else {
        decode_unpacked(id, &mut reader, format)
    };
    match record {
        Ok(_) if !reader.rest.is_empty() => Err(corrupt("trailing bytes")),
        Ok(record) => Ok(record),
        Err(what) => Err(corrupt(what)),
    }
}

/// The fields of a packed record (formats 6 and 7) after its format byte.
fn decode_packed(
    id: ArtifactId,
    reader: &mut Reader,
    with_range: bool,
) -> Result<ArtifactRecord, &'static str> {
    let size_bytes = reader.varint()?;
    let mtime_ns = unzigzag(reader.varint()?);
    let inode = reader.varint()?;
    let ecosystem = reader.named(&KNOWN_ECOSYSTEMS)?;
    let name = reader.text()?;
    let version = reader.text()?;
    let origin = reader.text()?;
    let profile = reader.named(&KNOWN_PROFILES)?;
    let (root_cid, checksum_cid, registry_checksum) =
        reader.cids_and_checksum(true, Some(&KNOWN_ALGOS))?;
    let path = reader.packed_path(
        [name.as_bytes(), version.as_bytes(), origin.as_bytes()],
        digest_hex(&registry_checksum),
    )?;
    let path = path_from_bytes(&path)?;
    let content_range = reader.range(with_range, true)?;
    Ok(ArtifactRecord {
        id,
        ecosystem,
        name,
        version,
        origin,
        path,
        size_bytes,
        mtime_ns,
        inode,
        root_cid,
        profile,
        checksum_cid,
        registry_checksum,
        content_range,
    })
}

/// The fields of a record of formats 2 to 5 after its format byte.
fn decode_unpacked(
    id: ArtifactId,
    reader: &mut Reader,
    format: Format,
) -> Result<ArtifactRecord, &'static str> {
    let varint = format.varint;
    let (size_bytes, mtime_ns, inode) = if varint {
        (
            reader.varint()?,
            unzigzag(reader.varint()?),
            reader.varint()?,
        )
    } else {
        (
            u64::from_le_bytes(reader.array()?),
            i128::from_le_bytes(reader.array()?),
            u64::from_le_bytes(reader.array()?),
        )
    };
    let ecosystem = reader.text()?;
    let name = reader.text()?;
    let version = reader.text()?;
    let origin = reader.text()?;
    let path = path_from_bytes(reader.bytes()?)?;
    let profile = reader.text()?;
    let (root_cid, checksum_cid, registry_checksum) = reader.cids_and_checksum(varint, None)?;
    let content_range = reader.range(format.with_range, varint)?;
    Ok(ArtifactRecord {
        id,
        ecosystem,
        name,
        version,
        origin,
        path,
        size_bytes,
        mtime_ns,
        inode,
        root_cid,
        profile,
        checksum_cid,
        registry_checksum,
        content_range,
    })
}

/// The path of a record of any format, without building its other text fields where the format allows (formats 2
/// to 5: the startup scan reads every record's path).
pub(crate) fn decode_path(id: ArtifactId, bytes: &[u8]) -> Result<PathBuf, IndexError> {
    let corrupt = |what: &str| IndexError::Db(format!("artifact record {id} is corrupt: {what}"));
    match Format::of(bytes) {
        // A packed path may refer to the checksum, which comes before it: decode the record.
        None | Some(Format { packed: true, .. }) => decode(id, bytes).map(|record| record.path),
        Some(Format { varint, .. }) => {
            let mut reader = Reader { rest: &bytes[1..] };
            let path = (|| {
                if varint {
                    for _ in 0..3 {
                        reader.varint()?;
                    }
                } else {
                    reader.take(8 + 16 + 8)?;
                }
                // ecosystem, name, version, origin
                for _ in 0..4 {
                    reader.bytes()?;
                }
                path_from_bytes(reader.bytes()?)
            })();
            path.map_err(corrupt)
        }
    }
}

/// What a binary record's first byte says about the rest.
#[derive(Clone, Copy)]
struct Format {
    /// LEB128 integers (formats 4 to 7), not fixed-width ones.
    varint: bool,
    /// Ecosystem and profile codes and a packed path (formats 6 and 7).
    packed: bool,
    /// A content range follows.
    with_range: bool,
}

impl Format {
    /// `None` for a JSON record (schema 1), which starts with `{`.
    fn of(bytes: &[u8]) -> Option<Format> {
        let (varint, packed, with_range) = match *bytes.first()? {
            FORMAT_BINARY => (false, false, false),
            FORMAT_BINARY_RANGE => (false, false, true),
            FORMAT_VARINT => (true, false, false),
            FORMAT_VARINT_RANGE => (true, false, true),
            FORMAT_PACKED => (true, true, false),
            FORMAT_PACKED_RANGE => (true, true, true),
            _ => return None,
        };
        Some(Format {
            varint,
            packed,
            with_range,
        })
    }
}

#[cfg(unix)]
fn path_bytes(record: &ArtifactRecord) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    Some(record.path.as_os_str().as_bytes())
}

#[cfg(not(unix))]
fn path_bytes(record: &ArtifactRecord) -> Option<&[u8]> {
    record.path.to_str().map(str::as_bytes)
}

#[cfg(unix)]
pub(crate) fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
pub(crate) fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf, &'static str> {
    std::str::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| "path is not UTF-8")
}

/// An mtime as an unsigned number, small for small magnitudes of either sign. Mtimes outside the 64-bit range
/// (±292 years around 1970) are clamped to it; no file system stores one.
fn zigzag(value: i128) -> u64 {
    let value = i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX });
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i128 {
    i128::from((value >> 1) as i64 ^ -((value & 1) as i64))
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A CID string is kept as its binary CID (36 bytes instead of 59 characters) when that prints back exactly.
fn put_cid(out: &mut Vec<u8>, text: Option<&str>) {
    let Some(text) = text else {
        out.push(TAG_ABSENT);
        return;
    };
    match text.parse::<Cid>() {
        Ok(cid) if cid.to_string() == text => {
            out.push(TAG_COMPACT);
            put_bytes(out, &cid.to_bytes());
        }
        _ => {
            out.push(TAG_TEXT);
            put_bytes(out, text.as_bytes());
        }
    }
}

/// `algo:hex` with a lowercase hex digest is kept as the algo and the raw digest, or as the algo alone when the digest
/// is `cid_digest` (the checksum CID's); anything else as text. The algo is a code of `algos` when given.
fn put_checksum(out: &mut Vec<u8>, text: &str, cid_digest: Option<&[u8]>, algos: Option<&[&str]>) {
    let put_algo = |out: &mut Vec<u8>, algo: &str| match algos {
        Some(known) => put_named(out, algo, known),
        None => put_bytes(out, algo.as_bytes()),
    };
    if let Some((algo, hex)) = text.split_once(':') {
        if let Some(digest) = lowercase_hex(hex) {
            if cid_digest == Some(digest.as_slice()) {
                out.push(TAG_CID_DIGEST);
                put_algo(out, algo);
                return;
            }
            out.push(TAG_COMPACT);
            put_algo(out, algo);
            put_bytes(out, &digest);
            return;
        }
    }
    out.push(TAG_TEXT);
    put_bytes(out, text.as_bytes());
}

fn lowercase_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = hex.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn to_lowercase_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < len {
            return Err("truncated");
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..u64::BITS).step_by(7) {
            let [byte] = self.array::<1>()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("number too large");
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("number too long")
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, &'static str> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "text is not UTF-8")
    }

    /// A field [`put_named`] wrote.
    fn named(&mut self, known: &[&str]) -> Result<String, &'static str> {
        let [code] = self.array::<1>()?;
        match code {
            0 => self.text(),
            code => known
                .get(usize::from(code) - 1)
                .map(|name| name.to_string())
                .ok_or("unknown name code"),
        }
    }

    /// A path [`put_path`] wrote, with `fields` its record's name, version and origin and `digest_hex` its
    /// registry checksum's hex digest.
    fn packed_path(
        &mut self,
        fields: [&[u8]; PART_FIELDS as usize],
        digest_hex: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let mut path = Vec::new();
        loop {
            match self.varint()? {
                PART_END => return Ok(path),
                code @ 1..=PART_FIELDS => path.extend_from_slice(fields[code as usize - 1]),
                PART_DIGEST_HEX => {
                    let start = usize::try_from(self.varint()?).map_err(|_| "bad digest slice")?;
                    let len = usize::try_from(self.varint()?).map_err(|_| "bad digest slice")?;
                    let slice = start
                        .checked_add(len)
                        .and_then(|end| digest_hex.get(start..end))
                        .ok_or("digest slice outside the checksum")?;
                    path.extend_from_slice(slice);
                }
                code => {
                    let len = usize::try_from(code - PART_FIRST_LITERAL + 1)
                        .map_err(|_| "length too large")?;
                    path.extend_from_slice(self.take(len)?);
                }
            }
        }
    }

    /// The root CID, the checksum CID and the registry checksum [`put_cids_and_checksum`] wrote (`varint`: formats
    /// 4 to 7, which may name the checksum CID and digest by reference).
    fn cids_and_checksum(
        &mut self,
        varint: bool,
        algos: Option<&[&str]>,
    ) -> Result<(String, Option<String>, String), &'static str> {
        let root_cid = self.cid()?.ok_or("no root CID")?;
        let checksum_cid = if varint && self.rest.first() == Some(&TAG_SAME_AS_ROOT) {
            self.take(1)?;
            Some(root_cid.clone())
        } else {
            self.cid()?
        };
        let registry_checksum = if varint && self.rest.first() == Some(&TAG_CID_DIGEST) {
            self.take(1)?;
            let algo = self.algo(algos)?;
            let cid = checksum_cid
                .as_deref()
                .and_then(|text| text.parse::<Cid>().ok())
                .ok_or("checksum digest refers to a missing checksum CID")?;
            format!("{algo}:{}", to_lowercase_hex(cid.hash().digest()))
        } else {
            self.checksum(algos)?
        };
        Ok((root_cid, checksum_cid, registry_checksum))
    }

    /// A checksum's algorithm: a code of `algos` when given, else text.
    fn algo(&mut self, algos: Option<&[&str]>) -> Result<String, &'static str> {
        match algos {
            Some(known) => self.named(known),
            None => self.text(),
        }
    }

    /// The content range, when the format has one (`varint`: as LEB128, else as two u64 LE).
    fn range(
        &mut self,
        with_range: bool,
        varint: bool,
    ) -> Result<Option<ContentRange>, &'static str> {
        Ok(match (with_range, varint) {
            (false, _) => None,
            (true, true) => Some(ContentRange {
                offset: self.varint()?,
                len: self.varint()?,
            }),
            (true, false) => Some(ContentRange {
                offset: u64::from_le_bytes(self.array()?),
                len: u64::from_le_bytes(self.array()?),
            }),
        })
    }

    fn cid(&mut self) -> Result<Option<String>, &'static str> {
        let [tag] = self.array::<1>()?;
        match tag {
            TAG_ABSENT => Ok(None),
            TAG_TEXT => self.text().map(Some),
            TAG_COMPACT => Cid::try_from(self.bytes()?)
                .map(|cid| Some(cid.to_string()))
                .map_err(|_| "bad CID"),
            _ => Err("bad CID tag"),
        }
    }

    fn checksum(&mut self, algos: Option<&[&str]>) -> Result<String, &'static str> {
        let [tag] = self.array::<1>()?;
        match tag {
            TAG_TEXT => self.text(),
            TAG_COMPACT => {
                let algo = self.algo(algos)?;
                let digest = self.bytes()?;
                Ok(format!("{algo}:{}", to_lowercase_hex(digest)))
            }
            _ => Err("bad checksum tag"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sample() -> ArtifactRecord {
        ArtifactRecord {
            id: 7,
            ecosystem: "cargo".into(),
            name: "serde".into(),
            version: "1.0.0".into(),
            origin: "some-registry-0123456789abcdef".into(),
            path: PathBuf::from("/home/u/.cargo/registry/cache/x/serde-1.0.0.crate"),
            size_bytes: 123_456,
            mtime_ns: -1_234_567_890_123,
            inode: 42,
            root_cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            profile: "unixfs-v1-2025".into(),
            checksum_cid: Some(
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            ),
            registry_checksum: format!("sha256:{}", "0a".repeat(32)),
            content_range: None,
        }
    }

    /// What schema 4 wrote (formats 4 and 5), for the decoding tests.
    pub(crate) fn encode_format_4_or_5(record: &ArtifactRecord) -> Vec<u8> {
        let mut out = vec![match record.content_range {
            None => FORMAT_VARINT,
            Some(_) => FORMAT_VARINT_RANGE,
        }];
        push_varint(&mut out, record.size_bytes);
        push_varint(&mut out, zigzag(record.mtime_ns));
        push_varint(&mut out, record.inode);
        for text in text_fields(record, path_bytes(record).unwrap()) {
            put_bytes(&mut out, text);
        }
        put_cids_and_checksum(&mut out, record, None);
        put_range(&mut out, record);
        out
    }

    /// What schemas 2 and 3 wrote (formats 2 and 3), for the decoding tests.
    pub(crate) fn encode_format_2_or_3(record: &ArtifactRecord) -> Vec<u8> {
        let mut out = vec![match record.content_range {
            None => FORMAT_BINARY,
            Some(_) => FORMAT_BINARY_RANGE,
        }];
        out.extend_from_slice(&record.size_bytes.to_le_bytes());
        out.extend_from_slice(&record.mtime_ns.to_le_bytes());
        out.extend_from_slice(&record.inode.to_le_bytes());
        for text in text_fields(record, path_bytes(record).unwrap()) {
            put_bytes(&mut out, text);
        }
        put_cid(&mut out, Some(&record.root_cid));
        put_cid(&mut out, record.checksum_cid.as_deref());
        put_checksum(&mut out, &record.registry_checksum, None, None);
        if let Some(range) = record.content_range {
            out.extend_from_slice(&range.offset.to_le_bytes());
            out.extend_from_slice(&range.len.to_le_bytes());
        }
        out
    }

    #[test]
    fn round_trips_and_is_much_smaller_than_json() {
        let record = sample();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        let json = serde_json::to_vec(&record).unwrap();
        // The JSON of this record is 490 bytes; the binary one 175 (205 in format 4, 264 in format 2).
        assert_eq!(bytes.len(), 175);
        assert_eq!(encode_format_4_or_5(&record).len(), 205);
        assert!(
            bytes.len() * 10 < json.len() * 6,
            "{} bytes binary vs {} JSON",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn text_that_is_not_canonical_round_trips_as_text() {
        let mut record = sample();
        record.root_cid = "root".into();
        // A CIDv0 prints as base58: kept as binary only when it prints back the same.
        record.checksum_cid = Some("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into());
        record.registry_checksum = "h1:AbC+/=".into();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        record.checksum_cid = None;
        record.registry_checksum = "sha512:ABCD".into();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
    }

    /// A cargo record as the indexer writes it: one chunk, so the checksum CID is the root CID and the registry
    /// digest is that CID's digest.
    fn single_chunk_sample() -> ArtifactRecord {
        let mut record = sample();
        let cid: Cid = record.root_cid.parse().unwrap();
        record.registry_checksum = format!("sha256:{}", to_lowercase_hex(cid.hash().digest()));
        record
    }

    #[test]
    fn range_records_round_trip_in_both_formats() {
        let mut record = sample();
        record.content_range = Some(ContentRange {
            offset: 517,
            len: u64::MAX - 517,
        });
        let whole = encode(&sample()).unwrap();
        assert_eq!(whole[0], FORMAT_PACKED);
        let bytes = encode(&record).unwrap();
        assert_eq!(bytes[0], FORMAT_PACKED_RANGE);
        assert_eq!(decode(7, &bytes).unwrap(), record);
        assert_eq!(record.content_offset(), 517);
        assert_eq!(sample().content_len(), sample().size_bytes);
        assert_eq!(decode(7, &whole).unwrap().content_range, None);
        for len in 0..bytes.len() {
            assert!(decode(7, &bytes[..len]).is_err(), "truncated to {len}");
        }
        // Formats 4 and 5 (schema 4) still decode.
        let schema_4_whole = encode_format_4_or_5(&sample());
        assert_eq!(schema_4_whole[0], FORMAT_VARINT);
        assert_eq!(decode(7, &schema_4_whole).unwrap(), sample());
        let schema_4_range = encode_format_4_or_5(&record);
        assert_eq!(schema_4_range[0], FORMAT_VARINT_RANGE);
        assert_eq!(decode(7, &schema_4_range).unwrap(), record);
        // Formats 2 and 3 (schemas 2 and 3) still decode: format 2 as the whole file.
        let old_whole = encode_format_2_or_3(&sample());
        assert_eq!(old_whole[0], FORMAT_BINARY);
        assert_eq!(decode(7, &old_whole).unwrap(), sample());
        assert_eq!(decode(7, &old_whole).unwrap().content_offset(), 0);
        let old_range = encode_format_2_or_3(&record);
        assert_eq!(old_range[0], FORMAT_BINARY_RANGE);
        assert_eq!(old_range.len(), old_whole.len() + 16);
        assert_eq!(decode(7, &old_range).unwrap(), record);
        // A JSON record of schema 1 has no range; one with a range round-trips through JSON too.
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(decode(7, &json).unwrap(), record);
    }

    #[test]
    fn a_single_chunk_record_names_its_checksum_cid_and_digest_by_reference() {
        let record = single_chunk_sample();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        let old = encode_format_2_or_3(&record);
        assert_eq!(decode(7, &old).unwrap(), record);
        // 36-byte CID and 32-byte digest not repeated, integers as LEB128: 264 bytes in format 2, 172 now.
        assert!(
            bytes.len() + 90 <= old.len(),
            "{} bytes now vs {} in format 2",
            bytes.len(),
            old.len()
        );
        // A digest tag without a checksum CID to take it from is corrupt, not a panic.
        let mut orphan = record.clone();
        orphan.checksum_cid = None;
        let encoded = encode(&orphan).unwrap();
        // ... the root CID, the absent tag, then the checksum: its tag, the "sha256" code, the 32-byte digest with
        // its length; then the path.
        let absent_at = after_root_cid(&encoded, &orphan);
        assert_eq!(encoded[absent_at], TAG_ABSENT);
        let registry_at = absent_at + 1;
        assert_eq!(encoded[registry_at], TAG_COMPACT);
        let mut bytes = encoded[..registry_at].to_vec();
        bytes.extend_from_slice(&[TAG_CID_DIGEST, 1]);
        bytes.extend_from_slice(&encoded[registry_at + 1 + 1 + 1 + 32..]);
        assert!(decode(7, &bytes).is_err());
        for len in 0..bytes.len() {
            assert!(decode(7, &bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn a_packed_path_refers_to_the_fields_it_contains() {
        // A cargo crate's path holds its registry dir (origin), name and version.
        let mut record = sample();
        record.path = PathBuf::from(format!(
            "/home/u/.cargo/registry/cache/{}/serde-1.0.0.crate",
            record.origin
        ));
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        assert_eq!(decode_path(7, &bytes).unwrap(), record.path);
        let schema_4 = encode_format_4_or_5(&record);
        assert_eq!(decode_path(7, &schema_4).unwrap(), record.path);
        // Origin (30), name (5) and version (5) are one byte each; the ecosystem, profile and checksum algorithm
        // names ("sha256") one byte each.
        let saved = schema_4.len() - bytes.len();
        assert_eq!(
            saved,
            (30 - 1) + (5 - 1) + (5 - 1) + (5 - 1) + (14 - 1) - 1 - 1 + 6
        );
        // Overlapping fields: the longest one that starts at a position is used; one-byte fields never.
        for (name, version, origin, path) in [
            ("a", "1", "a1", "/x/a1/a-1/a"),
            ("serde", "serde-1", "r", "/r/serde-1/serde"),
            ("", "", "", "/plain/path"),
            ("abc", "abc", "abc", "abcabc/abc"),
            ("n", "v", "o", ""),
        ] {
            let mut record = sample();
            record.name = name.into();
            record.version = version.into();
            record.origin = origin.into();
            record.path = PathBuf::from(path);
            let bytes = encode(&record).unwrap();
            assert_eq!(decode(7, &bytes).unwrap(), record, "{path}");
            assert_eq!(decode_path(7, &bytes).unwrap(), record.path, "{path}");
        }
        // A long literal run (a varint length of two bytes) and names outside the known lists round-trip as text.
        let mut record = sample();
        record.path = PathBuf::from(format!("/{}", "x".repeat(300)));
        record.ecosystem = "future-ecosystem".into();
        record.profile = "future-profile".into();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        // An unknown code is corrupt, not a panic.
        let mut bad = encode(&sample()).unwrap();
        let ecosystem_at = 1 + 3 + 6 + 1;
        assert_eq!(bad[ecosystem_at], 1, "cargo is code 1");
        bad[ecosystem_at] = 200;
        assert!(decode(7, &bad).is_err());
        assert!(decode_path(7, &bad).is_err());
    }

    #[test]
    fn mtimes_of_either_sign_round_trip() {
        for mtime_ns in [
            0,
            1,
            -1,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            1_764_000_000_123_456_789,
        ] {
            let mut record = sample();
            record.mtime_ns = mtime_ns;
            assert_eq!(decode(7, &encode(&record).unwrap()).unwrap(), record);
        }
        let mut record = sample();
        record.size_bytes = u64::MAX;
        record.inode = u64::MAX;
        assert_eq!(decode(7, &encode(&record).unwrap()).unwrap(), record);
        // An eleventh LEB128 byte, or a tenth above bit 63, is refused.
        let mut reader = Reader {
            rest: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        };
        assert!(reader.varint().is_err());
    }

    #[test]
    fn json_records_of_schema_1_still_decode() {
        let record = sample();
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(decode(7, &json).unwrap(), record);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode(&sample()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode(7, &bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(7, &longer).is_err());
        // The checksum's tag, after the root CID and the same-as-root tag.
        let mut bad_tag = bytes;
        let checksum_tag_at = after_root_cid(&bad_tag, &sample()) + 1;
        assert_eq!(bad_tag[checksum_tag_at], TAG_COMPACT);
        bad_tag[checksum_tag_at] = 9;
        assert!(decode(7, &bad_tag).is_err());
    }

    /// Where the binary root CID of `record` ends in its encoding.
    fn after_root_cid(bytes: &[u8], record: &ArtifactRecord) -> usize {
        let cid = record.root_cid.parse::<Cid>().unwrap().to_bytes();
        let at = bytes
            .windows(cid.len())
            .position(|window| window == cid.as_slice())
            .expect("the root CID is in the record");
        at + cid.len()
    }

    #[test]
    fn a_packed_path_refers_to_slices_of_the_checksum_digest() {
        // npm's cache names a tarball by its integrity digest: content-v2/sha512/ab/cd/<the other 124 digits>.
        let mut record = sample();
        record.ecosystem = "npm".into();
        let hex = "0123456789abcdef".repeat(8);
        record.registry_checksum = format!("sha512:{hex}");
        record.checksum_cid = None;
        record.path = PathBuf::from(format!(
            "/home/u/.npm/_cacache/content-v2/sha512/{}/{}/{}",
            &hex[..2],
            &hex[2..4],
            &hex[4..]
        ));
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        assert_eq!(decode_path(7, &bytes).unwrap(), record.path);
        // The 124 digits are one slice reference of 3 bytes (code, start, length), and the two 2-digit directory
        // names are digits too short to refer to: 121 bytes less than format 4 at least.
        let schema_4 = encode_format_4_or_5(&record);
        assert!(
            bytes.len() + 124 - 4 <= schema_4.len(),
            "{} bytes packed vs {} in format 4",
            bytes.len(),
            schema_4.len()
        );
        // A slice outside the digest is corrupt, not a panic: the same bytes with the digest cut to 32 of its 64
        // bytes (absent checksum CID tag, checksum tag, "sha512" code, digest length, digest, then the path).
        let digest_len_at = after_root_cid(&bytes, &record) + 3;
        assert_eq!(bytes[digest_len_at], 64);
        let mut cut = bytes[..digest_len_at].to_vec();
        cut.push(32);
        cut.extend_from_slice(&bytes[digest_len_at + 1..digest_len_at + 1 + 32]);
        cut.extend_from_slice(&bytes[digest_len_at + 1 + 64..]);
        assert!(decode(7, &cut).is_err());
        assert!(decode_path(7, &cut).is_err());
    }
}
