//! Accepting inbound bitswap streams (1.2.0, 1.1.0, 1.0.0) in our own `NetworkBehaviour` and `ConnectionHandler`.
//! Every negotiated stream goes to the responder over an unbounded channel: nothing is dropped for lack of room
//! (libp2p-stream's one-slot hand-off did that). The swarm stops taking new inbound streams from a connection while
//! 128 are still negotiating, and yamux caps open streams per connection, so the queue is bounded by the peers.
//! A stream that cannot be handed over (the responder has stopped) is counted and logged.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use connexa::prelude::swarm::derive_prelude::{Endpoint, PortUse};
use connexa::prelude::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use connexa::prelude::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use connexa::prelude::transport::upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo};
use futures::channel::mpsc;
use rust_ipfs::{Multiaddr, PeerId, Stream, StreamProtocol};

use super::wire::Version;
use super::Counters;

/// One accepted inbound bitswap stream, on its way to the responder.
pub struct InboundStream {
    pub peer: PeerId,
    pub version: Version,
    pub stream: Stream,
}

/// Hands every inbound bitswap stream of every connection to the responder. `ToSwarm = Infallible`: it reports
/// nothing to the swarm.
pub struct InboundBehaviour {
    streams: mpsc::UnboundedSender<InboundStream>,
    counters: Arc<Counters>,
}

impl InboundBehaviour {
    pub fn new(streams: mpsc::UnboundedSender<InboundStream>, counters: Arc<Counters>) -> Self {
        InboundBehaviour { streams, counters }
    }

    fn handler(&self, peer: PeerId) -> InboundHandler {
        InboundHandler {
            peer,
            streams: self.streams.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

/// A QUIC (UDP) address: its bytes are not in the kernel's TCP counters.
fn is_quic(address: &Multiaddr) -> bool {
    address.iter().any(|p| {
        matches!(
            p,
            rust_ipfs::Protocol::QuicV1 | rust_ipfs::Protocol::Quic | rust_ipfs::Protocol::Udp(_)
        )
    })
}

/// The IP socket address of a direct TCP multiaddr (`/ip4|ip6/<ip>/tcp/<port>`, IPv4-mapped IPv6 as IPv4); None for
/// QUIC, DNS names and relayed addresses (their sockets then go uncounted: undercounted, never overcounted).
pub(crate) fn tcp_socket_address(address: &Multiaddr) -> Option<std::net::SocketAddr> {
    let mut parts = address.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        rust_ipfs::Protocol::Ip4(ip) => ip.into(),
        rust_ipfs::Protocol::Ip6(ip) => ip.to_canonical(),
        _ => return None,
    };
    let rust_ipfs::Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    if parts.any(|p| matches!(p, rust_ipfs::Protocol::P2pCircuit)) {
        return None;
    }
    Some(std::net::SocketAddr::new(ip, port))
}

impl NetworkBehaviour for InboundBehaviour {
    type ConnectionHandler = InboundHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    /// Keeps [`Counters::connections`]: which transports each peer is connected over.
    fn on_swarm_event(&mut self, event: FromSwarm) {
        let (peer, address, opened) = match event {
            FromSwarm::ConnectionEstablished(e) => {
                (e.peer_id, e.endpoint.get_remote_address(), true)
            }
            FromSwarm::ConnectionClosed(e) => (e.peer_id, e.endpoint.get_remote_address(), false),
            _ => return,
        };
        let quic = is_quic(address);
        if let Some(remote) = tcp_socket_address(address) {
            let mut remotes = self.counters.tcp_remotes.lock().unwrap();
            let count = remotes.entry(remote).or_default();
            *count = if opened {
                *count + 1
            } else {
                count.saturating_sub(1)
            };
            if *count == 0 {
                remotes.remove(&remote);
            }
        }
        let mut connections = self.counters.connections.lock().unwrap();
        let entry = connections.entry(peer).or_default();
        let count = if quic { &mut entry.1 } else { &mut entry.0 };
        *count = if opened {
            *count + 1
        } else {
            count.saturating_sub(1)
        };
        if *entry == (0, 0) {
            connections.remove(&peer);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Per connection: offers the three protocols (so identify advertises them) and forwards each negotiated stream.
/// Replies go out on streams opened through libp2p-stream's `Control`, not here.
pub struct InboundHandler {
    peer: PeerId,
    streams: mpsc::UnboundedSender<InboundStream>,
    counters: Arc<Counters>,
}

impl ConnectionHandler for InboundHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = BitswapUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<BitswapUpgrade> {
        SubstreamProtocol::new(BitswapUpgrade, ())
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<BitswapUpgrade, DeniedUpgrade, (), ()>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, version),
            info: (),
        }) = event
        {
            self.counters
                .inbound_streams_accepted
                .fetch_add(1, Ordering::Relaxed);
            let inbound = InboundStream {
                peer: self.peer,
                version,
                stream,
            };
            if self.streams.unbounded_send(inbound).is_err() {
                // Only after shutdown: the responder's receiver is gone. Dropping the stream resets it.
                self.counters
                    .inbound_streams_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.peer, "bitswap responder stopped; inbound stream refused");
            }
        }
    }
}

/// The inbound upgrade: multistream-select among our three protocols, then the raw stream and its version.
pub struct BitswapUpgrade;

impl UpgradeInfo for BitswapUpgrade {
    type Info = StreamProtocol;
    type InfoIter = std::array::IntoIter<StreamProtocol, 3>;

    fn protocol_info(&self) -> Self::InfoIter {
        Version::ALL
            .map(|v| StreamProtocol::new(v.protocol()))
            .into_iter()
    }
}

impl InboundUpgrade<Stream> for BitswapUpgrade {
    type Output = (Stream, Version);
    type Error = Infallible;
    type Future = Ready<Result<(Stream, Version), Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        let version = Version::ALL
            .into_iter()
            .find(|v| v.protocol() == protocol.as_ref())
            .expect("multistream-select only picks a protocol we offered");
        ready(Ok((stream, version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_socket_addresses_come_from_direct_tcp_multiaddrs_only() {
        let addr = |s: &str| tcp_socket_address(&s.parse::<Multiaddr>().unwrap());
        assert_eq!(
            addr("/ip4/192.0.2.1/tcp/4001"),
            Some("192.0.2.1:4001".parse().unwrap())
        );
        assert_eq!(
            addr("/ip6/::ffff:192.0.2.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"),
            Some("192.0.2.1:4001".parse().unwrap())
        );
        assert_eq!(addr("/ip4/192.0.2.1/udp/4001/quic-v1"), None);
        assert_eq!(addr("/dns4/example.invalid/tcp/4001"), None);
        assert_eq!(
            addr("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit"),
            None
        );
    }

    #[test]
    fn quic_addresses_are_told_from_tcp_ones() {
        let quic: Multiaddr = "/ip4/192.0.2.1/udp/4001/quic-v1".parse().unwrap();
        let tcp: Multiaddr = "/ip6/2001:db8::1/tcp/4001".parse().unwrap();
        assert!(is_quic(&quic));
        assert!(!is_quic(&tcp));
    }

    #[test]
    fn a_peer_is_quic_only_while_it_has_no_tcp_connection_and_tcp_ones_are_seen() {
        let counters = Counters::default();
        let peer = PeerId::random();
        assert!(!counters.quic_only(&peer), "unknown peers count as TCP");
        counters.connections.lock().unwrap().insert(peer, (0, 2));
        assert!(counters.quic_only(&peer));
        assert!(!counters.tcp_connections_open());
        counters.connections.lock().unwrap().insert(peer, (1, 2));
        assert!(!counters.quic_only(&peer));
        assert!(counters.tcp_connections_open());
    }
}
