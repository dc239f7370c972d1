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

use std::path::PathBuf;

use cid::Cid;

use crate::{ArtifactId, ArtifactRecord, ContentRange, IndexError};

/// First byte of a binary record (a JSON record starts with `{`).
const FORMAT_BINARY: u8 = 2;
/// First byte of a binary record followed by its content range.
const FORMAT_BINARY_RANGE: u8 = 3;

const TAG_ABSENT: u8 = 0;
const TAG_TEXT: u8 = 1;
const TAG_COMPACT: u8 = 2;

/// Encodes `record` compactly. A path that is not representable as bytes on this platform (non-UTF-8 outside
/// unix) is written as JSON, which [`decode`] also reads.
pub(crate) fn encode(record: &ArtifactRecord) -> Result<Vec<u8>, IndexError> {
    let Some(path) = path_bytes(record) else {
        return serde_json::to_vec(record)
            .map_err(|e| IndexError::Db(format!("cannot encode artifact record: {e}")));
    };
    let mut out = Vec::with_capacity(128 + path.len());
    out.push(match record.content_range {
        None => FORMAT_BINARY,
        Some(_) => FORMAT_BINARY_RANGE,
    });
    out.extend_from_slice(&record.size_bytes.to_le_bytes());
    out.extend_from_slice(&record.mtime_ns.to_le_bytes());
    out.extend_from_slice(&record.inode.to_le_bytes());
    for text in [
        record.ecosystem.as_bytes(),
        record.name.as_bytes(),
        record.version.as_bytes(),
        record.origin.as_bytes(),
        path,
        record.profile.as_bytes(),
    ] {
        put_bytes(&mut out, text);
    }
    put_cid(&mut out, Some(&record.root_cid));
    put_cid(&mut out, record.checksum_cid.as_deref());
    put_checksum(&mut out, &record.registry_checksum);
    if let Some(range) = record.content_range {
        out.extend_from_slice(&range.offset.to_le_bytes());
        out.extend_from_slice(&range.len.to_le_bytes());
    }
    Ok(out)
}

/// Decodes a record of either format; `id` is its key.
pub(crate) fn decode(id: ArtifactId, bytes: &[u8]) -> Result<ArtifactRecord, IndexError> {
    let corrupt = |what: &str| IndexError::Db(format!("artifact record {id} is corrupt: {what}"));
    let with_range = match bytes.first() {
        Some(&FORMAT_BINARY) => false,
        Some(&FORMAT_BINARY_RANGE) => true,
        _ => return serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string())),
    };
    let mut reader = Reader { rest: &bytes[1..] };
    let record = (|| {
        let size_bytes = u64::from_le_bytes(reader.array()?);
        let mtime_ns = i128::from_le_bytes(reader.array()?);
        let inode = u64::from_le_bytes(reader.array()?);
        let ecosystem = reader.text()?;
        let name = reader.text()?;
        let version = reader.text()?;
        let origin = reader.text()?;
        let path = path_from_bytes(reader.bytes()?)?;
        let profile = reader.text()?;
        let root_cid = reader.cid()?.ok_or("no root CID")?;
        let checksum_cid = reader.cid()?;
        let registry_checksum = reader.checksum()?;
        let content_range = if with_range {
            Some(ContentRange {
                offset: u64::from_le_bytes(reader.array()?),
                len: u64::from_le_bytes(reader.array()?),
            })
        } else {
            None
        };
        if !reader.rest.is_empty() {
            return Err("trailing bytes");
        }
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
    })();
    record.map_err(corrupt)
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

fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
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

/// `algo:hex` with a lowercase hex digest is kept as the algo and the raw digest; anything else as text.
fn put_checksum(out: &mut Vec<u8>, text: &str) {
    if let Some((algo, hex)) = text.split_once(':') {
        if let Some(digest) = lowercase_hex(hex) {
            out.push(TAG_COMPACT);
            put_bytes(out, algo.as_bytes());
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

    fn len(&mut self) -> Result<usize, &'static str> {
        let mut len = 0usize;
        for shift in (0..usize::BITS).step_by(7) {
            let [byte] = self.array::<1>()?;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(len);
            }
        }
        Err("length too long")
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.len()?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, &'static str> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "text is not UTF-8")
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

    fn checksum(&mut self) -> Result<String, &'static str> {
        let [tag] = self.array::<1>()?;
        match tag {
            TAG_TEXT => self.text(),
            TAG_COMPACT => {
                let algo = self.text()?;
                let digest = self.bytes()?;
                Ok(format!("{algo}:{}", to_lowercase_hex(digest)))
            }
            _ => Err("bad checksum tag"),
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn round_trips_and_is_much_smaller_than_json() {
        let record = sample();
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(7, &bytes).unwrap(), record);
        let json = serde_json::to_vec(&record).unwrap();
        // The JSON of this record is 490 bytes; the binary one 264.
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

    #[test]
    fn range_records_round_trip_and_whole_file_records_keep_format_2() {
        let whole = encode(&sample()).unwrap();
        assert_eq!(whole[0], FORMAT_BINARY);
        let mut record = sample();
        record.content_range = Some(ContentRange {
            offset: 517,
            len: u64::MAX - 517,
        });
        let bytes = encode(&record).unwrap();
        assert_eq!(bytes[0], FORMAT_BINARY_RANGE);
        assert_eq!(bytes.len(), whole.len() + 16);
        assert_eq!(decode(7, &bytes).unwrap(), record);
        assert_eq!(record.content_offset(), 517);
        assert_eq!(sample().content_len(), sample().size_bytes);
        // A format-2 record (every record schema 2 wrote) decodes as the whole file.
        assert_eq!(decode(7, &whole).unwrap().content_range, None);
        assert_eq!(decode(7, &whole).unwrap().content_offset(), 0);
        // A JSON record of schema 1 has no range; one with a range round-trips through JSON too.
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(decode(7, &json).unwrap(), record);
        for len in 0..bytes.len() {
            assert!(decode(7, &bytes[..len]).is_err(), "truncated to {len}");
        }
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
        let mut bad_tag = bytes;
        let last_tag = bad_tag.len() - 1 - 6 - 1 - 32 - 1;
        bad_tag[last_tag] = 9;
        assert!(decode(7, &bad_tag).is_err());
    }
}
