//! The local trustless gateway (IPFS trustless gateway spec): `GET`/`HEAD /ipfs/{cid}` on a loopback address only,
//! answering `?format=raw` / `Accept: application/vnd.ipld.raw` with one block and `?format=car` /
//! `Accept: application/vnd.ipld.car` with a CARv1 of the block's DAG (depth-first, no duplicates, streamed block by
//! block). It serves exactly what bitswap serves: blocks from the same [`BlockStore`] (indexed public artifacts,
//! read through the verifying zero-copy reader, which withdraws a file that changed), re-checked against their CID
//! before they leave, and nothing while seeding is paused (503). A small strict HTTP/1.1 server on tokio with
//! `httparse` for the request head: no request bodies, bounded heads, connections and time. See docs/gateway.md.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pkgseed_node::{BlockStore, Cid};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::status::GatewayStatus;

/// Where the gateway listens unless the config says otherwise: loopback, a fixed port so HTTP clients can be
/// pointed at it once (8080, kubo's gateway port, and its neighbours are avoided).
pub const DEFAULT_GATEWAY_LISTEN_ADDR: &str = "127.0.0.1:7780";

/// Connections served at once; more wait in the listen backlog. Each holds at most one block (≤ 2 MiB) in memory.
const MAX_CONNECTIONS: usize = 32;
/// The largest request head (request line + headers) accepted; gateway requests are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A request head must arrive whole within this time once its first byte did (slow-loris bound).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each write must make progress within this time, or the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Deeper than any UnixFS file DAG we build (a balanced tree of width ≥ 174 reaches petabytes in 6 levels).
const MAX_DAG_DEPTH: usize = 32;
/// After an error answer that closes the connection, unread request bytes are read and dropped for at most this
/// long and this much, so the close is orderly.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// What a paused gateway suggests as the wait before trying again.
const PAUSED_RETRY_AFTER_SECS: u64 = 60;
/// Write buffer of a response; a block larger than this is written straight through.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=29030400, immutable";
const MEDIA_RAW: &str = "application/vnd.ipld.raw";
const MEDIA_CAR: &str = "application/vnd.ipld.car";
const MULTIHASH_IDENTITY: u64 = 0x00;

/// Parses a gateway listen address: an IP literal and port on the loopback interface (`127.0.0.1:7780`,
/// `[::1]:7780`; port 0 picks a free one). `Ok(None)`: the empty string, the gateway is off. Anything that is not
/// loopback is refused: the gateway is for programs on this machine, never for the network.
pub fn parse_gateway_listen_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!(
            "gateway_listen_addr {text:?} is not an IP address and port such as \"{DEFAULT_GATEWAY_LISTEN_ADDR}\" \
             (use \"\" to turn the gateway off)"
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "gateway_listen_addr {text:?} is not a loopback address: the local gateway only listens on this machine \
             (127.0.0.1 or ::1), never on a network interface"
        ));
    }
    Ok(Some(addr))
}

/// What the gateway reports in `status`: where it listens, why it does not, and its counters.
#[derive(Default)]
pub(crate) struct GatewayState {
    listen_addr: Mutex<Option<SocketAddr>>,
    error: Mutex<Option<String>>,
    requests: AtomicU64,
    bytes_sent: AtomicU64,
}

impl GatewayState {
    pub(crate) fn status(&self) -> GatewayStatus {
        GatewayStatus {
            listen_addr: self.listen_addr.lock().unwrap().map(|a| a.to_string()),
            error: self.error.lock().unwrap().clone(),
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_error(&self, error: String) {
        *self.error.lock().unwrap() = Some(error);
    }
}

/// What the gateway serves from, and when it must not.
pub(crate) struct GatewaySource {
    /// The node's block store: verified bytes of indexed blocks only (the same store bitswap answers from).
    pub blocks: Arc<dyn BlockStore>,
    /// Whether seeding is paused now (for any reason); the gateway then serves nothing.
    pub paused: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Binds `addr` (which must be loopback; checked again here) and serves until the task is aborted. Returns the
/// bound address (port 0 resolved) and the accept task.
pub(crate) async fn start(
    addr: SocketAddr,
    source: GatewaySource,
    state: Arc<GatewayState>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the gateway on {addr}: not loopback"
        ));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot read the gateway's bound address: {err}"))?;
    *state.listen_addr.lock().unwrap() = Some(bound);
    let gateway = Arc::new(Gateway { source, state });
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = connections.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let gateway = gateway.clone();
            tokio::spawn(async move {
                gateway.serve_connection(stream).await;
                drop(permit);
            });
        }
    });
    Ok((bound, task))
}

struct Gateway {
    source: GatewaySource,
    state: Arc<GatewayState>,
}

/// How a response is framed on the connection.
#[derive(Debug, Clone, Copy, Default)]
struct Framing {
    /// `HEAD`: headers only.
    head_only: bool,
    keep_alive: bool,
    /// HTTP/1.1: a body of unknown length (a CAR) is chunked; HTTP/1.0 has no chunks, so it ends with the connection.
    chunked: bool,
}

/// A parsed request head, owned (the read buffer moves on).
#[derive(Debug)]
struct Request {
    framing: Framing,
    target: String,
    accept: Option<String>,
    if_none_match: Option<String>,
    only_if_cached: bool,
    service_worker: bool,
}

/// A response decided before any body byte is written.
enum Reply {
    Text {
        status: u16,
        message: String,
        extra: Vec<(&'static str, String)>,
    },
    NotModified {
        etag: String,
    },
    Raw {
        cid: Cid,
        block: Bytes,
        content_location: bool,
    },
    Car {
        cid: Cid,
        root: Option<Bytes>,
        params: CarParams,
        content_location: bool,
    },
}

fn text(status: u16, message: impl Into<String>) -> Reply {
    Reply::Text {
        status,
        message: message.into(),
        extra: Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
}

/// The CAR variant requested. Only CARv1 in depth-first order is produced; `dups` and `dag-scope` are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CarParams {
    dups: bool,
    /// `dag-scope=block`: the root block only; `all` / `entity` (the same for a UnixFS file): the whole DAG.
    root_only: bool,
}

impl CarParams {
    fn content_type(&self) -> String {
        let dups = if self.dups { "y" } else { "n" };
        format!("{MEDIA_CAR}; version=1; order=dfs; dups={dups}")
    }

    fn etag(&self, cid: &Cid) -> String {
        let dups = if self.dups { "y" } else { "n" };
        let scope = if self.root_only { "block" } else { "all" };
        format!("\"{cid}.car.v1.dfs.dups-{dups}.{scope}\"")
    }
}

/// Why a CAR stream stopped before its end: the client sees a truncated chunked body (an error), never a short CAR
/// that looks complete.
#[derive(Debug)]
enum StreamError {
    Io(std::io::Error),
    Refused(String),
}

impl From<std::io::Error> for StreamError {
    fn from(err: std::io::Error) -> Self {
        StreamError::Io(err)
    }
}

impl Gateway {
    async fn serve_connection(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        loop {
            let (status, message) = match read_head(&mut reader, &mut buf).await {
                HeadRead::Closed => return,
                HeadRead::Bad(status, message) => (status, message),
                HeadRead::Complete(head, used) => {
                    buf.drain(..used);
                    self.state.requests.fetch_add(1, Ordering::Relaxed);
                    match head {
                        Ok(request) => {
                            if self.answer(&mut writer, request).await {
                                continue;
                            }
                            return;
                        }
                        Err(refused) => refused,
                    }
                }
            };
            // A request that cannot be served as asked: answer, then close without resetting the connection
            // (unread request bytes would make the kernel send a reset that can destroy the answer in flight).
            let closing = self
                .write_reply(&mut writer, Framing::default(), text(status, message))
                .await;
            if closing.is_ok() && writer.shutdown().await.is_ok() {
                let mut discard = [0u8; 4096];
                let deadline = Instant::now() + LINGER_TIMEOUT;
                let mut drained_bytes = 0;
                while drained_bytes < LINGER_MAX_BYTES {
                    match tokio::time::timeout_at(deadline, reader.read(&mut discard)).await {
                        Ok(Ok(n)) if n > 0 => drained_bytes += n,
                        _ => break,
                    }
                }
            }
            return;
        }
    }

    /// Serves one parsed request; true when the connection stays open for the next one.
    async fn answer<W: AsyncWrite + Unpin>(&self, writer: &mut W, request: Request) -> bool {
        let reply = self.decide(&request).await;
        match self.write_reply(writer, request.framing, reply).await {
            Ok(()) => request.framing.keep_alive,
            Err(StreamError::Io(err)) => {
                tracing::debug!(%err, "gateway client connection ended");
                false
            }
            Err(StreamError::Refused(_)) => false,
        }
    }

    /// Everything up to the first body byte: parse the target, negotiate the format, read the root block.
    async fn decide(&self, request: &Request) -> Reply {
        if request.service_worker {
            return text(400, "service workers cannot be registered on this gateway");
        }
        let (path, query) = match request.target.split_once('?') {
            Some((path, query)) => (path, query),
            None => (request.target.as_str(), ""),
        };
        if path.starts_with("/ipns/") {
            return text(400, "IPNS names are not served here: request /ipfs/{cid}");
        }
        let Some(rest) = path.strip_prefix("/ipfs/") else {
            return text(404, "not found: this gateway serves /ipfs/{cid} only");
        };
        let (cid_text, sub_path) = match rest.split_once('/') {
            Some((cid, sub)) => (cid, Some(sub)),
            None => (rest, None),
        };
        let cid = match Cid::try_from(cid_text) {
            Ok(cid) => cid,
            Err(err) => return text(400, format!("{cid_text:?} is not a CID: {err}")),
        };
        let params = match parse_query(query) {
            Ok(params) => params,
            Err(message) => return text(400, message),
        };
        let (format, content_location) = match negotiate(&params, request.accept.as_deref()) {
            Ok(found) => found,
            Err((status, message)) => return text(status, message),
        };
        let car = match format {
            Format::Raw => None,
            Format::Car => match car_params(&params, request.accept.as_deref()) {
                Ok(car) => Some(car),
                Err(message) => return text(400, message),
            },
        };
        if sub_path.is_some_and(|p| !p.is_empty()) {
            return match format {
                Format::Raw => text(
                    400,
                    "a raw block is requested by CID alone: no path after /ipfs/{cid}",
                ),
                // Every DAG served here is a UnixFS file: nothing has named children to walk into.
                Format::Car => text(
                    404,
                    "no such path: the content served here is files, with no paths below them",
                ),
            };
        }
        let etag = match car {
            None => format!("\"{cid}.raw\""),
            Some(car) => car.etag(&cid),
        };
        if request
            .if_none_match
            .as_deref()
            .is_some_and(|tags| etag_matches(tags, &etag))
        {
            return Reply::NotModified { etag };
        }
        if (self.source.paused)() {
            return Reply::Text {
                status: 503,
                message: "seeding is paused: nothing is served until it resumes".into(),
                extra: vec![("Retry-After", PAUSED_RETRY_AFTER_SECS.to_string())],
            };
        }
        let root = if is_identity(&cid) {
            // The spec's probe, `bafkqaaa` (the empty identity CID): its bytes are in the CID itself.
            if !cid.hash().digest().is_empty() {
                return text(
                    404,
                    format!("{cid}: identity CIDs other than the empty one are not served"),
                );
            }
            None
        } else {
            match self.verified_block(&cid).await {
                Some(block) => Some(block),
                None if request.only_if_cached => {
                    return text(412, format!("{cid} is not in this gateway's store"))
                }
                None => {
                    return text(
                        404,
                        format!(
                            "{cid} is not served here: only blocks of seeded public artifacts are"
                        ),
                    )
                }
            }
        };
        match (car, root) {
            (None, root) => Reply::Raw {
                cid,
                block: root.unwrap_or_default(),
                content_location,
            },
            (Some(params), root) => Reply::Car {
                cid,
                root,
                params,
                content_location,
            },
        }
    }

    /// A block from the store, re-checked against its CID here too: whatever the store does, a byte that does not
    /// hash to the CID never leaves.
    async fn verified_block(&self, cid: &Cid) -> Option<Bytes> {
        let block = self.source.blocks.get(cid).await?;
        if pkgseed_unixfs::block_matches_cid(cid, &block) {
            Some(block)
        } else {
            tracing::error!(%cid, "the block store returned bytes that do not match the CID; refused");
            None
        }
    }

    async fn write_reply<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        framing: Framing,
        reply: Reply,
    ) -> Result<(), StreamError> {
        let head_only = framing.head_only;
        // A CAR without chunks is delimited by closing the connection.
        let keep_alive =
            framing.keep_alive && (framing.chunked || !matches!(reply, Reply::Car { .. }));
        let connection = if keep_alive { "keep-alive" } else { "close" };
        match reply {
            Reply::Text {
                status,
                message,
                extra,
            } => {
                let body = format!("{message}\n");
                let mut headers = vec![
                    ("Content-Type", "text/plain; charset=utf-8".to_string()),
                    ("Content-Length", body.len().to_string()),
                    ("X-Content-Type-Options", "nosniff".to_string()),
                    ("Connection", connection.to_string()),
                ];
                if status == 405 {
                    headers.push(("Allow", "GET, HEAD".to_string()));
                }
                headers.extend(extra);
                self.send(writer, &response_head(status, &headers)).await?;
                if !head_only {
                    self.send(writer, body.as_bytes()).await?;
                }
            }
            Reply::NotModified { etag } => {
                let headers = [
                    ("Etag", etag),
                    ("Cache-Control", IMMUTABLE_CACHE_CONTROL.to_string()),
                    ("Connection", connection.to_string()),
                ];
                self.send(writer, &response_head(304, &headers)).await?;
            }
            Reply::Raw {
                cid,
                block,
                content_location,
            } => {
                let mut headers = common_headers(&cid, MEDIA_RAW.to_string(), "bin");
                headers.push(("Etag", format!("\"{cid}.raw\"")));
                headers.push(("Content-Length", block.len().to_string()));
                if content_location {
                    headers.push(("Content-Location", format!("/ipfs/{cid}?format=raw")));
                }
                headers.push(("Connection", connection.to_string()));
                self.send(writer, &response_head(200, &headers)).await?;
                if !head_only {
                    self.send(writer, &block).await?;
                }
            }
            Reply::Car {
                cid,
                root,
                params,
                content_location,
            } => {
                let mut headers = common_headers(&cid, params.content_type(), "car");
                headers.push(("Etag", params.etag(&cid)));
                headers.push(("Accept-Ranges", "none".to_string()));
                if content_location {
                    headers.push(("Content-Location", format!("/ipfs/{cid}?format=car")));
                }
                if !head_only && framing.chunked {
                    // The length is not known before the walk: chunked, so a stream cut short is an error to the
                    // client rather than a CAR that looks complete.
                    headers.push(("Transfer-Encoding", "chunked".to_string()));
                }
                headers.push(("Connection", connection.to_string()));
                self.send(writer, &response_head(200, &headers)).await?;
                if !head_only {
                    let chunked = framing.chunked;
                    if let Err(err) = self.stream_car(writer, chunked, cid, root, params).await {
                        if let StreamError::Refused(reason) = &err {
                            tracing::warn!(%cid, %reason, "gateway CAR stream stopped");
                            // What was sent is valid; the missing last chunk tells the client it is incomplete.
                            let _ = flush(writer).await;
                        }
                        return Err(err);
                    }
                    if chunked {
                        self.send(writer, b"0\r\n\r\n").await?;
                    }
                }
            }
        }
        flush(writer).await
    }

    /// Writes the CAR body as chunks: the header, then every block of the DAG in depth-first order, each read
    /// (verified) only when it is its turn.
    async fn stream_car<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        chunked: bool,
        root_cid: Cid,
        root: Option<Bytes>,
        params: CarParams,
    ) -> Result<(), StreamError> {
        self.send_chunk(writer, chunked, &car_header(&root_cid), &[])
            .await?;
        let Some(root) = root else {
            // The identity probe: the header alone (identity blocks are never put in a CAR).
            return Ok(());
        };
        let mut seen: HashSet<Cid> = HashSet::new();
        // Depth-first: a stack of (cid, depth) with children pushed in reverse link order.
        let mut stack: Vec<(Cid, usize, Option<Bytes>)> = vec![(root_cid, 0, Some(root))];
        while let Some((cid, depth, known)) = stack.pop() {
            if !params.dups && !seen.insert(cid) {
                continue;
            }
            if (self.source.paused)() {
                return Err(StreamError::Refused("seeding was paused".into()));
            }
            let block = match known {
                Some(block) => block,
                None => self.verified_block(&cid).await.ok_or_else(|| {
                    StreamError::Refused(format!("block {cid} is no longer available"))
                })?,
            };
            self.send_chunk(
                writer,
                chunked,
                &car_block_prefix(&cid, block.len()),
                &block,
            )
            .await?;
            if params.root_only || cid.codec() != pkgseed_unixfs::CODEC_DAG_PB {
                continue;
            }
            let links = pkgseed_unixfs::dag_pb_links(&block)
                .map_err(|err| StreamError::Refused(format!("block {cid}: {err}")))?;
            if !links.is_empty() && depth + 1 > MAX_DAG_DEPTH {
                return Err(StreamError::Refused(format!(
                    "the DAG under {root_cid} is deeper than {MAX_DAG_DEPTH} levels"
                )));
            }
            stack.extend(links.into_iter().rev().map(|link| (link, depth + 1, None)));
        }
        Ok(())
    }

    /// `prefix` then `data`, as one HTTP chunk when `chunked`.
    async fn send_chunk<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        chunked: bool,
        prefix: &[u8],
        data: &[u8],
    ) -> Result<(), StreamError> {
        if chunked {
            let size = format!("{:x}\r\n", prefix.len() + data.len());
            self.send(writer, size.as_bytes()).await?;
        }
        self.send(writer, prefix).await?;
        self.send(writer, data).await?;
        if chunked {
            self.send(writer, b"\r\n").await?;
        }
        Ok(())
    }

    async fn send<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        bytes: &[u8],
    ) -> Result<(), StreamError> {
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.state
                    .bytes_sent
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(err)) => Err(err.into()),
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }
}

async fn flush<W: AsyncWrite + Unpin>(writer: &mut W) -> Result<(), StreamError> {
    match tokio::time::timeout(WRITE_TIMEOUT, writer.flush()).await {
        Ok(result) => result.map_err(StreamError::from),
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// The outcome of reading one request head.
enum HeadRead {
    /// The client closed the connection (or went idle too long) between requests.
    Closed,
    /// The head cannot be parsed at all; answer this and close.
    Bad(u16, String),
    /// A head of `usize` bytes; the request, or the error status to answer it with (then close).
    Complete(Result<Request, (u16, String)>, usize),
}

async fn read_head<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> HeadRead {
    let mut deadline: Option<Instant> = None;
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Ok(Some(found)) => return found,
                Ok(None) => {}
                Err(bad) => return bad,
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return HeadRead::Bad(
                    431,
                    format!("the request head exceeds {MAX_HEAD_BYTES} bytes"),
                );
            }
        }
        let wait_until = *deadline.get_or_insert_with(|| {
            Instant::now()
                + if buf.is_empty() {
                    IDLE_TIMEOUT
                } else {
                    HEAD_TIMEOUT
                }
        });
        let read = tokio::time::timeout_at(wait_until, reader.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(n)) => {
                let first_bytes = buf.is_empty();
                buf.extend_from_slice(&chunk[..n]);
                if first_bytes {
                    // The idle wait is over; the rest of the head must follow quickly.
                    deadline = Some(Instant::now() + HEAD_TIMEOUT);
                }
            }
            Err(_) if buf.is_empty() => return HeadRead::Closed,
            Err(_) => return HeadRead::Bad(408, "the request head did not arrive in time".into()),
        }
    }
}

/// `Ok(None)`: more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<HeadRead>, HeadRead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadRead::Bad(
                431,
                format!("more than {MAX_HEADERS} request headers"),
            ))
        }
        Err(err) => return Err(HeadRead::Bad(400, format!("malformed HTTP request: {err}"))),
    };
    Ok(Some(HeadRead::Complete(request_of(&parsed), used)))
}

/// Checks a parsed head and keeps what the gateway needs.
fn request_of(parsed: &httparse::Request) -> Result<Request, (u16, String)> {
    let header = |name: &str| -> Option<String> {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let version = parsed.version.unwrap_or(1);
    let head_only = match parsed.method.unwrap_or_default() {
        "GET" => false,
        "HEAD" => true,
        other => {
            return Err((
                405,
                format!("method {other} is not allowed: use GET or HEAD"),
            ))
        }
    };
    let has_body = header("Transfer-Encoding").is_some()
        || header("Content-Length").is_some_and(|len| len != "0");
    if has_body {
        return Err((400, "requests with a body are not accepted".into()));
    }
    // Only names of this machine: a web page that rebinds its own host name to 127.0.0.1 is refused.
    match header("Host") {
        Some(host) if is_loopback_host(&host) => {}
        Some(host) => {
            return Err((
                400,
                format!("unexpected Host {host:?}: this gateway answers for localhost only"),
            ))
        }
        None => return Err((400, "a Host header is required".into())),
    }
    let connection = header("Connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let keep_alive = version == 1 && !connection.split(',').any(|t| t.trim() == "close");
    let target = parsed.path.unwrap_or_default().to_string();
    if !target.starts_with('/') {
        return Err((400, "the request target must be a path".into()));
    }
    Ok(Request {
        framing: Framing {
            head_only,
            keep_alive,
            chunked: version == 1,
        },
        target,
        accept: header("Accept"),
        if_none_match: header("If-None-Match"),
        only_if_cached: header("Cache-Control").is_some_and(|v| {
            v.to_ascii_lowercase()
                .split(',')
                .any(|d| d.trim() == "only-if-cached")
        }),
        service_worker: header("Service-Worker").is_some_and(|v| v.eq_ignore_ascii_case("script")),
    })
}

/// `localhost`, `*.localhost` or a loopback IP literal, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Query parameters, percent-decoded. A repeated parameter is refused (which one would win is ambiguous).
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(format!("query parameter {key:?} is given twice"));
        }
        params.push((key, value));
    }
    Ok(params)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// One media range of an `Accept` header: type, its parameters (lowercased names) and its q value.
struct MediaRange {
    media: String,
    params: Vec<(String, String)>,
    q: f32,
}

fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut q = 1.0;
            let mut params = Vec::new();
            for part in parts {
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"').to_string();
                if name == "q" {
                    q = value.parse().unwrap_or(0.0);
                } else {
                    params.push((name, value));
                }
            }
            Some(MediaRange { media, params, q })
        })
        .collect()
}

/// The response format: `format` wins over `Accept`. Also whether it came from `Accept` alone (then the response
/// names its `?format=` URL in `Content-Location`, so caches keep formats apart).
fn negotiate(
    params: &[(String, String)],
    accept: Option<&str>,
) -> Result<(Format, bool), (u16, String)> {
    match param(params, "format") {
        Some("raw") => return Ok((Format::Raw, false)),
        Some("car") => return Ok((Format::Car, false)),
        Some(other) => {
            return Err((
                400,
                format!("format={other} is not served here: this is a trustless gateway (format=raw or format=car)"),
            ))
        }
        None => {}
    }
    let Some(accept) = accept else {
        return Err((
            400,
            "no format requested: add ?format=raw or ?format=car (or Accept: application/vnd.ipld.raw or \
             application/vnd.ipld.car); this trustless gateway never deserializes content"
                .to_string(),
        ));
    };
    let mut best: Option<(f32, Format)> = None;
    for range in parse_accept(accept) {
        let format = match range.media.as_str() {
            MEDIA_RAW => Format::Raw,
            MEDIA_CAR => Format::Car,
            _ => continue,
        };
        if range.q > 0.0 && best.is_none_or(|(q, _)| range.q > q) {
            best = Some((range.q, format));
        }
    }
    match best {
        Some((_, format)) => Ok((format, true)),
        None => Err((
            406,
            format!("cannot answer Accept: {accept}: this trustless gateway serves {MEDIA_RAW} and {MEDIA_CAR} only"),
        )),
    }
}

/// The CAR variant from the query (`car-version`, `car-order`, `car-dups`, `dag-scope`) or, failing that, the
/// `Accept` header's CAR parameters. Unsupported variants are a 400, not silently something else.
fn car_params(params: &[(String, String)], accept: Option<&str>) -> Result<CarParams, String> {
    let from_accept = accept
        .map(parse_accept)
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.media == MEDIA_CAR && r.q > 0.0)
        .map(|r| r.params)
        .unwrap_or_default();
    let pick = |query_key: &str, accept_key: &str| -> Option<String> {
        param(params, query_key).map(str::to_string).or_else(|| {
            from_accept
                .iter()
                .find(|(k, _)| k == accept_key)
                .map(|(_, v)| v.clone())
        })
    };
    if let Some(version) = pick("car-version", "version") {
        if version != "1" {
            return Err(format!(
                "CAR version {version} is not produced here: only version 1"
            ));
        }
    }
    if let Some(order) = pick("car-order", "order") {
        if order != "dfs" && order != "unk" {
            return Err(format!(
                "CAR order {order:?} is not produced here: only dfs"
            ));
        }
    }
    let dups = match pick("car-dups", "dups").as_deref() {
        None | Some("n") => false,
        Some("y") => true,
        Some(other) => return Err(format!("car-dups must be y or n, not {other:?}")),
    };
    let root_only = match param(params, "dag-scope") {
        None | Some("all") | Some("entity") => false,
        Some("block") => true,
        Some(other) => {
            return Err(format!(
                "dag-scope must be block, entity or all, not {other:?}"
            ))
        }
    };
    if param(params, "entity-bytes").is_some() {
        return Err("entity-bytes is not supported by this gateway: fetch the whole CAR or single raw blocks".into());
    }
    Ok(CarParams { dups, root_only })
}

/// `If-None-Match` against our (strong) Etag, with the weak comparison the header uses.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
    })
}

fn is_identity(cid: &Cid) -> bool {
    cid.hash().code() == MULTIHASH_IDENTITY
}

/// Headers every successful trustless response carries.
fn common_headers(cid: &Cid, content_type: String, extension: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", content_type),
        (
            "Content-Disposition",
            format!("attachment; filename=\"{cid}.{extension}\""),
        ),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Cache-Control", IMMUTABLE_CACHE_CONTROL.to_string()),
        ("X-Ipfs-Path", format!("/ipfs/{cid}")),
        ("X-Ipfs-Roots", cid.to_string()),
        ("Vary", "Accept".to_string()),
    ]
}

fn response_head(status: u16, headers: &[(&str, String)]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nServer: pkgseed\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A CBOR head (major type and length), shortest form, as dag-cbor requires.
fn push_cbor_head(out: &mut Vec<u8>, major: u8, len: u64) {
    let major = major << 5;
    match len {
        0..=23 => out.push(major | len as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, len as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// The CARv1 header, length-prefixed: the dag-cbor map `{"roots": [root], "version": 1}` (keys in dag-cbor order).
fn car_header(root: &Cid) -> Vec<u8> {
    let cid_bytes = root.to_bytes();
    let mut map = Vec::with_capacity(cid_bytes.len() + 24);
    push_cbor_head(&mut map, 5, 2);
    push_cbor_head(&mut map, 3, 5);
    map.extend_from_slice(b"roots");
    push_cbor_head(&mut map, 4, 1);
    // Tag 42 (CID), a byte string of 0x00 (the identity multibase prefix) + the binary CID.
    map.extend_from_slice(&[0xd8, 42]);
    push_cbor_head(&mut map, 2, cid_bytes.len() as u64 + 1);
    map.push(0);
    map.extend_from_slice(&cid_bytes);
    push_cbor_head(&mut map, 3, 7);
    map.extend_from_slice(b"version");
    push_cbor_head(&mut map, 0, 1);
    let mut out = Vec::with_capacity(map.len() + 2);
    pkgseed_unixfs::push_varint(&mut out, map.len() as u64);
    out.extend_from_slice(&map);
    out
}

/// What precedes a block's bytes in a CARv1: the varint length of CID + block, then the binary CID.
fn car_block_prefix(cid: &Cid, block_len: usize) -> Vec<u8> {
    let cid_bytes = cid.to_bytes();
    let mut out = Vec::with_capacity(cid_bytes.len() + 10);
    pkgseed_unixfs::push_varint(&mut out, (cid_bytes.len() + block_len) as u64);
    out.extend_from_slice(&cid_bytes);
    out
}

#[cfg(test)]
mod tests;
