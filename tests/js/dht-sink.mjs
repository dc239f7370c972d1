// A small Kademlia network on loopback that counts the provider records one peer really stores with it: the
// announcing row of `pkgseed bench` (issue 6).
//
//   node dht-sink.mjs --dial <multiaddr/p2p/id> [--dial ...] --provider <peerId> [--provider ...]
//                     --expect-keys N [--nodes 4] [--timeout-seconds 300] [--stall-seconds 30]
//                     [--routing-seconds 20]
//
// Starts --nodes js-libp2p nodes in one process (TCP + noise + yamux + identify + identify push + ping, 127.0.0.1
// only, no bootstrap, no mDNS) with @libp2p/kad-dht in server mode on /ipfs/kad/1.0.0 and a pass-through
// peerInfoMapper (loopback addresses kept), connects them to each other and dials every --dial peer, then waits (at
// most --routing-seconds) until each node has every dialed peer in its routing table. It prints {"ready": true, "nodes": n, "addrs": [...]}
// and from then on counts ADD_PROVIDER records stored by any node whose provider is one of --provider (the
// records land in each node's datastore under /dht/provider/<multihash>/<peer>). It exits once --expect-keys
// distinct keys have arrived, at --timeout-seconds, or when no new key arrived for --stall-seconds after the first
// one, and prints
//   {"keys": distinct keys, "records": records stored (a key counts once per node that stored it),
//    "first_ms": epoch ms of the first record, "last_ms": epoch ms of the last new key, "done": all arrived}
// The DHT protocol accepts 256 inbound streams per connection (js-libp2p's default of 32 would refuse some of the
// announcer's concurrent requests, which all go to these few nodes).
// Exit status 0 if the expected keys arrived, 1 if not (the summary is printed either way), 2 on a set-up failure.

// First: the Node 20 polyfill libp2p 3 needs, and the loopback libp2p set-up shared by the tools.
import { loopbackLibp2pOptions } from './lib.mjs'

const { createLibp2p } = await import('libp2p')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { identifyPush } = await import('@libp2p/identify')
const { multiaddr } = await import('@multiformats/multiaddr')
const { MemoryDatastore } = await import('datastore-core')

const opts = { dial: [], providers: new Set(), expect: 0, nodes: 4, timeout: 300, stall: 30, routing: 20 }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
  const v = argv[++i]
  if (a === '--dial') opts.dial.push(v)
  else if (a === '--provider') opts.providers.add(v)
  else if (a === '--expect-keys') opts.expect = Number(v)
  else if (a === '--nodes') opts.nodes = Number(v)
  else if (a === '--timeout-seconds') opts.timeout = Number(v)
  else if (a === '--stall-seconds') opts.stall = Number(v)
  else if (a === '--routing-seconds') opts.routing = Number(v)
  else throw new Error(`unknown argument ${a}`)
}
if (opts.dial.length === 0 || opts.providers.size === 0 || !(opts.expect > 0)) {
  throw new Error('--dial, --provider and --expect-keys are required')
}

const PREFIX = '/dht/provider/'
const arrived = new Set()
const summary = { keys: 0, records: 0, first_ms: null, last_ms: null, done: false }
const { promise: complete, resolve: finish } = Promise.withResolvers()

/** The libp2p datastore of one node: counts the provider records of the watched peers as they are stored. */
class CountingDatastore extends MemoryDatastore {
  put (key, value, options) {
    const text = key.toString()
    if (text.startsWith(PREFIX)) {
      const [mh, peer] = text.slice(PREFIX.length).split('/')
      if (opts.providers.has(peer)) {
        const now = Date.now()
        summary.records++
        summary.first_ms ??= now
        if (!arrived.has(mh)) {
          arrived.add(mh)
          summary.keys = arrived.size
          summary.last_ms = now
          if (arrived.size >= opts.expect) finish()
        }
      }
    }
    return super.put(key, value, options)
  }
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function makeNode () {
  return createLibp2p({
    ...(await loopbackLibp2pOptions({
      // A peer whose Kademlia turns to server mode later (once an external address is confirmed) tells us by push.
      identifyPush: identifyPush(),
      dht: kadDHT({
        protocol: '/ipfs/kad/1.0.0',
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        maxInboundStreams: 256
      })
    })),
    datastore: new CountingDatastore()
  })
}

const nodes = []
let status = 0
try {
  for (let i = 0; i < opts.nodes; i++) nodes.push(await makeNode())
  const signal = () => AbortSignal.timeout(opts.routing * 1000)
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      await nodes[i].dial(nodes[j].getMultiaddrs()[0], { signal: signal() })
    }
  }
  const dialed = []
  for (const node of nodes) {
    for (const text of opts.dial) {
      const conn = await node.dial(multiaddr(text), { signal: signal() })
      dialed.push([node, conn.remotePeer])
    }
  }
  const deadline = Date.now() + opts.routing * 1000
  for (const [node, peer] of dialed) {
    while ((await node.services.dht.routingTable.find(peer)) == null) {
      if (Date.now() >= deadline) throw new Error(`${peer} not in a routing table after ${opts.routing}s`)
      await sleep(50)
    }
  }
  console.log(JSON.stringify({ ready: true, nodes: nodes.length, addrs: nodes.map(n => n.getMultiaddrs()[0].toString()) }))
  const endAt = Date.now() + opts.timeout * 1000
  const stalled = (async () => {
    while (Date.now() < endAt) {
      await sleep(250)
      if (summary.last_ms != null && Date.now() - summary.last_ms > opts.stall * 1000) break
    }
    return false
  })()
  summary.done = await Promise.race([complete.then(() => true), stalled])
  if (!summary.done) status = 1
  console.log(JSON.stringify(summary))
} catch (err) {
  console.error(`dht-sink: ${err?.stack ?? err}`)
  status = 2
} finally {
  await Promise.race([Promise.all(nodes.map(n => n.stop().catch(() => {}))), sleep(5000)])
}
process.exit(status)
