//! The one custom behaviour rust-ipfs runs for us: our Kademlia ([`DhtBehaviour`]), our inbound bitswap
//! ([`InboundBehaviour`]) and external address confirmation ([`ExternalAddrBehaviour`]) side by side, composed by
//! libp2p's derive (reached through connexa's re-export).

use std::convert::Infallible;

use connexa::prelude::swarm::NetworkBehaviour;

use crate::bitswap::inbound::InboundBehaviour;
use crate::dht::DhtBehaviour;
use crate::extaddr::ExternalAddrBehaviour;

#[derive(NetworkBehaviour)]
#[behaviour(
    prelude = "connexa::prelude::swarm::derive_prelude",
    to_swarm = "Infallible"
)]
pub struct NodeBehaviour {
    pub dht: DhtBehaviour,
    pub bitswap: InboundBehaviour,
    pub external_addrs: ExternalAddrBehaviour,
}
