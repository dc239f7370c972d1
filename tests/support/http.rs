//! A tiny std-only static HTTP/1.1 file server on 127.0.0.1:0.
//!
//! GET (and HEAD) only, `Content-Length`, 404 for unknown paths, `Connection: close` on every response. It is enough
//! for cargo's sparse registry protocol. Paths under a prefix given to [`StaticServer::require_bearer`] answer 401
//! without `Authorization: Bearer <token>` (a private package); answers under a prefix given to
//! [`StaticServer::answer_cache_control_private`] say `Cache-Control: private`. The server stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the server answered: method, path, status.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
}

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;
/// (path prefix, bearer token) pairs.
type Protected = Arc<Mutex<Vec<(String, String)>>>;
/// Path prefixes whose answers carry `Cache-Control: private`.
type ForOneUser = Arc<Mutex<Vec<String>>>;

pub struct StaticServer {
    addr: SocketAddr,
    files: Files,
    protected: Protected,
    for_one_user: ForOneUser,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    pub fn start() -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let files: Files = Arc::default();
        let protected: Protected = Arc::default();
        let for_one_user: ForOneUser = Arc::default();
        let log: Arc<Mutex<Vec<LoggedRequest>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (files, protected, for_one_user, log, stop) = (
                files.clone(),
                protected.clone(),
                for_one_user.clone(),
                log.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name(format!("http-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let (files, protected, for_one_user, log) = (
                            files.clone(),
                            protected.clone(),
                            for_one_user.clone(),
                            log.clone(),
                        );
                        std::thread::spawn(move || {
                            let _ = serve_one(conn, &files, &protected, &for_one_user, &log);
                        });
                    }
                })
                .expect("spawn http thread")
        };
        StaticServer {
            addr,
            files,
            protected,
            for_one_user,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve `bytes` at `path` (must start with `/`); replaces any previous content.
    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        assert!(path.starts_with('/'), "path must start with '/': {path}");
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), bytes.into());
    }

    /// Paths starting with `path_prefix` answer 401 unless the request carries `Authorization: Bearer <token>`.
    pub fn require_bearer(&self, path_prefix: &str, token: &str) {
        self.protected
            .lock()
            .unwrap()
            .push((path_prefix.to_string(), token.to_string()));
    }

    /// Answers for paths starting with `path_prefix` carry `Cache-Control: private` (a response for one user, as a
    /// registry may send with a private package).
    pub fn answer_cache_control_private(&self, path_prefix: &str) {
        self.for_one_user
            .lock()
            .unwrap()
            .push(path_prefix.to_string());
    }

    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(path).cloned()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap().clone()
    }
}

/// A static server answering every file under `dir` at `/<relative path>`.
pub fn serve_dir(dir: &Path) -> StaticServer {
    let server = StaticServer::start();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                server.put(&format!("/{rel}"), std::fs::read(&p).unwrap());
            }
        }
    }
    server
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    conn: TcpStream,
    files: &Files,
    protected: &Mutex<Vec<(String, String)>>,
    for_one_user: &Mutex<Vec<String>>,
    log: &Mutex<Vec<LoggedRequest>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    // Headers: only `Authorization` is kept.
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();

    let denied = protected.lock().unwrap().iter().any(|(prefix, token)| {
        path.starts_with(prefix.as_str())
            && authorization.as_deref() != Some(format!("Bearer {token}").as_str())
    });
    let body = files.lock().unwrap().get(&path).cloned();
    let (status, reason, body) = match (method.as_str(), body) {
        _ if denied => (401, "Unauthorized", b"authentication required\n".to_vec()),
        ("GET" | "HEAD", Some(b)) => (200, "OK", b),
        ("GET" | "HEAD", None) => (404, "Not Found", b"not found\n".to_vec()),
        _ => (405, "Method Not Allowed", b"method not allowed\n".to_vec()),
    };
    let cache_control = if for_one_user
        .lock()
        .unwrap()
        .iter()
        .any(|prefix| path.starts_with(prefix.as_str()))
    {
        "Cache-Control: private\r\n"
    } else {
        ""
    };
    log.lock().unwrap().push(LoggedRequest {
        method: method.clone(),
        path,
        status,
    });

    let mut out = conn;
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n{cache_control}Connection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&body)?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}
