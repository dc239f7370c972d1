// A Helia node that serves one file over bitswap: the baseline of the serving row of `pkgseed bench` (issue 6).
//
//   node helia-serve.mjs --file <path> [--profile unixfs-v1-2025|unixfs-v0-2015]
//
// Imports the file into an in-memory blockstore with ipfs-unixfs-importer configured for the given pkgseed CID
// profile (the same settings as unixfs-cids.mjs, so the root CID equals pkgseed's), listens on 127.0.0.1 only and
// prints one JSON line: {"cid": root, "addr": "/ip4/127.0.0.1/tcp/<port>/p2p/<id>", "import_ms": n}.
// Then it serves until stdin closes or it gets SIGTERM/SIGINT. libp2p: TCP + noise + yamux + identify + ping; no
// bootstrap, no mDNS, no DHT, no HTTP gateways or delegated routing.

// First: the Node 20 polyfill Helia 7 needs, and the loopback Helia node shared by the tools.
import { createBitswapHelia } from './lib.mjs'

const { createReadStream } = await import('node:fs')
const { importer } = await import('ipfs-unixfs-importer')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced } = await import('ipfs-unixfs-importer/layout')

const PROFILES = {
  'unixfs-v1-2025': { cidVersion: 1, rawLeaves: true, chunkBytes: 1048576, maxLinks: 1024 },
  'unixfs-v0-2015': { cidVersion: 0, rawLeaves: false, chunkBytes: 262144, maxLinks: 174 }
}

const opts = { file: null, profile: 'unixfs-v1-2025' }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
  if (a === '--file') opts.file = argv[++i]
  else if (a === '--profile') opts.profile = argv[++i]
  else throw new Error(`unknown argument ${a}`)
}
if (opts.file == null) throw new Error('--file is required')
const profile = PROFILES[opts.profile]
if (profile == null) throw new Error(`unknown profile ${opts.profile}`)

const helia = await createBitswapHelia()
await helia.start()

const started = Date.now()
let root
const content = createReadStream(opts.file, { highWaterMark: 1024 * 1024 })
for await (const entry of importer([{ content }], helia.blockstore, {
  cidVersion: profile.cidVersion,
  rawLeaves: profile.rawLeaves,
  chunker: fixedSize({ chunkSize: profile.chunkBytes }),
  layout: balanced({ maxChildrenPerNode: profile.maxLinks }),
  reduceSingleLeafToSelf: true
})) {
  root = entry.cid
}
if (root == null) throw new Error(`the importer yielded nothing for ${opts.file}`)
const addr = helia.libp2p.getMultiaddrs().map(String).find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
if (addr == null) throw new Error('no /ip4/127.0.0.1/tcp/ listen address')
console.log(JSON.stringify({ cid: root.toString(), addr, import_ms: Date.now() - started }))

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await Promise.race([helia.stop().catch(() => {}), new Promise(resolve => setTimeout(resolve, 5000))])
  process.exit(0)
}
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
