//! The kernel's byte counters of the node's own TCP sockets, and the traffic the caps did not see. rust-ipfs gives
//! no transport hook (docs/limits.md), so on Linux a sampler reads every TCP socket's `tcp_info` through
//! `NETLINK_SOCK_DIAG` (an `inet_diag` dump for IPv4 and IPv6 with `INET_DIAG_INFO`), keeps those whose inode is one
//! of this process's `socket:[inode]` links in `/proc/self/fd`, and turns their per-socket deltas into the node's
//! TCP payload bytes sent (`tcpi_bytes_sent`, or `tcpi_bytes_acked` before Linux 4.19) and received
//! (`tcpi_bytes_received`). What TCP carried beyond the bitswap bytes the buckets already took (identify, Kademlia,
//! ping, multistream, noise and yamux framing) is charged to the same buckets as debt, so the block senders wait
//! for it and the node's kernel-measured TCP payload holds the cap.
//!
//! Other systems: [`Sampler::open`] reports `Unsupported` and nothing is counted beyond bitswap (compile-checked).
//! QUIC (UDP) has no per-socket byte counters: see docs/limits.md for what is and is not covered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::bitswap::Counters;
use crate::limits::Limits;

/// Sampling period while the node's TCP sockets or the bitswap counters move.
pub const ACTIVE_PERIOD: Duration = Duration::from_millis(200);
/// Sampling period after [`QUIET_SAMPLES_BEFORE_IDLE`] samples without traffic while TCP connections are open. A
/// dump walks the kernel's whole TCP hash table (about 0.7 ms per address family measured on a shared CI machine),
/// so a busy node pays ~0.7 % of a core, a quiet one with connections ~0.03 %, and one without TCP connections
/// nothing: it does not dump at all. The bitswap counters (atomic loads) and the open connections are still looked at
/// every [`ACTIVE_PERIOD`], so a transfer is sampled from its first 200 ms; a connection's bytes are cumulative in
/// the kernel, so a late first dump loses nothing while it is open.
pub const IDLE_PERIOD: Duration = Duration::from_secs(5);
const QUIET_SAMPLES_BEFORE_IDLE: u32 = 5;

/// Whether to dump the sockets now: every [`ACTIVE_PERIOD`] while traffic was seen in the last
/// [`QUIET_SAMPLES_BEFORE_IDLE`] dumps or bitswap moves; every [`IDLE_PERIOD`] while a TCP connection is open or our
/// sockets were in the last dump (so a closed connection's last bytes are taken); never otherwise.
fn dump_due(
    quiet_samples: u32,
    bitswap_moved: bool,
    tcp_connections_open: bool,
    own_sockets_in_last_dump: bool,
    since_last_dump: Duration,
) -> bool {
    if quiet_samples < QUIET_SAMPLES_BEFORE_IDLE || bitswap_moved {
        return true;
    }
    (tcp_connections_open || own_sockets_in_last_dump) && since_last_dump >= IDLE_PERIOD
}
/// Bitswap bytes counted but not yet seen by the kernel (in yamux, noise or the socket's send queue, or carried
/// by a socket that closed between two samples) are remembered up to this much: later TCP bytes are matched
/// against them before anything is charged as overhead. Larger than a reply message (2 MiB) and an inbound one
/// (4 MiB).
pub const SLACK_CAP_BYTES: u64 = 8 * 1024 * 1024;

/// One TCP socket as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBytes {
    /// The kernel's socket cookie: unique for the socket's life (inodes can be reused).
    pub cookie: u64,
    /// 0 when no file refers to the socket (not yet accepted, or closed by its owner and draining).
    pub inode: u64,
    pub uid: u32,
    /// The socket's local and remote addresses.
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    /// TCP payload sent (`tcpi_bytes_sent`, retransmissions included) and received.
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

/// The node's TCP totals and what the caps charged beyond bitswap, since start.
#[derive(Debug, Default)]
pub struct TcpTotals {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub overhead_bytes_uploaded: AtomicU64,
    pub overhead_bytes_downloaded: AtomicU64,
}

/// Keeps only the swarm's own connections: a socket counts when its remote address is the remote address of an open
/// TCP connection of the swarm. Other TCP sockets of this process (the local gateway's clients, a WebView's
/// automation link) are not node traffic.
fn keep_swarm_sockets(
    sockets: &mut Vec<SocketBytes>,
    swarm_remotes: &HashMap<std::net::SocketAddr, u32>,
) {
    sockets.retain(|s| swarm_remotes.contains_key(&s.remote));
}

/// Which sockets are ours, and their last counters. Keyed by cookie: a socket keeps its cookie after its owner
/// closes it (inode 0 then), so the bytes it sends while draining are still counted.
#[derive(Debug, Default)]
pub struct Tally {
    ours: HashMap<u64, (u64, u64)>,
    foreign: HashSet<u64>,
}

impl Tally {
    /// Adds one dump: returns the bytes (sent, received) our sockets carried since the previous dump. `own_inodes`
    /// is called at most once, only when a socket of our user is seen for the first time with an inode. A socket
    /// seen for the first time counts from zero (it opened since the last dump); a socket gone from the dump is
    /// forgotten (its bytes up to the last dump were counted, later ones are lost); a counter that went backwards
    /// starts a new baseline.
    pub fn add_dump(
        &mut self,
        sockets: &[SocketBytes],
        uid: u32,
        own_inodes: impl FnOnce() -> HashSet<u64>,
    ) -> (u64, u64) {
        let mut own_inodes = Some(own_inodes);
        let mut inodes: Option<HashSet<u64>> = None;
        let mut seen = HashSet::with_capacity(sockets.len());
        let (mut sent, mut received) = (0u64, 0u64);
        for s in sockets.iter().filter(|s| s.uid == uid) {
            seen.insert(s.cookie);
            let last = match self.ours.get(&s.cookie) {
                Some(last) => *last,
                None => {
                    if s.inode == 0 || self.foreign.contains(&s.cookie) {
                        continue;
                    }
                    let inodes = inodes.get_or_insert_with(|| match own_inodes.take() {
                        Some(read) => read(),
                        None => HashSet::new(),
                    });
                    if !inodes.contains(&s.inode) {
                        self.foreign.insert(s.cookie);
                        continue;
                    }
                    (0, 0)
                }
            };
            sent += s.sent_bytes.checked_sub(last.0).unwrap_or(s.sent_bytes);
            received += s
                .received_bytes
                .checked_sub(last.1)
                .unwrap_or(s.received_bytes);
            self.ours.insert(s.cookie, (s.sent_bytes, s.received_bytes));
        }
        self.ours.retain(|cookie, _| seen.contains(cookie));
        self.foreign.retain(|cookie| seen.contains(cookie));
        (sent, received)
    }

    /// Our sockets in the last dump.
    pub fn own_sockets(&self) -> usize {
        self.ours.len()
    }
}

/// Matches one direction's TCP bytes against the bitswap bytes the bucket already took; what is left is overhead.
#[derive(Debug, Default)]
pub struct Overhead {
    /// Bitswap bytes counted that TCP has not shown yet (bounded by [`SLACK_CAP_BYTES`]).
    slack: u64,
}

impl Overhead {
    /// One period: `bitswap` bytes counted by the responder, `tcp` bytes the kernel carried. Returns the bytes to
    /// charge; never negative.
    pub fn step(&mut self, bitswap: u64, tcp: u64) -> u64 {
        let owed = self.slack + bitswap;
        if tcp >= owed {
            self.slack = 0;
            tcp - owed
        } else {
            self.slack = (owed - tcp).min(SLACK_CAP_BYTES);
            0
        }
    }
}

/// Runs until shutdown: samples the node's TCP sockets, charges the overhead to the buckets and counts it. Ends
/// (with a log line) when the counters cannot be read: on systems other than Linux, or without sock_diag.
pub async fn run(
    counters: Arc<Counters>,
    limits: Arc<Limits>,
    totals: Arc<TcpTotals>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sampler = match Sampler::open() {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(
                "TCP counters unavailable ({e}): only bitswap bytes are counted and capped"
            );
            return;
        }
    };
    let uid = current_uid();
    let mut tally = Tally::default();
    let (mut upload, mut download) = (Overhead::default(), Overhead::default());
    // Bitswap bytes that went over TCP: those to peers connected over QUIC only are not in the kernel's counters.
    // (The QUIC share is read first: the total is counted before it.)
    let bitswap_totals = || {
        let quic = (
            counters.bytes_uploaded_quic.load(Ordering::Relaxed),
            counters.bytes_downloaded_quic.load(Ordering::Relaxed),
        );
        (
            counters
                .bytes_uploaded
                .load(Ordering::Relaxed)
                .saturating_sub(quic.0),
            counters
                .bytes_downloaded
                .load(Ordering::Relaxed)
                .saturating_sub(quic.1),
        )
    };
    let mut last_bitswap = bitswap_totals();
    let mut quiet_samples = 0u32;
    let mut last_dump = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(ACTIVE_PERIOD) => {}
        }
        if !dump_due(
            quiet_samples,
            bitswap_totals() != last_bitswap,
            counters.tcp_connections_open(),
            tally.own_sockets() > 0,
            last_dump.elapsed(),
        ) {
            continue;
        }
        last_dump = Instant::now();
        let mut sockets = match sampler.dump() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "reading TCP counters failed ({e}): only bitswap bytes are counted from now on"
                );
                return;
            }
        };
        keep_swarm_sockets(&mut sockets, &counters.tcp_remotes.lock().unwrap());
        let (sent, received) = tally.add_dump(&sockets, uid, own_socket_inodes);
        let bitswap = bitswap_totals();
        let (bitswap_up, bitswap_down) = (
            bitswap.0.saturating_sub(last_bitswap.0),
            bitswap.1.saturating_sub(last_bitswap.1),
        );
        last_bitswap = bitswap;
        let (extra_up, extra_down) = (
            upload.step(bitswap_up, sent),
            download.step(bitswap_down, received),
        );
        let now = Instant::now();
        limits.upload.charge(extra_up, now);
        limits.download.charge(extra_down, now);
        totals.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        totals.bytes_received.fetch_add(received, Ordering::Relaxed);
        totals
            .overhead_bytes_uploaded
            .fetch_add(extra_up, Ordering::Relaxed);
        totals
            .overhead_bytes_downloaded
            .fetch_add(extra_down, Ordering::Relaxed);
        if sent + received + bitswap_up + bitswap_down > 0 {
            quiet_samples = 0;
        } else {
            quiet_samples = quiet_samples.saturating_add(1);
        }
    }
}

fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// The inodes of this process's sockets: the `socket:[inode]` links in `/proc/self/fd`.
fn own_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return inodes;
    };
    for entry in entries.flatten() {
        if let Some(inode) = std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| parse_socket_link(&target.to_string_lossy()))
        {
            inodes.insert(inode);
        }
    }
    inodes
}

/// `socket:[12345]` → 12345.
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The netlink messages of an `inet_diag` dump (layouts from `linux/netlink.h`, `linux/inet_diag.h` and
/// `linux/tcp.h`; offsets checked against the kernel headers).
pub mod wire {
    use super::SocketBytes;

    pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_HDR_LEN: usize = 16;
    const INET_DIAG_REQ_V2_LEN: usize = 56;
    const INET_DIAG_MSG_LEN: usize = 72;
    const INET_DIAG_INFO: u16 = 2;
    const IPPROTO_TCP: u8 = 6;
    const AF_INET6: u8 = 10;
    /// Every state but LISTEN (10), TIME_WAIT (6), SYN_RECV (3) and NEW_SYN_RECV (12): those carry no tcp_info.
    const STATES: u32 = ((1 << 12) - 1) & !(1 << 10) & !(1 << 6) & !(1 << 3) & !1;
    // Offsets in struct tcp_info.
    const TCPI_BYTES_ACKED: usize = 120;
    const TCPI_BYTES_RECEIVED: usize = 128;
    const TCPI_BYTES_SENT: usize = 200;

    /// A dump request for the TCP sockets of `family` (AF_INET or AF_INET6) with their tcp_info.
    pub fn dump_request(family: u8, seq: u32) -> Vec<u8> {
        let len = NLMSG_HDR_LEN + INET_DIAG_REQ_V2_LEN;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.push(family);
        m.push(IPPROTO_TCP);
        m.push(1 << (INET_DIAG_INFO - 1));
        m.push(0);
        m.extend_from_slice(&STATES.to_ne_bytes());
        m.resize(len, 0); // inet_diag_sockid: all wildcards
        m
    }

    /// What one received buffer held.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Parsed {
        More,
        Done,
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    /// Parses the netlink messages in `buf` (one `recv`), appending the sockets that carry tcp_info to `out`.
    /// Only messages answering `seq` count.
    pub fn parse(buf: &[u8], seq: u32, out: &mut Vec<SocketBytes>) -> std::io::Result<Parsed> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut at = 0;
        while at + NLMSG_HDR_LEN <= buf.len() {
            let len = u32_at(buf, at) as usize;
            if len < NLMSG_HDR_LEN || at + len > buf.len() {
                return Err(bad("truncated netlink message"));
            }
            let kind = u16_at(buf, at + 4);
            let msg = &buf[at + NLMSG_HDR_LEN..at + len];
            let msg_seq = u32_at(buf, at + 8);
            at += align4(len);
            if msg_seq != seq {
                continue;
            }
            match kind {
                NLMSG_DONE => return Ok(Parsed::Done),
                NLMSG_ERROR => {
                    let errno = if msg.len() >= 4 {
                        -(u32_at(msg, 0) as i32)
                    } else {
                        0
                    };
                    return Err(std::io::Error::from_raw_os_error(errno));
                }
                SOCK_DIAG_BY_FAMILY => {
                    if msg.len() < INET_DIAG_MSG_LEN {
                        return Err(bad("short inet_diag message"));
                    }
                    if let Some(info) = attribute(&msg[INET_DIAG_MSG_LEN..], INET_DIAG_INFO) {
                        if info.len() < TCPI_BYTES_RECEIVED + 8 {
                            continue; // a kernel before 4.1: no byte counters
                        }
                        let sent_bytes = if info.len() >= TCPI_BYTES_SENT + 8 {
                            u64_at(info, TCPI_BYTES_SENT)
                        } else {
                            u64_at(info, TCPI_BYTES_ACKED)
                        };
                        out.push(SocketBytes {
                            cookie: u32_at(msg, 44) as u64 | (u32_at(msg, 48) as u64) << 32,
                            inode: u32_at(msg, 68) as u64,
                            uid: u32_at(msg, 64),
                            local: socket_address(msg, 4, 8),
                            remote: socket_address(msg, 6, 24),
                            sent_bytes,
                            received_bytes: u64_at(info, TCPI_BYTES_RECEIVED),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(Parsed::More)
    }

    /// A port (big-endian, at `port_at`) and an address (at `ip_at`) of an inet_diag message: `idiag_sport` at 4 and
    /// `idiag_src` at 8 are the local end, `idiag_dport` at 6 and `idiag_dst` at 24 the remote one. IPv4-mapped IPv6
    /// addresses come out as IPv4, as the swarm's addresses do.
    fn socket_address(msg: &[u8], port_at: usize, ip_at: usize) -> std::net::SocketAddr {
        let port = u16::from_be_bytes([msg[port_at], msg[port_at + 1]]);
        let ip: std::net::IpAddr = if msg[0] == AF_INET6 {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&msg[ip_at..ip_at + 16]).unwrap())
                .to_canonical()
        } else {
            <[u8; 4]>::try_from(&msg[ip_at..ip_at + 4]).unwrap().into()
        };
        std::net::SocketAddr::new(ip, port)
    }

    /// The payload of the first route attribute of type `kind`.
    fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
        while attrs.len() >= 4 {
            let len = u16_at(attrs, 0) as usize;
            if len < 4 || len > attrs.len() {
                return None;
            }
            if u16_at(attrs, 2) == kind {
                return Some(&attrs[4..len]);
            }
            attrs = &attrs[align4(len).min(attrs.len())..];
        }
        None
    }
}

/// A netlink socket for sock_diag dumps, reused across samples.
pub struct Sampler {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    seq: u32,
    #[cfg(target_os = "linux")]
    buf: Vec<u8>,
}

#[cfg(target_os = "linux")]
impl Sampler {
    pub fn open() -> std::io::Result<Sampler> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut sampler = Sampler {
            fd,
            seq: 0,
            buf: vec![0; 64 * 1024],
        };
        sampler.dump()?; // fails here, not in the loop, when sock_diag is not allowed
        Ok(sampler)
    }

    /// Every TCP socket of the host (IPv4 and IPv6) with its byte counters.
    pub fn dump(&mut self) -> std::io::Result<Vec<SocketBytes>> {
        use std::os::fd::AsRawFd;
        let mut sockets = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            self.seq = self.seq.wrapping_add(1);
            let request = wire::dump_request(family, self.seq);
            // SAFETY: a zeroed sockaddr_nl addressed to the kernel (pid 0); the buffers outlive the calls.
            let sent = unsafe {
                let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
                kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                libc::sendto(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error());
            }
            loop {
                // SAFETY: recv into our own buffer of the given length.
                let n = unsafe {
                    libc::recv(
                        self.fd.as_raw_fd(),
                        self.buf.as_mut_ptr().cast(),
                        self.buf.len(),
                        0,
                    )
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    break;
                }
                if wire::parse(&self.buf[..n as usize], self.seq, &mut sockets)?
                    == wire::Parsed::Done
                {
                    break;
                }
            }
        }
        Ok(sockets)
    }
}

#[cfg(not(target_os = "linux"))]
impl Sampler {
    /// Only Linux has sock_diag: elsewhere the caps count bitswap bytes only.
    pub fn open() -> std::io::Result<Sampler> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn dump(&mut self) -> std::io::Result<Vec<SocketBytes>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::wire::{self, Parsed};
    use super::*;

    // Linux's values, spelled out so these tests build on every OS.
    const LINUX_AF_INET: u8 = 2;
    const LINUX_AF_INET6: u8 = 10;
    const LINUX_EPERM: i32 = 1;

    fn socket(cookie: u64, inode: u64, sent: u64, received: u64) -> SocketBytes {
        SocketBytes {
            cookie,
            inode,
            uid: 1000,
            local: "192.0.2.1:4001".parse().unwrap(),
            remote: "198.51.100.7:4001".parse().unwrap(),
            sent_bytes: sent,
            received_bytes: received,
        }
    }

    fn inodes(list: &[u64]) -> impl FnOnce() -> HashSet<u64> + '_ {
        move || list.iter().copied().collect()
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(parse_socket_link("socket:[4026]"), Some(4026));
        assert_eq!(parse_socket_link("pipe:[4026]"), None);
        assert_eq!(parse_socket_link("/tmp/socket:[1]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
    }

    #[test]
    fn only_our_sockets_count_and_new_ones_count_from_zero() {
        let mut tally = Tally::default();
        let mut other_user = socket(9, 90, 5000, 5000);
        other_user.uid = 0;
        let dump = [
            socket(1, 10, 100, 50),
            socket(2, 20, 7000, 7000),
            other_user,
        ];
        assert_eq!(tally.add_dump(&dump, 1000, inodes(&[10])), (100, 50));
        assert_eq!(tally.own_sockets(), 1);
        // The next dump: deltas only; known sockets never re-read /proc.
        let dump = [socket(1, 10, 250, 80), socket(2, 20, 9000, 9000)];
        let never = || -> HashSet<u64> { panic!("no unknown socket: /proc must not be read") };
        assert_eq!(tally.add_dump(&dump, 1000, never), (150, 30));
    }

    #[test]
    fn a_closed_socket_counts_its_last_bytes_while_seen_and_is_dropped_when_gone() {
        let mut tally = Tally::default();
        tally.add_dump(&[socket(1, 10, 100, 0)], 1000, inodes(&[10]));
        // Closed by its owner: no inode any more, still draining the FIN and the rest of its send queue.
        assert_eq!(
            tally.add_dump(&[socket(1, 0, 180, 0)], 1000, inodes(&[])),
            (80, 0)
        );
        assert_eq!(tally.add_dump(&[], 1000, inodes(&[])), (0, 0));
        assert_eq!(tally.own_sockets(), 0);
    }

    #[test]
    fn a_reused_inode_is_a_new_socket() {
        let mut tally = Tally::default();
        tally.add_dump(&[socket(1, 10, 5000, 5000)], 1000, inodes(&[10]));
        // Socket 1 closed; inode 10 now belongs to another socket (another cookie) with smaller counters.
        assert_eq!(
            tally.add_dump(&[socket(2, 10, 300, 40)], 1000, inodes(&[10])),
            (300, 40)
        );
        // An inode that is not (or no longer) ours is foreign, and stays so while that socket lives.
        assert_eq!(
            tally.add_dump(
                &[socket(2, 10, 400, 40), socket(3, 11, 1, 1)],
                1000,
                inodes(&[])
            ),
            (100, 0)
        );
        assert_eq!(
            tally.add_dump(&[socket(3, 11, 2, 2)], 1000, inodes(&[11])),
            (0, 0)
        );
    }

    #[test]
    fn counters_going_backwards_start_a_new_baseline() {
        let mut tally = Tally::default();
        tally.add_dump(&[socket(1, 10, 1000, 1000)], 1000, inodes(&[10]));
        assert_eq!(
            tally.add_dump(&[socket(1, 10, 200, 1500)], 1000, inodes(&[])),
            (200, 500)
        );
        assert_eq!(
            tally.add_dump(&[socket(1, 10, 260, 1500)], 1000, inodes(&[])),
            (60, 0)
        );
    }

    #[test]
    fn a_socket_without_inode_is_not_classified_yet() {
        let mut tally = Tally::default();
        // In the accept queue: no inode, not ours for sure yet, not foreign either.
        assert_eq!(
            tally.add_dump(&[socket(1, 0, 0, 40)], 1000, inodes(&[])),
            (0, 0)
        );
        assert_eq!(
            tally.add_dump(&[socket(1, 10, 0, 90)], 1000, inodes(&[10])),
            (0, 90)
        );
    }

    #[test]
    fn an_idle_node_without_tcp_connections_never_dumps() {
        let long = IDLE_PERIOD * 10;
        let quiet = QUIET_SAMPLES_BEFORE_IDLE;
        assert!(
            dump_due(0, false, false, false, Duration::ZERO),
            "traffic lately"
        );
        assert!(
            dump_due(quiet, true, false, false, Duration::ZERO),
            "bitswap moves"
        );
        assert!(
            !dump_due(quiet, false, false, false, long),
            "nothing open: never"
        );
        assert!(
            dump_due(quiet, false, true, false, IDLE_PERIOD),
            "connections open"
        );
        assert!(!dump_due(quiet, false, true, false, IDLE_PERIOD / 2));
        assert!(
            dump_due(quiet, false, false, true, IDLE_PERIOD),
            "a closed connection's last bytes"
        );
    }

    #[test]
    fn only_sockets_connected_to_a_swarm_peer_count() {
        let peer = socket(1, 10, 0, 0);
        let mut gateway_client = socket(2, 11, 0, 0);
        gateway_client.local = "127.0.0.1:7780".parse().unwrap();
        gateway_client.remote = "127.0.0.1:51000".parse().unwrap();
        let mut remotes = HashMap::new();
        remotes.insert(peer.remote, 1);
        let mut sockets = vec![peer, gateway_client];
        keep_swarm_sockets(&mut sockets, &remotes);
        assert_eq!(sockets, vec![peer]);
        keep_swarm_sockets(&mut sockets, &HashMap::new());
        assert!(
            sockets.is_empty(),
            "no swarm connection: nothing is node traffic"
        );
    }

    #[test]
    fn overhead_is_what_tcp_carried_beyond_bitswap_and_never_negative() {
        let mut o = Overhead::default();
        assert_eq!(o.step(1000, 1030), 30);
        // Bitswap bytes still in yamux or the send queue: nothing charged, remembered...
        assert_eq!(o.step(16 * 1024, 8 * 1024), 0);
        // ...and matched against the bytes that follow.
        assert_eq!(o.step(0, 8 * 1024 + 50), 50);
        assert_eq!(o.step(0, 0), 0);
        // Bitswap bytes TCP never showed (a socket gone between samples) are forgotten beyond the cap.
        assert_eq!(o.step(100 * 1024 * 1024, 0), 0);
        assert_eq!(o.step(0, SLACK_CAP_BYTES + 7), 7);
    }

    /// Netlink messages and attributes are 4-byte aligned.
    fn pad4(bytes: &mut Vec<u8>) {
        bytes.resize(bytes.len().next_multiple_of(4), 0);
    }

    /// A dump reply as the kernel builds it: one inet_diag message with tcp_info, one with an unrelated attribute,
    /// one of another request, then DONE.
    fn reply(seq: u32, info_len: usize) -> Vec<u8> {
        fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&0x2u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(body);
            pad4(&mut m);
            m
        }
        fn diag(cookie: u64, inode: u32, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
            let mut body = vec![0u8; 72];
            body[0] = LINUX_AF_INET;
            body[1] = 1; // ESTABLISHED
            body[4..6].copy_from_slice(&7780u16.to_be_bytes());
            body[6..8].copy_from_slice(&40001u16.to_be_bytes());
            body[8..12].copy_from_slice(&[127, 0, 0, 1]);
            body[24..28].copy_from_slice(&[127, 0, 0, 2]);
            body[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
            body[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
            body[64..68].copy_from_slice(&1000u32.to_ne_bytes());
            body[68..72].copy_from_slice(&inode.to_ne_bytes());
            for (kind, payload) in attrs {
                body.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
                body.extend_from_slice(&kind.to_ne_bytes());
                body.extend_from_slice(payload);
                pad4(&mut body);
            }
            body
        }
        let mut info = vec![0u8; info_len];
        info[120..128].copy_from_slice(&1001u64.to_ne_bytes()); // acked
        info[128..136].copy_from_slice(&2002u64.to_ne_bytes()); // received
        if info_len >= 208 {
            info[200..208].copy_from_slice(&3003u64.to_ne_bytes()); // sent
        }
        let mut buf = message(
            wire::SOCK_DIAG_BY_FAMILY,
            seq,
            &diag((7 << 32) | 5, 4242, &[(1, vec![1, 2, 3]), (2, info)]),
        );
        buf.extend(message(
            wire::SOCK_DIAG_BY_FAMILY,
            seq,
            &diag(8, 4343, &[(1, vec![9; 5])]),
        ));
        buf.extend(message(
            wire::SOCK_DIAG_BY_FAMILY,
            seq + 1,
            &diag(9, 1, &[]),
        ));
        buf.extend(message(wire::NLMSG_DONE, seq, &0i32.to_ne_bytes()));
        buf
    }

    #[test]
    fn a_dump_reply_is_parsed() {
        let mut out = Vec::new();
        assert_eq!(
            wire::parse(&reply(7, 232), 7, &mut out).unwrap(),
            Parsed::Done
        );
        assert_eq!(
            out,
            vec![SocketBytes {
                cookie: (7 << 32) | 5,
                inode: 4242,
                uid: 1000,
                local: "127.0.0.1:7780".parse().unwrap(),
                remote: "127.0.0.2:40001".parse().unwrap(),
                sent_bytes: 3003,
                received_bytes: 2002,
            }]
        );
        // Before Linux 4.19 tcp_info ends before tcpi_bytes_sent: bytes acked stand in.
        out.clear();
        wire::parse(&reply(7, 192), 7, &mut out).unwrap();
        assert_eq!(out[0].sent_bytes, 1001);
        // A truncated buffer is an error, not a panic.
        let buf = reply(7, 232);
        assert!(wire::parse(&buf[..40], 7, &mut Vec::new()).is_err());
    }

    #[test]
    fn an_error_reply_is_the_kernels_errno() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&wire::NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&3u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-LINUX_EPERM).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        let e = wire::parse(&m, 3, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(LINUX_EPERM));
    }

    #[test]
    fn the_request_asks_for_tcp_info_of_tcp_sockets() {
        let r = wire::dump_request(LINUX_AF_INET6, 42);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), wire::SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 42);
        assert_eq!(&r[16..20], &[LINUX_AF_INET6, 6, 2, 0]);
        let states = u32::from_ne_bytes(r[20..24].try_into().unwrap());
        assert_ne!(states & (1 << 1), 0, "ESTABLISHED");
        assert_ne!(states & (1 << 4), 0, "FIN_WAIT1: a closed socket draining");
        assert_eq!(states & (1 << 10), 0, "not LISTEN");
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    /// The real kernel: a loopback connection made here shows up as ours with the bytes written through it.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_reports_our_loopback_connection() {
        use std::io::{Read, Write};
        let Ok(mut sampler) = Sampler::open() else {
            eprintln!("sock_diag is not available here");
            return;
        };
        let uid = current_uid();
        let mut tally = Tally::default();
        tally.add_dump(&sampler.dump().unwrap(), uid, own_socket_inodes);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 100_000]).unwrap();
        let mut got = vec![0u8; 100_000];
        server.read_exact(&mut got).unwrap();
        server.write_all(&[1u8; 3000]).unwrap();
        client.read_exact(&mut got[..3000]).unwrap();
        // The kernel's remote address of each end is the other end's local address.
        let dump = sampler.dump().unwrap();
        let accepted_end = dump
            .iter()
            .find(|s| s.local == listener.local_addr().unwrap())
            .expect("the accepted end is in the dump");
        assert_eq!(accepted_end.remote, client.local_addr().unwrap());
        let (sent, received) = tally.add_dump(&dump, uid, own_socket_inodes);
        // Both ends are ours: each direction is counted once sent and once received (other tests of this process
        // may add their own sockets' bytes).
        assert!(sent >= 103_000, "sent {sent}");
        assert!(received >= 103_000, "received {received}");
    }
}
