//! pip's HTTP cache entries before pip 23.3 (`<cache>/http/<k0>/…/<k4>/<sha224(url)>`, one file per response):
//! cachecontrol's `cc=4,` followed by a msgpack map `{"response": {"body": <bin>, "headers": {…}, "status": 200, …},
//! "vary": {…}}`, with the whole response body inline. This finds the body's byte range without reading the body:
//! the structure around it is walked (bounded: nesting depth, entry counts, bytes of text read), the body is
//! skipped by its declared length, and the document must end exactly at the end of the file. Anything else is a
//! clear error, never a panic: a truncated or hostile file is not an artifact.

use std::io::{self, Read, Seek, SeekFrom};

use crate::ByteRange;

/// What cachecontrol 0.12/0.13 (pip 20 to 23.2) writes before the msgpack document.
const ENTRY_PREFIX: &[u8] = b"cc=4,";
/// Nesting deeper than this is not a cache entry (cachecontrol writes depth 3).
const MAX_DEPTH: usize = 8;
/// Map or array entries looked at in one container.
const MAX_ENTRIES: u64 = 4096;
/// Bytes of keys and text values (headers, reason) read into memory, for the whole entry.
const MAX_TEXT_BYTES: u64 = 1024 * 1024;

/// Why a file is not a pre-23.3 cache entry with an inline artifact body.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error("not a cachecontrol v4 cache entry (no `cc=4,` prefix)")]
    NotAnEntry,
    #[error("malformed cache entry: {0}")]
    Malformed(String),
    #[error("the cached response has no usable body: {0}")]
    NoBody(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn malformed(what: impl Into<String>) -> InlineError {
    InlineError::Malformed(what.into())
}

/// The head of one msgpack value.
enum Head {
    Nil,
    Bool,
    Int(i128),
    Float,
    Str(u64),
    Bin(u64),
    Array(u64),
    Map(u64),
    /// An extension value: its data length (the type byte is already read).
    Ext(u64),
}

/// A msgpack walker over a file of `end` bytes.
struct Walker<'r, R> {
    r: &'r mut R,
    pos: u64,
    end: u64,
    text_budget: u64,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], InlineError> {
        if self.end - self.pos < N as u64 {
            return Err(malformed("truncated"));
        }
        let mut buf = [0u8; N];
        self.r.read_exact(&mut buf)?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn uint(&mut self, width: usize) -> Result<u64, InlineError> {
        Ok(match width {
            1 => u64::from(self.bytes::<1>()?[0]),
            2 => u64::from(u16::from_be_bytes(self.bytes()?)),
            4 => u64::from(u32::from_be_bytes(self.bytes()?)),
            _ => u64::from_be_bytes(self.bytes()?),
        })
    }

    fn head(&mut self) -> Result<Head, InlineError> {
        let [marker] = self.bytes::<1>()?;
        Ok(match marker {
            0x00..=0x7f => Head::Int(i128::from(marker)),
            0x80..=0x8f => Head::Map(u64::from(marker & 0x0f)),
            0x90..=0x9f => Head::Array(u64::from(marker & 0x0f)),
            0xa0..=0xbf => Head::Str(u64::from(marker & 0x1f)),
            0xc0 => Head::Nil,
            0xc2 | 0xc3 => Head::Bool,
            0xc4 => Head::Bin(self.uint(1)?),
            0xc5 => Head::Bin(self.uint(2)?),
            0xc6 => Head::Bin(self.uint(4)?),
            0xc7..=0xc9 => {
                let len = self.uint(1 << (marker - 0xc7))?;
                self.bytes::<1>()?;
                Head::Ext(len)
            }
            0xca => {
                self.uint(4)?;
                Head::Float
            }
            0xcb => {
                self.uint(8)?;
                Head::Float
            }
            0xcc..=0xcf => Head::Int(i128::from(self.uint(1 << (marker - 0xcc))?)),
            0xd0 => Head::Int(i128::from(self.bytes::<1>()?[0] as i8)),
            0xd1 => Head::Int(i128::from(i16::from_be_bytes(self.bytes()?))),
            0xd2 => Head::Int(i128::from(i32::from_be_bytes(self.bytes()?))),
            0xd3 => Head::Int(i128::from(i64::from_be_bytes(self.bytes()?))),
            0xd4..=0xd8 => {
                self.bytes::<1>()?;
                Head::Ext(1 << (marker - 0xd4))
            }
            0xd9 => Head::Str(self.uint(1)?),
            0xda => Head::Str(self.uint(2)?),
            0xdb => Head::Str(self.uint(4)?),
            0xdc => Head::Array(self.uint(2)?),
            0xdd => Head::Array(self.uint(4)?),
            0xde => Head::Map(self.uint(2)?),
            0xdf => Head::Map(self.uint(4)?),
            0xe0..=0xff => Head::Int(i128::from(marker as i8)),
            0xc1 => return Err(malformed("reserved msgpack marker 0xc1")),
        })
    }

    /// Moves past `len` bytes of a string, bin or ext value without reading them.
    fn skip_bytes(&mut self, len: u64) -> Result<(), InlineError> {
        if self.end - self.pos < len {
            return Err(malformed(
                "a value runs past the end of the file (truncated)",
            ));
        }
        self.r.seek(SeekFrom::Current(len as i64))?;
        self.pos += len;
        Ok(())
    }

    fn text(&mut self, len: u64) -> Result<String, InlineError> {
        if len > self.text_budget || self.end - self.pos < len {
            return Err(malformed("text value too long or truncated"));
        }
        self.text_budget -= len;
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf)?;
        self.pos += len;
        String::from_utf8(buf).map_err(|_| malformed("text value is not UTF-8"))
    }

    /// The entry count of a container, bounded (every entry takes at least one byte).
    fn entries(&self, count: u64, per_entry: u64) -> Result<u64, InlineError> {
        if count > MAX_ENTRIES || count.saturating_mul(per_entry) > self.end - self.pos {
            return Err(malformed("container too large or truncated"));
        }
        Ok(count)
    }

    fn skip_value(&mut self, head: Head, depth: usize) -> Result<(), InlineError> {
        if depth > MAX_DEPTH {
            return Err(malformed("nested too deeply"));
        }
        match head {
            Head::Nil | Head::Bool | Head::Int(_) | Head::Float => Ok(()),
            Head::Str(len) | Head::Bin(len) | Head::Ext(len) => self.skip_bytes(len),
            Head::Array(count) => {
                for _ in 0..self.entries(count, 1)? {
                    let item = self.head()?;
                    self.skip_value(item, depth + 1)?;
                }
                Ok(())
            }
            Head::Map(count) => {
                for _ in 0..self.entries(count, 2)? {
                    for _ in 0..2 {
                        let item = self.head()?;
                        self.skip_value(item, depth + 1)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// A map key: a string (cachecontrol writes only string keys).
    fn key(&mut self) -> Result<String, InlineError> {
        match self.head()? {
            Head::Str(len) => self.text(len),
            _ => Err(malformed("a map key is not a string")),
        }
    }
}

/// What the response map says.
#[derive(Default)]
struct Response {
    body: Option<ByteRange>,
    status: Option<i128>,
    content_length: Option<String>,
    content_encoding: Option<String>,
}

fn walk_response<R: Read + Seek>(
    w: &mut Walker<'_, R>,
    count: u64,
) -> Result<Response, InlineError> {
    let mut response = Response::default();
    for _ in 0..w.entries(count, 2)? {
        let key = w.key()?;
        let head = w.head()?;
        match (key.as_str(), head) {
            ("body", Head::Bin(len)) => {
                if response.body.is_some() {
                    return Err(malformed("two bodies"));
                }
                response.body = Some(ByteRange { offset: w.pos, len });
                w.skip_bytes(len)?;
            }
            ("body", _) => return Err(malformed("the body is not a byte string")),
            ("status", Head::Int(status)) => response.status = Some(status),
            ("headers", Head::Map(headers)) => {
                for _ in 0..w.entries(headers, 2)? {
                    let name = w.key()?;
                    let value = match w.head()? {
                        Head::Str(len) => w.text(len)?,
                        _ => return Err(malformed("a header value is not a string")),
                    };
                    if name.eq_ignore_ascii_case("content-length") {
                        response.content_length = Some(value);
                    } else if name.eq_ignore_ascii_case("content-encoding") {
                        response.content_encoding = Some(value);
                    }
                }
            }
            (_, head) => w.skip_value(head, 2)?,
        }
    }
    Ok(response)
}

/// The byte range of the response body inside a pre-23.3 cache entry. The entry must be a complete `cc=4,` msgpack
/// document ending at the end of the file, for a 200 response whose body is the bytes as sent (no content coding)
/// and, when the response declared a `Content-Length`, exactly that long.
pub fn locate_inline_body<R: Read + Seek>(r: &mut R) -> Result<ByteRange, InlineError> {
    let end = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut w = Walker {
        r,
        pos: 0,
        end,
        text_budget: MAX_TEXT_BYTES,
    };
    let prefix = w.bytes::<5>().map_err(|_| InlineError::NotAnEntry)?;
    if prefix != ENTRY_PREFIX {
        return Err(InlineError::NotAnEntry);
    }
    let Head::Map(count) = w.head()? else {
        return Err(malformed("the entry is not a map"));
    };
    let mut response = None;
    for _ in 0..w.entries(count, 2)? {
        let key = w.key()?;
        match (key.as_str(), w.head()?) {
            ("response", Head::Map(fields)) => {
                if response.is_some() {
                    return Err(malformed("two responses"));
                }
                response = Some(walk_response(&mut w, fields)?);
            }
            ("response", _) => return Err(malformed("the response is not a map")),
            (_, head) => w.skip_value(head, 1)?,
        }
    }
    if w.pos != w.end {
        return Err(malformed(format!(
            "{} bytes after the end of the entry",
            w.end - w.pos
        )));
    }
    let response = response.ok_or_else(|| malformed("no response"))?;
    let body = response
        .body
        .ok_or_else(|| InlineError::NoBody("no body field".into()))?;
    if response.status != Some(200) {
        return Err(InlineError::NoBody(format!(
            "status {:?}, not 200",
            response.status
        )));
    }
    if body.len == 0 {
        return Err(InlineError::NoBody("empty body".into()));
    }
    if let Some(coding) = response
        .content_encoding
        .filter(|c| !c.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(InlineError::NoBody(format!(
            "the body is stored with content coding {coding:?}, not as the file's bytes"
        )));
    }
    if let Some(declared) = response.content_length {
        if declared.trim().parse::<u64>().ok() != Some(body.len) {
            return Err(InlineError::NoBody(format!(
                "Content-Length {declared:?} but {} body bytes (truncated)",
                body.len
            )));
        }
    }
    Ok(body)
}

/// A `Read + Seek` view of one byte range of `inner`: position 0 is the range's first byte, the end is its end.
pub(crate) struct RangeReader<R> {
    inner: R,
    range: ByteRange,
    pos: u64,
}

impl<R: Read + Seek> RangeReader<R> {
    pub(crate) fn new(inner: R, range: ByteRange) -> RangeReader<R> {
        RangeReader {
            inner,
            range,
            pos: 0,
        }
    }
}

impl<R: Read + Seek> Read for RangeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.range.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.inner
            .seek(SeekFrom::Start(self.range.offset + self.pos))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for RangeReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.range.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the range start")
        })?;
        Ok(self.pos)
    }
}
