//! Network profiles: how the rust-ipfs builder is configured for `Local` (loopback, nothing else) and `Public`.

use rust_ipfs::builder::IpfsBuilder;
use rust_ipfs::p2p::IdentifyConfiguration;
use rust_ipfs::{Keypair, Multiaddr, PeerId, Protocol};

use crate::behaviour::NodeBehaviour;
use crate::NetworkProfile;

/// Keep idle connections: a peer that connected and idles (Helia keeps them) must still be served later.
const IDLE_CONNECTION_TIMEOUT_SECS: u64 = 300;

pub fn default_listen_addrs(profile: NetworkProfile) -> Vec<Multiaddr> {
    let addrs: &[&str] = match profile {
        NetworkProfile::Local | NetworkProfile::LoopbackObservedAddrs => &["/ip4/127.0.0.1/tcp/0"],
        NetworkProfile::Public => &[
            "/ip4/0.0.0.0/tcp/0",
            "/ip6/::/tcp/0",
            "/ip4/0.0.0.0/udp/0/quic-v1",
            "/ip6/::/udp/0/quic-v1",
        ],
    };
    addrs
        .iter()
        .map(|a| a.parse().expect("static multiaddr"))
        .collect()
}

/// The public bootstrap peers (rust-ipfs's default list), split into (peer, address without `/p2p`).
pub fn bootstrap_peers() -> Vec<(PeerId, Multiaddr)> {
    rust_ipfs::config::BOOTSTRAP_NODES
        .iter()
        .filter_map(|s| s.parse::<Multiaddr>().ok())
        .filter_map(|mut addr| match addr.pop() {
            Some(Protocol::P2p(peer)) => Some((peer, addr)),
            _ => None,
        })
        .collect()
}

/// Identity, transports, identify, ping, streams (outbound bitswap replies) and our behaviour (Kademlia, inbound
/// bitswap); no rust-ipfs bitswap or Kademlia, no mDNS, relay, UPnP or autonat in either profile.
pub fn builder(
    profile: NetworkProfile,
    keypair: &Keypair,
    listen: Vec<Multiaddr>,
    behaviour: NodeBehaviour,
) -> std::io::Result<IpfsBuilder<NodeBehaviour>> {
    let identify = IdentifyConfiguration {
        agent_version: format!("pkgseed/{}", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    let mut builder = IpfsBuilder::<NodeBehaviour>::with_keypair(keypair)?
        .with_identify(identify)
        .with_ping(Default::default())
        .with_streams()
        .with_custom_behaviour(move |_| Ok(behaviour))
        .enable_tcp()
        .set_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT_SECS)
        .set_listening_addrs(listen);
    if profile == NetworkProfile::Public {
        builder = builder.enable_quic().enable_dns();
    }
    Ok(builder)
}
