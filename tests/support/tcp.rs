//! The kernel's TCP counters of the daemon's connections, read with `ss -ti` (iproute2): what the node really sent
//! and received, to check the caps and the overhead counters against (docs/limits.md).

use std::collections::HashMap;

use crate::{dial_addr, status, TestEnv};

/// The daemon's TCP port on 127.0.0.1.
pub fn daemon_port(env: &TestEnv) -> u16 {
    let addr = dial_addr(&status(env));
    addr.split('/')
        .nth(4)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no tcp port in {addr}"))
}

/// Per connection to `port` (the daemon's listener), the most payload bytes the kernel reported sent and received
/// on the daemon's side, over every [`TcpBytes::sample`]: a connection that closes keeps its last figures.
#[derive(Default)]
pub struct TcpBytes(HashMap<String, (u64, u64)>);

impl TcpBytes {
    pub fn sample(&mut self, port: u16) {
        let filter = format!("( sport = :{port} )");
        let out = std::process::Command::new("ss")
            .args(["-tinH", "state", "established", &filter])
            .output()
            .expect("ss (iproute2) is needed to read TCP counters");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut connection = String::new();
        for line in text.lines() {
            if !line.starts_with(char::is_whitespace) {
                connection = line
                    .split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                continue;
            }
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let entry = self.0.entry(connection.clone()).or_default();
            entry.0 = entry.0.max(field("bytes_sent:"));
            entry.1 = entry.1.max(field("bytes_received:"));
        }
    }

    /// TCP payload sent by the daemon, all connections seen.
    pub fn sent(&self) -> u64 {
        self.0.values().map(|v| v.0).sum()
    }

    /// TCP payload received by the daemon, all connections seen.
    pub fn received(&self) -> u64 {
        self.0.values().map(|v| v.1).sum()
    }
}

/// Samples [`TcpBytes`] of `port` every 20 ms on a thread until dropped, so connections that close in between keep
/// their last figures.
pub struct KernelWatch {
    bytes: std::sync::Arc<std::sync::Mutex<TcpBytes>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KernelWatch {
    pub fn start(port: u16) -> KernelWatch {
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(TcpBytes::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (bytes, stop) = (bytes.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bytes.lock().unwrap().sample(port);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
        };
        KernelWatch {
            bytes,
            stop,
            thread: Some(thread),
        }
    }

    /// TCP payload sent by the daemon so far (sampled now, too).
    pub fn sent(&self, port: u16) -> u64 {
        let mut bytes = self.bytes.lock().unwrap();
        bytes.sample(port);
        bytes.sent()
    }
}

impl Drop for KernelWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
