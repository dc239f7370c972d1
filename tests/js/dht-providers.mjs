// Asks one pkgseed node, over the real Kademlia protocol (/ipfs/kad/1.0.0, GET_PROVIDERS), who provides some CIDs —
// the way an unrelated IPFS peer's DHT client would.
//
//   node dht-providers.mjs --peer <multiaddr/p2p/id> --find-providers <cid> [--find-providers <cid> ...]
//                          [--timeout-seconds 20] [--routing-seconds 15]
//
// A libp2p node (TCP + noise + yamux + identify + ping, listening on 127.0.0.1 only; no bootstrap, no mDNS) with
// @libp2p/kad-dht in client mode and a pass-through peerInfoMapper (the default mapper of the public DHT strips
// loopback addresses, which would keep the loopback-only pkgseed node out of the routing table). It dials --peer,
// waits (at most --routing-seconds) until that peer is in its routing table, then runs the DHT's findProviders query
// for each CID (at most --timeout-seconds each) and prints one JSON line per CID:
//   {"cid": ..., "providers": [peerId, ...], "responded": [peerId, ...], "ok": true}
// `responded` lists the peers that answered a GET_PROVIDERS request for that CID: an empty `providers` only means
// "nobody provides it" when the queried node is in `responded`. A failed query prints {"cid", "ok": false, "error"}.
// Exit status: 0 if every query ran (whatever it found), 1 if a query or the set-up failed.

// First: the Node 20 polyfill libp2p 3 needs, and the loopback libp2p set-up shared by the tools.
import { loopbackLibp2pOptions } from './lib.mjs'

const { createLibp2p } = await import('libp2p')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')

function parseArgs (argv) {
  const opts = { peer: null, cids: [], timeout: 20, routing: 15 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    switch (a) {
      case '--peer': opts.peer = next(); break
      case '--find-providers': opts.cids.push(next()); break
      case '--timeout-seconds': opts.timeout = Number(next()); break
      case '--routing-seconds': opts.routing = Number(next()); break
      default: throw new Error(`unknown argument ${a}`)
    }
  }
  if (opts.peer == null) throw new Error('--peer is required')
  if (opts.cids.length === 0) throw new Error('nothing to do: give --find-providers')
  return opts
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const peerAddr = multiaddr(opts.peer)

  const libp2p = await createLibp2p(await loopbackLibp2pOptions({
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: true,
      peerInfoMapper: passthroughMapper
    })
  }))

  let failed = false
  try {
    const conn = await libp2p.dial(peerAddr, { signal: AbortSignal.timeout(opts.routing * 1000) })
    const remote = conn.remotePeer
    // The DHT adds the peer once identify has shown it speaks /ipfs/kad/1.0.0 (server mode).
    const dht = libp2p.services.dht
    const deadline = Date.now() + opts.routing * 1000
    while ((await dht.routingTable.find(remote)) == null) {
      if (Date.now() >= deadline) {
        throw new Error(`${remote} not in the DHT routing table after ${opts.routing}s ` +
          `(protocols: ${JSON.stringify((await libp2p.peerStore.get(remote).catch(() => null))?.protocols ?? [])})`)
      }
      await sleep(50)
    }

    for (const text of opts.cids) {
      const cid = CID.parse(text)
      const providers = new Set()
      const responded = new Set()
      try {
        const signal = AbortSignal.timeout(opts.timeout * 1000)
        for await (const event of dht.findProviders(cid, { signal })) {
          if (event.name === 'PEER_RESPONSE' && event.messageName === 'GET_PROVIDERS') {
            responded.add(event.from.toString())
          }
          if (event.name === 'PROVIDER') {
            for (const p of event.providers) providers.add(p.id.toString())
          }
        }
        console.log(JSON.stringify({ cid: text, providers: [...providers], responded: [...responded], ok: true }))
      } catch (err) {
        failed = true
        console.log(JSON.stringify({
          cid: text, providers: [...providers], responded: [...responded], ok: false, error: String(err?.message ?? err)
        }))
      }
    }
  } catch (err) {
    failed = true
    console.error(`dht-providers: ${err?.stack ?? err}`)
  } finally {
    await Promise.race([libp2p.stop().catch(() => {}), sleep(5000)])
  }
  process.exit(failed ? 1 : 0)
}

main().catch(err => {
  console.error(`dht-providers: ${err?.stack ?? err}`)
  process.exit(2)
})
