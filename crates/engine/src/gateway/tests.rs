//! Unit tests of the gateway over a real loopback socket, with an in-memory block store (the end-to-end test in
//! tests/gateway.rs runs it against the real daemon and index).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::AtomicBool;

use super::*;

/// An in-memory store of a small but deep DAG (1 KiB chunks, 4 links per node), with repeated chunks.
struct MemoryStore {
    blocks: HashMap<Cid, Bytes>,
}

#[async_trait::async_trait]
impl BlockStore for MemoryStore {
    async fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.blocks.get(cid).cloned()
    }
    async fn has(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }
}

/// 37 chunks of 1 KiB (the last one short); chunks 3 and 7 repeat chunk 0, so the DAG has duplicate leaves.
fn test_file() -> Vec<u8> {
    let mut data: Vec<u8> = (0..36 * 1024 + 100).map(|i| (i * 31 % 251) as u8).collect();
    let first: Vec<u8> = data[..1024].to_vec();
    data[3 * 1024..4 * 1024].copy_from_slice(&first);
    data[7 * 1024..8 * 1024].copy_from_slice(&first);
    data
}

fn test_dag(data: &[u8]) -> (Cid, HashMap<Cid, Bytes>) {
    let mut builder = pkgseed_unixfs::DagBuilder::with_layout_for_tests(
        pkgseed_unixfs::Profile::UnixfsV1_2025,
        1024,
        4,
        false,
    );
    builder.update(data);
    let dag = builder.finish();
    let mut blocks = HashMap::new();
    for block in &dag.blocks {
        let bytes = match &block.kind {
            pkgseed_unixfs::BlockKind::Interior(bytes) => bytes.clone(),
            _ => data[block.offset as usize..(block.offset + block.len) as usize].to_vec(),
        };
        blocks.insert(block.cid, Bytes::from(bytes));
    }
    (dag.root, blocks)
}

struct TestGateway {
    addr: SocketAddr,
    paused: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<GatewayState>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_gateway(blocks: HashMap<Cid, Bytes>) -> TestGateway {
    let paused = Arc::new(AtomicBool::new(false));
    let paused_flag = paused.clone();
    let state = Arc::new(GatewayState::default());
    let (addr, task) = start(
        "127.0.0.1:0".parse().unwrap(),
        GatewaySource {
            blocks: Arc::new(MemoryStore { blocks }),
            paused: Box::new(move || paused_flag.load(Ordering::SeqCst)),
        },
        state.clone(),
    )
    .await
    .unwrap();
    TestGateway {
        addr,
        paused,
        task,
        state,
    }
}

/// A parsed HTTP response: status, headers (lowercased names), body (chunked bodies decoded; `complete` is false
/// when the chunked body was cut short).
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `reader` (blocking std I/O on a thread; the gateway runs on the test runtime).
fn read_response(reader: &mut impl Read, head_only: bool) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if reader.read(&mut byte).unwrap() == 0 {
            panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
        complete: true,
    };
    if head_only || status == 304 {
        return response;
    }
    if response.header("transfer-encoding") == Some("chunked") {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        let (body, complete) = decode_chunked(&rest);
        response.body = body;
        response.complete = complete;
    } else if let Some(len) = response.header("content-length") {
        response.body = vec![0u8; len.parse().unwrap()];
        reader.read_exact(&mut response.body).unwrap();
    } else {
        // Delimited by the end of the connection (HTTP/1.0).
        reader.read_to_end(&mut response.body).unwrap();
    }
    response
}

fn decode_chunked(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, rest.starts_with(b"\r\n"));
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends `request` (a full head) on a fresh connection with `Connection: close` and reads the response.
async fn exchange(addr: SocketAddr, request: String) -> Response {
    let head_only = request.starts_with("HEAD ");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        read_response(&mut stream, head_only)
    })
    .await
    .unwrap()
}

fn get(target: &str, extra_headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra_headers}\r\n")
}

fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = bytes[0];
        *bytes = &bytes[1..];
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long")
}

/// Parses a CARv1: (header bytes, blocks in order). Every block is checked against its CID.
fn parse_car(mut car: &[u8]) -> (Vec<u8>, Vec<(Cid, Vec<u8>)>) {
    let header_len = read_varint(&mut car) as usize;
    let header = car[..header_len].to_vec();
    car = &car[header_len..];
    let mut blocks = Vec::new();
    while !car.is_empty() {
        let len = read_varint(&mut car) as usize;
        let (section, after) = car.split_at(len);
        car = after;
        let mut cursor = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut cursor).unwrap();
        let data = section[cursor.position() as usize..].to_vec();
        assert!(
            pkgseed_unixfs::block_matches_cid(&cid, &data),
            "block {cid} does not match its CID"
        );
        blocks.push((cid, data));
    }
    (header, blocks)
}

/// The expected depth-first order of a DAG, duplicates kept or dropped.
fn dfs_order(root: Cid, blocks: &HashMap<Cid, Bytes>, dups: bool) -> Vec<Cid> {
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if !dups && order.contains(&cid) {
            continue;
        }
        order.push(cid);
        if cid.codec() == pkgseed_unixfs::CODEC_DAG_PB {
            let links = pkgseed_unixfs::dag_pb_links(&blocks[&cid]).unwrap();
            stack.extend(links.into_iter().rev());
        }
    }
    order
}

/// Reassembles the file from the CAR's blocks (raw leaves under dag-pb nodes).
fn file_from_car(root: Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let by_cid: HashMap<Cid, &Vec<u8>> = blocks.iter().map(|(c, d)| (*c, d)).collect();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        let data = by_cid[&cid];
        if cid.codec() == pkgseed_unixfs::CODEC_RAW {
            out.extend_from_slice(data);
        } else {
            stack.extend(
                pkgseed_unixfs::dag_pb_links(data)
                    .unwrap()
                    .into_iter()
                    .rev(),
            );
        }
    }
    out
}

#[tokio::test]
async fn raw_block_is_served_with_the_spec_headers_and_matches_its_cid() {
    let data = test_file();
    let (root, blocks) = test_dag(&data);
    let gw = start_gateway(blocks.clone()).await;
    let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format=raw"), "")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, blocks[&root].to_vec());
    assert!(pkgseed_unixfs::block_matches_cid(&root, &response.body));
    assert_eq!(response.header("content-type"), Some(MEDIA_RAW));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        response.header("cache-control"),
        Some(IMMUTABLE_CACHE_CONTROL)
    );
    assert_eq!(
        response.header("etag"),
        Some(format!("\"{root}.raw\"").as_str())
    );
    assert_eq!(
        response.header("content-disposition"),
        Some(format!("attachment; filename=\"{root}.bin\"").as_str())
    );
    assert_eq!(response.header("content-location"), None);

    // The Accept header alone also works, and names the ?format URL.
    let response = exchange(
        gw.addr,
        get(
            &format!("/ipfs/{root}"),
            "Accept: application/vnd.ipld.raw\r\n",
        ),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, blocks[&root].to_vec());
    assert_eq!(
        response.header("content-location"),
        Some(format!("/ipfs/{root}?format=raw").as_str())
    );

    // HEAD: the same headers, no body.
    let head = format!(
        "HEAD /ipfs/{root}?format=raw HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n"
    );
    let response = exchange(gw.addr, head).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-length"),
        Some(blocks[&root].len().to_string().as_str())
    );

    // If-None-Match with our Etag: 304.
    let response = exchange(
        gw.addr,
        get(
            &format!("/ipfs/{root}?format=raw"),
            &format!("If-None-Match: W/\"{root}.raw\"\r\n"),
        ),
    )
    .await;
    assert_eq!(response.status, 304);
    assert!(gw.state.status().requests >= 4);
}

#[tokio::test]
async fn car_holds_the_whole_dag_depth_first_without_duplicates() {
    let data = test_file();
    let (root, blocks) = test_dag(&data);
    let gw = start_gateway(blocks.clone()).await;
    let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format=car"), "")).await;
    assert_eq!(response.status, 200);
    assert!(
        response.complete,
        "the chunked body ends with its last chunk"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n")
    );
    let (header, car_blocks) = parse_car(&response.body);
    assert_eq!(header, car_header(&root)[1..].to_vec());
    let order: Vec<Cid> = car_blocks.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, dfs_order(root, &blocks, false));
    assert_eq!(order.len(), blocks.len(), "every distinct block once");
    assert_eq!(file_from_car(root, &car_blocks), data);

    // dups=y repeats the repeated chunk; dag-scope=block is the root alone.
    let with_dups = exchange(
        gw.addr,
        get(&format!("/ipfs/{root}?format=car&car-dups=y"), ""),
    )
    .await;
    let (_, dup_blocks) = parse_car(&with_dups.body);
    assert_eq!(
        dup_blocks.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        dfs_order(root, &blocks, true)
    );
    assert!(dup_blocks.len() > car_blocks.len());
    let root_only = exchange(
        gw.addr,
        get(&format!("/ipfs/{root}?format=car&dag-scope=block"), ""),
    )
    .await;
    let (_, root_blocks) = parse_car(&root_only.body);
    assert_eq!(root_blocks.len(), 1);
    assert_eq!(root_blocks[0].0, root);

    // HTTP/1.0 has no chunks: the CAR ends with the connection.
    let http10 = format!("GET /ipfs/{root}?format=car HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let response = exchange(gw.addr, http10).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(parse_car(&response.body).1, car_blocks);

    // Unsupported CAR variants are refused, not silently changed.
    for query in [
        "car-version=2",
        "car-order=bfs",
        "entity-bytes=0:10",
        "dag-scope=everything",
    ] {
        let response = exchange(
            gw.addr,
            get(&format!("/ipfs/{root}?format=car&{query}"), ""),
        )
        .await;
        assert_eq!(response.status, 400, "{query}");
    }
}

#[tokio::test]
async fn a_block_missing_mid_walk_cuts_the_car_short() {
    let data = test_file();
    let (root, mut blocks) = test_dag(&data);
    // Remove the last leaf: the walk reaches it after streaming began.
    let last = *dfs_order(root, &blocks, false).last().unwrap();
    blocks.remove(&last);
    let gw = start_gateway(blocks).await;
    let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format=car"), "")).await;
    assert_eq!(response.status, 200);
    assert!(
        !response.complete,
        "the client must see an incomplete body, not a CAR that looks whole"
    );
}

#[tokio::test]
async fn wrong_bytes_from_the_store_are_never_sent() {
    let data = test_file();
    let (root, mut blocks) = test_dag(&data);
    let leaf = *dfs_order(root, &blocks, false).last().unwrap();
    blocks.insert(leaf, Bytes::from_static(b"not the block"));
    let gw = start_gateway(blocks).await;
    let response = exchange(gw.addr, get(&format!("/ipfs/{leaf}?format=raw"), "")).await;
    assert_eq!(response.status, 404);
    let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format=car"), "")).await;
    assert!(!response.complete);
    assert!(!response.body.windows(13).any(|w| w == b"not the block"));
}

#[tokio::test]
async fn errors_have_the_spec_status_codes() {
    let data = test_file();
    let (root, blocks) = test_dag(&data);
    let gw = start_gateway(blocks).await;
    let unknown =
        pkgseed_unixfs::checksum_cid(pkgseed_unixfs::DigestAlgo::Sha256, &[7; 32]).unwrap();
    let cases: Vec<(String, String, u16)> = vec![
        (get(&format!("/ipfs/{root}"), ""), "no format".into(), 400),
        (get(&format!("/ipfs/{root}"), "Accept: text/html\r\n"), "html".into(), 406),
        (get(&format!("/ipfs/{root}?format=tar"), ""), "tar".into(), 400),
        (get(&format!("/ipfs/{unknown}?format=raw"), ""), "unknown CID".into(), 404),
        (get(&format!("/ipfs/{unknown}?format=car"), ""), "unknown CID car".into(), 404),
        (
            get(&format!("/ipfs/{unknown}?format=raw"), "Cache-Control: only-if-cached\r\n"),
            "only-if-cached".into(),
            412,
        ),
        (get("/ipfs/not-a-cid?format=raw", ""), "bad CID".into(), 400),
        (get(&format!("/ipfs/{root}/a/b?format=raw"), ""), "raw with a path".into(), 400),
        (get(&format!("/ipfs/{root}/a?format=car"), ""), "car with a path".into(), 404),
        (get("/ipns/example?format=raw", ""), "ipns".into(), 400),
        (get("/", ""), "root".into(), 404),
        (get(&format!("/ipfs/{root}?format=raw&format=car"), ""), "twice".into(), 400),
        (
            format!("POST /ipfs/{root}?format=raw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"),
            "POST".into(),
            405,
        ),
        (
            format!("GET /ipfs/{root}?format=raw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"),
            "a body".into(),
            400,
        ),
        (
            format!("GET /ipfs/{root}?format=raw HTTP/1.1\r\nHost: attacker.example:7780\r\n\r\n"),
            "rebinding Host".into(),
            400,
        ),
        (format!("GET /ipfs/{root}?format=raw HTTP/1.1\r\n\r\n"), "no Host".into(), 400),
        (
            get(&format!("/ipfs/{root}?format=raw"), &format!("X-Big: {}\r\n", "a".repeat(MAX_HEAD_BYTES))),
            "huge head".into(),
            431,
        ),
        ("NOT HTTP AT ALL\r\n\r\n".into(), "garbage".into(), 400),
    ];
    for (request, what, status) in cases {
        let response = exchange(gw.addr, request).await;
        assert_eq!(
            response.status,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn paused_serves_nothing_and_says_so() {
    let data = test_file();
    let (root, blocks) = test_dag(&data);
    let gw = start_gateway(blocks).await;
    gw.paused.store(true, Ordering::SeqCst);
    for format in ["raw", "car"] {
        let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format={format}"), "")).await;
        assert_eq!(response.status, 503, "{format}");
        assert_eq!(response.header("retry-after"), Some("60"));
    }
    gw.paused.store(false, Ordering::SeqCst);
    let response = exchange(gw.addr, get(&format!("/ipfs/{root}?format=raw"), "")).await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn the_identity_probe_answers_and_keep_alive_serves_several_requests() {
    let gw = start_gateway(HashMap::new()).await;
    let addr = gw.addr;
    let responses = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut out = Vec::new();
        for format in ["raw", "car"] {
            let request =
                format!("GET /ipfs/bafkqaaa?format={format} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = read_response_keep_alive(&mut stream);
            response.headers.sort();
            out.push(response);
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(responses[0].status, 200);
    assert!(responses[0].body.is_empty());
    assert_eq!(responses[1].status, 200);
    let (header, blocks) = parse_car(&responses[1].body);
    assert_eq!(
        header,
        car_header(&"bafkqaaa".parse().unwrap())[1..].to_vec()
    );
    assert!(blocks.is_empty());
}

/// Like [`read_response`] but for a kept-alive connection: a chunked body is read up to its last chunk only.
fn read_response_keep_alive(stream: &mut std::net::TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    let mut in_body = false;
    loop {
        stream.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
        if !in_body && raw.ends_with(b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw).to_string();
            if !head.contains("Transfer-Encoding: chunked") {
                let mut cursor = std::io::Cursor::new(raw.clone());
                let mut response = read_response(&mut cursor, true);
                let len: usize = response.header("content-length").unwrap().parse().unwrap();
                response.body = vec![0u8; len];
                stream.read_exact(&mut response.body).unwrap();
                return response;
            }
            in_body = true;
        }
        if in_body && raw.ends_with(b"\r\n0\r\n\r\n") {
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let mut cursor = std::io::Cursor::new(raw[..split].to_vec());
            let mut response = read_response(&mut cursor, true);
            let (body, complete) = decode_chunked(&raw[split..]);
            response.body = body;
            response.complete = complete;
            return response;
        }
    }
}

#[test]
fn listen_addresses_must_be_loopback() {
    assert_eq!(parse_gateway_listen_addr("").unwrap(), None);
    assert_eq!(
        parse_gateway_listen_addr(DEFAULT_GATEWAY_LISTEN_ADDR).unwrap(),
        Some(DEFAULT_GATEWAY_LISTEN_ADDR.parse().unwrap())
    );
    assert!(parse_gateway_listen_addr("[::1]:0").unwrap().is_some());
    assert!(parse_gateway_listen_addr("127.0.0.2:80").unwrap().is_some());
    for bad in [
        "0.0.0.0:7780",
        "192.168.1.2:7780",
        "[::]:7780",
        "10.0.0.1:1",
    ] {
        let err = parse_gateway_listen_addr(bad).unwrap_err();
        assert!(err.contains("not a loopback address"), "{bad}: {err}");
    }
    for bad in ["localhost:7780", "127.0.0.1", "nope"] {
        let err = parse_gateway_listen_addr(bad).unwrap_err();
        assert!(err.contains("not an IP address and port"), "{bad}: {err}");
    }
}

#[test]
fn host_names_of_this_machine_only() {
    for ok in [
        "127.0.0.1",
        "127.0.0.1:7780",
        "localhost",
        "LOCALHOST:80",
        "[::1]:7780",
        "app.localhost:1",
    ] {
        assert!(is_loopback_host(ok), "{ok}");
    }
    for bad in [
        "example.org",
        "evil.example:7780",
        "[::2]:1",
        "0.0.0.0:7780",
        "127.0.0.1.example:1",
    ] {
        assert!(!is_loopback_host(bad), "{bad}");
    }
}
