//! A small, bounded zip reader (central directory + stored/deflate entries) used by the Go source (to verify the
//! `h1:` dirhash of a module zip) and the Maven source (to read the super-POM from Maven's installed jar). Never
//! panics on hostile input: every offset and length is checked, and sizes are capped.

use std::io::Read;

/// Why a zip could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a zip: {0}")]
    Malformed(&'static str),
    #[error("unsupported zip feature: {0}")]
    Unsupported(&'static str),
    #[error("zip entry larger than the limit")]
    TooLarge,
}

/// One entry: its name and uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ZipError::Malformed("truncated"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ZipError::Malformed("truncated"))
}

/// Every file entry (directories, names ending in `/`, skipped unless `keep` says otherwise) whose name `keep`
/// accepts, decompressed. `max_total_bytes` caps the sum of uncompressed sizes.
pub fn read_zip_entries(
    zip: &[u8],
    keep: &dyn Fn(&str) -> bool,
    max_total_bytes: u64,
) -> Result<Vec<ZipEntry>, ZipError> {
    // End of central directory: the last "PK\x05\x06" within the final 64 KiB + 22 bytes.
    if zip.len() < 22 {
        return Err(ZipError::Malformed("too short"));
    }
    let search_from = zip.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..=zip.len() - 22)
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or(ZipError::Malformed("no end of central directory"))?;
    let count = u16_at(zip, eocd + 10)? as usize;
    let cd_size = u32_at(zip, eocd + 12)? as usize;
    let cd_offset = u32_at(zip, eocd + 16)? as usize;
    if count == 0xffff || cd_offset == 0xffff_ffff {
        return Err(ZipError::Unsupported("zip64"));
    }
    let cd_end = cd_offset
        .checked_add(cd_size)
        .filter(|&end| end <= eocd)
        .ok_or(ZipError::Malformed("central directory out of range"))?;
    let mut entries = Vec::new();
    let mut total: u64 = 0;
    let mut at = cd_offset;
    for _ in 0..count {
        if at + 46 > cd_end || u32_at(zip, at)? != 0x0201_4b50 {
            return Err(ZipError::Malformed("bad central directory entry"));
        }
        let flags = u16_at(zip, at + 8)?;
        let method = u16_at(zip, at + 10)?;
        let compressed = u32_at(zip, at + 20)? as usize;
        let uncompressed = u32_at(zip, at + 24)? as u64;
        let name_len = u16_at(zip, at + 28)? as usize;
        let extra_len = u16_at(zip, at + 30)? as usize;
        let comment_len = u16_at(zip, at + 32)? as usize;
        let local = u32_at(zip, at + 42)? as usize;
        let name_bytes = zip
            .get(at + 46..at + 46 + name_len)
            .ok_or(ZipError::Malformed("truncated name"))?;
        at += 46 + name_len + extra_len + comment_len;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| ZipError::Malformed("non-UTF-8 name"))?
            .to_owned();
        if name.ends_with('/') || !keep(&name) {
            continue;
        }
        if flags & 1 != 0 {
            return Err(ZipError::Unsupported("encrypted entry"));
        }
        total = total.saturating_add(uncompressed);
        if total > max_total_bytes {
            return Err(ZipError::TooLarge);
        }
        if u32_at(zip, local)? != 0x0403_4b50 {
            return Err(ZipError::Malformed("bad local header"));
        }
        let data_start = local
            .checked_add(30 + u16_at(zip, local + 26)? as usize + u16_at(zip, local + 28)? as usize)
            .ok_or(ZipError::Malformed("offset overflow"))?;
        let data = data_start
            .checked_add(compressed)
            .and_then(|end| zip.get(data_start..end))
            .ok_or(ZipError::Malformed("entry data out of range"))?;
        let bytes = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(uncompressed.min(1 << 20) as usize);
                flate2::read::DeflateDecoder::new(data)
                    .take(uncompressed + 1)
                    .read_to_end(&mut out)
                    .map_err(|_| ZipError::Malformed("bad deflate stream"))?;
                out
            }
            _ => return Err(ZipError::Unsupported("compression method")),
        };
        if bytes.len() as u64 != uncompressed {
            return Err(ZipError::Malformed("entry size differs from the directory"));
        }
        entries.push(ZipEntry { name, bytes });
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal zip writer for fixtures: stored (method 0) or deflated (method 8) entries.
    pub(crate) fn make_zip(files: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, content) in files {
            let data = if deflate {
                let mut enc =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(content).unwrap();
                enc.finish().unwrap()
            } else {
                content.to_vec()
            };
            let method: u16 = if deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (not checked by this reader)
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(content.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn reads_stored_and_deflated_entries() {
        for deflate in [false, true] {
            let zip = make_zip(
                &[("a/b.txt", b"hello hello hello"), ("a/", b""), ("c", b"")],
                deflate,
            );
            let entries = read_zip_entries(&zip, &|_| true, 1 << 20).unwrap();
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[0].name, "a/b.txt");
            assert_eq!(entries[0].bytes, b"hello hello hello");
            let only_c = read_zip_entries(&zip, &|n| n == "c", 1 << 20).unwrap();
            assert_eq!(only_c.len(), 1);
            assert_eq!(
                read_zip_entries(&zip, &|_| true, 3),
                Err(ZipError::TooLarge)
            );
        }
    }

    #[test]
    fn hostile_zips_are_errors_not_panics() {
        let zip = make_zip(&[("x", b"0123456789"), ("y", b"abc")], true);
        for len in 0..zip.len() {
            let _ = read_zip_entries(&zip[..len], &|_| true, 1 << 20);
        }
        for i in 0..zip.len() {
            for v in [0u8, 0xff, 0x7f] {
                let mut bad = zip.clone();
                bad[i] = v;
                let _ = read_zip_entries(&bad, &|_| true, 1 << 20);
            }
        }
        assert!(read_zip_entries(b"PK\x05\x06", &|_| true, 10).is_err());
    }
}
