// Many Helia peers in one Node process fetch from one pkgseed node at once (the load test of issue 7).
//
//   node helia-load.mjs --peer <multiaddr/p2p/id> --peers 50 --cid <cid> [--cid <cid> ...] [--timeout-seconds 120]
//
// Peer i fetches the CIDs i, i+peers, i+2·peers, … of the list (different artifacts) and the first CID (the same
// artifact for everyone), all peers at the same time, each over its own libp2p node and connection. Helia verifies
// every block. Prints one JSON line per (peer, cid): {"peer": i, "cid", "bytes", "sha256", "ok", "ms"} and a summary
// line {"summary": true, ...}. Exit status 0 only if every fetch succeeded. Loopback only; no bootstrap, no DHT.

// First: the Node 20 polyfill Helia 7 needs, and the loopback Helia node shared by the tools.
import { createBitswapHelia, readHeliaFile } from './lib.mjs'

const { createHash } = await import('node:crypto')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')

const opts = { peer: null, peers: 50, cids: [], timeout: 120 }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  const next = () => argv[++i]
  if (a === '--peer') opts.peer = next()
  else if (a === '--peers') opts.peers = Number(next())
  else if (a === '--cid') opts.cids.push(next())
  else if (a === '--timeout-seconds') opts.timeout = Number(next())
  else throw new Error(`unknown argument ${a}`)
}
if (opts.peer == null || opts.cids.length === 0) throw new Error('--peer and --cid are required')

async function onePeer (i) {
  const helia = await createBitswapHelia()
  await helia.start()
  let failures = 0
  try {
    const signal = AbortSignal.timeout(opts.timeout * 1000)
    await helia.libp2p.dial(multiaddr(opts.peer), { signal })
    const mine = [opts.cids[0]]
    for (let k = i; k < opts.cids.length; k += opts.peers) if (k !== 0) mine.push(opts.cids[k])
    for (const text of mine) {
      const started = Date.now()
      const hash = createHash('sha256')
      let bytes = 0
      try {
        await readHeliaFile(helia, CID.parse(text), signal, (d) => { hash.update(d); bytes += d.length })
        console.log(JSON.stringify({ peer: i, cid: text, bytes, sha256: hash.digest('hex'), ok: true, ms: Date.now() - started }))
      } catch (err) {
        failures++
        console.log(JSON.stringify({ peer: i, cid: text, ok: false, error: String(err?.message ?? err), ms: Date.now() - started }))
      }
    }
  } catch (err) {
    failures++
    console.log(JSON.stringify({ peer: i, ok: false, error: `dial: ${err?.message ?? err}` }))
  } finally {
    await Promise.race([helia.stop().catch(() => {}), new Promise(resolve => setTimeout(resolve, 5000))])
  }
  return failures
}

const started = Date.now()
const results = await Promise.all(Array.from({ length: opts.peers }, (_, i) => onePeer(i)))
const failures = results.reduce((a, b) => a + b, 0)
console.log(JSON.stringify({ summary: true, peers: opts.peers, failures, ms: Date.now() - started }))
process.exit(failures === 0 ? 0 : 1)
