//! External address confirmation for the `public` profile: libp2p-kad puts the swarm's *confirmed* external
//! addresses into every ADD_PROVIDER, and peers drop a provider record without addresses. Nothing in rust-ipfs
//! confirms any (its autonat is not compiled in), so this behaviour does: a publicly routable listen address is
//! confirmed at once, an address identify reports as observed once [`CONFIRM_REPORTERS`] distinct peers reported it;
//! both expire again (listener gone, or no report for [`REPORT_TTL`]). See docs/bitswap.md, "External addresses".

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use connexa::prelude::swarm::derive_prelude::{Endpoint, PortUse};
use connexa::prelude::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use rust_ipfs::{Multiaddr, PeerId, Protocol};

/// Distinct peers that must report the same observed address before it is confirmed.
pub const CONFIRM_REPORTERS: usize = 3;
/// A report counts this long; a confirmed observed address nobody reported for this long expires.
pub const REPORT_TTL: Duration = Duration::from_secs(60 * 60);
/// How often reports are aged.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Observed addresses tracked at once (the oldest unconfirmed one makes room).
const MAX_CANDIDATES: usize = 32;
/// Reporters remembered per address (the oldest makes room).
const MAX_REPORTERS: usize = 16;
/// A connection whose identify report has not come within this long is not credited with a later one.
const REPORT_WAIT: Duration = Duration::from_secs(30);
/// Connections awaiting their identify report that are remembered (the oldest makes room).
const MAX_AWAITING_REPORT: usize = 256;

/// Which addresses may become external.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routability {
    /// Public IPv4/IPv6 only; a public listen address is confirmed at once.
    Public,
    /// Test-only: observed loopback addresses count as routable and listen addresses are never confirmed directly,
    /// so nodes on 127.0.0.1 exercise the identify path alone.
    ObservedLoopback,
}

/// A change to announce to the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Confirmed(Multiaddr),
    Expired(Multiaddr),
}

#[derive(Default)]
struct Candidate {
    /// Reporter → when it last reported this address.
    reporters: HashMap<PeerId, Instant>,
    confirmed: bool,
}

impl Candidate {
    fn last_report(&self) -> Option<Instant> {
        self.reporters.values().max().copied()
    }
}

/// The confirmation rules, without the swarm (clock passed in, so it is unit-testable).
pub struct AddrConfirmation {
    routability: Routability,
    /// Every current listen address (routable or not), for port matching on expiry.
    listen: HashSet<Multiaddr>,
    /// Listen addresses confirmed directly.
    listen_confirmed: HashSet<Multiaddr>,
    observed: HashMap<Multiaddr, Candidate>,
    changes: VecDeque<Change>,
}

impl AddrConfirmation {
    pub fn new(routability: Routability) -> Self {
        AddrConfirmation {
            routability,
            listen: HashSet::new(),
            listen_confirmed: HashSet::new(),
            observed: HashMap::new(),
            changes: VecDeque::new(),
        }
    }

    fn is_confirmed(&self, addr: &Multiaddr) -> bool {
        self.listen_confirmed.contains(addr) || self.observed.get(addr).is_some_and(|c| c.confirmed)
    }

    pub fn on_listen_addr(&mut self, addr: &Multiaddr) {
        self.listen.insert(addr.clone());
        let direct = self.routability == Routability::Public && is_routable(addr, false);
        if direct && !self.is_confirmed(addr) {
            self.listen_confirmed.insert(addr.clone());
            self.changes.push_back(Change::Confirmed(addr.clone()));
        }
    }

    /// A listen address went away: it expires, and so does every observed address on its transport and port once no
    /// listener is left on that port (with port reuse, peers see our listen port).
    pub fn on_listen_addr_expired(&mut self, addr: &Multiaddr) {
        self.listen.remove(addr);
        if self.listen_confirmed.remove(addr) && !self.is_confirmed(addr) {
            self.changes.push_back(Change::Expired(addr.clone()));
        }
        let Some(closed) = transport_port(addr) else {
            return;
        };
        if self
            .listen
            .iter()
            .any(|a| transport_port(a) == Some(closed))
        {
            return;
        }
        let orphaned: Vec<Multiaddr> = self
            .observed
            .keys()
            .filter(|a| transport_port(a) == Some(closed))
            .cloned()
            .collect();
        for a in orphaned {
            self.forget_observed(&a);
        }
    }

    /// Identify says `reporter` sees us at `addr`.
    pub fn on_observed(&mut self, addr: &Multiaddr, reporter: PeerId, now: Instant) {
        let addr = without_p2p(addr);
        let loopback_ok = self.routability == Routability::ObservedLoopback;
        if !is_routable(&addr, loopback_ok) || self.listen_confirmed.contains(&addr) {
            return;
        }
        if !self.observed.contains_key(&addr) && self.observed.len() >= MAX_CANDIDATES {
            let oldest = self
                .observed
                .iter()
                .filter(|(_, c)| !c.confirmed)
                .min_by_key(|(_, c)| c.last_report())
                .map(|(a, _)| a.clone());
            match oldest {
                Some(a) => {
                    self.observed.remove(&a);
                }
                None => return,
            }
        }
        let candidate = self.observed.entry(addr.clone()).or_default();
        if candidate.reporters.len() >= MAX_REPORTERS
            && !candidate.reporters.contains_key(&reporter)
        {
            if let Some(oldest) = candidate
                .reporters
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(p, _)| *p)
            {
                candidate.reporters.remove(&oldest);
            }
        }
        candidate.reporters.insert(reporter, now);
        if !candidate.confirmed && candidate.reporters.len() >= CONFIRM_REPORTERS {
            candidate.confirmed = true;
            self.changes.push_back(Change::Confirmed(addr));
        }
    }

    /// Forgets reports older than [`REPORT_TTL`]; a confirmed address left with no report expires.
    pub fn sweep(&mut self, now: Instant) {
        for c in self.observed.values_mut() {
            c.reporters
                .retain(|_, t| now.saturating_duration_since(*t) < REPORT_TTL);
        }
        let stale: Vec<Multiaddr> = self
            .observed
            .iter()
            .filter(|(_, c)| c.reporters.is_empty())
            .map(|(a, _)| a.clone())
            .collect();
        for a in stale {
            self.forget_observed(&a);
        }
    }

    fn forget_observed(&mut self, addr: &Multiaddr) {
        if let Some(c) = self.observed.remove(addr) {
            if c.confirmed && !self.listen_confirmed.contains(addr) {
                self.changes.push_back(Change::Expired(addr.clone()));
            }
        }
    }

    pub fn next_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// (is UDP, port) of a TCP or QUIC address.
fn transport_port(addr: &Multiaddr) -> Option<(bool, u16)> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some((false, port)),
        Protocol::Udp(port) => Some((true, port)),
        _ => None,
    })
}

/// A public IP address (or loopback, if `loopback_ok`) over TCP or QUIC v1 with a real port; no relay addresses.
pub fn is_routable(addr: &Multiaddr, loopback_ok: bool) -> bool {
    let addr = without_p2p(addr);
    let parts: Vec<Protocol> = addr.iter().collect();
    let (ip_ok, transport) = match parts.as_slice() {
        [Protocol::Ip4(ip), rest @ ..] => {
            (is_public_v4(*ip) || (loopback_ok && ip.is_loopback()), rest)
        }
        [Protocol::Ip6(ip), rest @ ..] => {
            (is_public_v6(*ip) || (loopback_ok && ip.is_loopback()), rest)
        }
        _ => return false,
    };
    let transport_ok = match transport {
        [Protocol::Tcp(port)] => *port != 0,
        [Protocol::Udp(port), Protocol::QuicV1] => *port != 0,
        _ => false,
    };
    ip_ok && transport_ok
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    let benchmarking = a == 198 && (18..20).contains(&b);
    let reserved = a >= 240;
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || cgnat
        || this_network
        || benchmarking
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation)
}

/// The swarm side: feeds [`AddrConfirmation`] from listen and identify events and hands its changes to the swarm.
/// `None` (the `local` profile): does nothing; that profile records its bound loopback addresses itself.
pub struct ExternalAddrBehaviour {
    confirmation: Option<AddrConfirmation>,
    /// Connections whose identify report has not come yet, oldest first. libp2p hands us identify's
    /// observed-address candidate without naming the peer; identify asks right after a connection is established,
    /// so a candidate is credited to the oldest connection still waiting (see docs/bitswap.md for what that means).
    awaiting_report: VecDeque<(ConnectionId, PeerId, Instant)>,
    sweep: Option<tokio::time::Interval>,
}

impl ExternalAddrBehaviour {
    /// Must be called inside a tokio runtime when `routability` is set (the sweep timer).
    pub fn new(routability: Option<Routability>) -> Self {
        let sweep = routability.map(|_| {
            let mut t = tokio::time::interval_at(
                tokio::time::Instant::now() + SWEEP_INTERVAL,
                SWEEP_INTERVAL,
            );
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        ExternalAddrBehaviour {
            confirmation: routability.map(AddrConfirmation::new),
            awaiting_report: VecDeque::new(),
            sweep,
        }
    }
}

impl NetworkBehaviour for ExternalAddrBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let Some(confirmation) = self.confirmation.as_mut() else {
            return;
        };
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if self.awaiting_report.len() >= MAX_AWAITING_REPORT {
                    self.awaiting_report.pop_front();
                }
                self.awaiting_report
                    .push_back((e.connection_id, e.peer_id, Instant::now()));
            }
            FromSwarm::ConnectionClosed(e) => {
                self.awaiting_report
                    .retain(|(id, ..)| *id != e.connection_id);
            }
            FromSwarm::NewListenAddr(e) => confirmation.on_listen_addr(e.addr),
            FromSwarm::ExpiredListenAddr(e) => confirmation.on_listen_addr_expired(e.addr),
            FromSwarm::NewExternalAddrCandidate(e) => {
                let now = Instant::now();
                while let Some((_, peer, established)) = self.awaiting_report.pop_front() {
                    if now.saturating_duration_since(established) < REPORT_WAIT {
                        confirmation.on_observed(e.addr, peer, now);
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        let Some(confirmation) = self.confirmation.as_mut() else {
            return Poll::Pending;
        };
        if let Some(sweep) = self.sweep.as_mut() {
            while sweep.poll_tick(cx).is_ready() {
                confirmation.sweep(Instant::now());
            }
        }
        match confirmation.next_change() {
            Some(Change::Confirmed(addr)) => {
                tracing::info!(%addr, "external address confirmed");
                Poll::Ready(ToSwarm::ExternalAddrConfirmed(addr))
            }
            Some(Change::Expired(addr)) => {
                tracing::info!(%addr, "external address expired");
                Poll::Ready(ToSwarm::ExternalAddrExpired(addr))
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn drain(c: &mut AddrConfirmation) -> Vec<Change> {
        std::iter::from_fn(|| c.next_change()).collect()
    }

    #[test]
    fn routable_addresses_exclude_private_loopback_link_local_cgnat_and_unspecified() {
        for private in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.1.2.3/tcp/4001",
            "/ip4/172.16.0.1/tcp/4001",
            "/ip4/192.168.1.5/udp/4001/quic-v1",
            "/ip4/169.254.1.1/tcp/4001",
            "/ip4/100.64.0.1/tcp/4001",
            "/ip4/100.127.255.254/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/fd00::1/tcp/4001",
            "/ip6/::ffff:10.0.0.1/tcp/4001",
            "/ip4/8.8.8.8/tcp/0",
            "/ip4/8.8.8.8/udp/4001",
            "/ip4/8.8.8.8/tcp/4001/ws",
            "/dns4/example.org/tcp/4001",
        ] {
            assert!(!is_routable(&ma(private), false), "{private}");
        }
        for public in [
            "/ip4/8.8.8.8/tcp/4001",
            "/ip4/100.128.0.1/tcp/4001",
            "/ip4/1.2.3.4/udp/4001/quic-v1",
            "/ip6/2a00:1450::1/tcp/4001",
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        ] {
            assert!(is_routable(&ma(public), false), "{public}");
        }
        assert!(is_routable(&ma("/ip4/127.0.0.1/tcp/4001"), true));
        assert!(!is_routable(&ma("/ip4/192.168.1.5/tcp/4001"), true));
    }

    #[test]
    fn public_listen_address_is_confirmed_at_once_and_expires_with_its_listener() {
        let mut c = AddrConfirmation::new(Routability::Public);
        c.on_listen_addr(&ma("/ip4/127.0.0.1/tcp/4001"));
        c.on_listen_addr(&ma("/ip4/192.168.1.5/tcp/4001"));
        assert_eq!(drain(&mut c), vec![]);
        c.on_listen_addr(&ma("/ip4/1.2.3.4/tcp/4001"));
        assert_eq!(
            drain(&mut c),
            vec![Change::Confirmed(ma("/ip4/1.2.3.4/tcp/4001"))]
        );
        c.on_listen_addr_expired(&ma("/ip4/192.168.1.5/tcp/4001"));
        assert_eq!(drain(&mut c), vec![]);
        c.on_listen_addr_expired(&ma("/ip4/1.2.3.4/tcp/4001"));
        assert_eq!(
            drain(&mut c),
            vec![Change::Expired(ma("/ip4/1.2.3.4/tcp/4001"))]
        );
    }

    #[test]
    fn observed_address_needs_distinct_peers() {
        let mut c = AddrConfirmation::new(Routability::Public);
        c.on_listen_addr(&ma("/ip4/192.168.1.5/tcp/4001"));
        let addr = ma("/ip4/1.2.3.4/tcp/4001");
        let (a, b, d) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        c.on_observed(&addr, a, now);
        c.on_observed(&addr, a, now);
        c.on_observed(&addr, b, now);
        c.on_observed(&addr, b, now);
        assert_eq!(drain(&mut c), vec![], "two peers, four reports");
        // Ephemeral source ports differ per connection: never the same address three times.
        for (i, p) in [a, b, d].into_iter().enumerate() {
            c.on_observed(&ma(&format!("/ip4/1.2.3.4/tcp/{}", 50000 + i)), p, now);
        }
        assert_eq!(drain(&mut c), vec![]);
        c.on_observed(&ma(&format!("{addr}/p2p/{d}")), d, now);
        assert_eq!(drain(&mut c), vec![Change::Confirmed(addr.clone())]);
        c.on_observed(&addr, PeerId::random(), now);
        assert_eq!(drain(&mut c), vec![], "confirmed once");
    }

    #[test]
    fn private_observed_addresses_are_ignored_in_public_mode() {
        let mut c = AddrConfirmation::new(Routability::Public);
        let now = Instant::now();
        for addr in ["/ip4/10.0.0.7/tcp/4001", "/ip4/127.0.0.1/tcp/4001"] {
            for _ in 0..CONFIRM_REPORTERS + 1 {
                c.on_observed(&ma(addr), PeerId::random(), now);
            }
        }
        assert_eq!(drain(&mut c), vec![]);
        let mut test_mode = AddrConfirmation::new(Routability::ObservedLoopback);
        test_mode.on_listen_addr(&ma("/ip4/127.0.0.1/tcp/4001"));
        assert_eq!(
            drain(&mut test_mode),
            vec![],
            "test mode: listen addresses are not confirmed directly"
        );
        for _ in 0..CONFIRM_REPORTERS {
            test_mode.on_observed(&ma("/ip4/127.0.0.1/tcp/4001"), PeerId::random(), now);
        }
        assert_eq!(
            drain(&mut test_mode),
            vec![Change::Confirmed(ma("/ip4/127.0.0.1/tcp/4001"))]
        );
    }

    #[test]
    fn observed_address_expires_when_no_longer_reported() {
        let mut c = AddrConfirmation::new(Routability::Public);
        let addr = ma("/ip4/1.2.3.4/udp/4001/quic-v1");
        let t0 = Instant::now();
        for _ in 0..CONFIRM_REPORTERS {
            c.on_observed(&addr, PeerId::random(), t0);
        }
        assert_eq!(drain(&mut c), vec![Change::Confirmed(addr.clone())]);
        let later = t0 + REPORT_TTL / 2;
        c.on_observed(&addr, PeerId::random(), later);
        c.sweep(t0 + REPORT_TTL);
        assert_eq!(drain(&mut c), vec![], "one report is still fresh");
        c.sweep(later + REPORT_TTL);
        assert_eq!(drain(&mut c), vec![Change::Expired(addr.clone())]);
        // Reports start over: one report after expiry does not confirm again.
        c.on_observed(&addr, PeerId::random(), later + REPORT_TTL);
        assert_eq!(drain(&mut c), vec![]);
    }

    #[test]
    fn observed_address_expires_when_its_listener_closes() {
        let mut c = AddrConfirmation::new(Routability::Public);
        let tcp_listen = ma("/ip4/192.168.1.5/tcp/4001");
        let quic_listen = ma("/ip4/192.168.1.5/udp/4002/quic-v1");
        c.on_listen_addr(&tcp_listen);
        c.on_listen_addr(&quic_listen);
        let tcp = ma("/ip4/1.2.3.4/tcp/4001");
        let quic = ma("/ip4/1.2.3.4/udp/4002/quic-v1");
        let now = Instant::now();
        for _ in 0..CONFIRM_REPORTERS {
            let p = PeerId::random();
            c.on_observed(&tcp, p, now);
            c.on_observed(&quic, p, now);
        }
        assert_eq!(
            drain(&mut c),
            vec![
                Change::Confirmed(tcp.clone()),
                Change::Confirmed(quic.clone())
            ]
        );
        c.on_listen_addr_expired(&tcp_listen);
        assert_eq!(drain(&mut c), vec![Change::Expired(tcp)]);
        c.on_listen_addr_expired(&quic_listen);
        assert_eq!(drain(&mut c), vec![Change::Expired(quic)]);
    }
}
