// Shared by the Helia and libp2p tools: the Node 20 shim Helia 7 and libp2p 3 need, the loopback-only libp2p set-up
// every tool uses, a bitswap-only Helia node, and a depth-first walk that reassembles a UnixFS file.
//
// Importing this module installs a `Promise.withResolvers` polyfill (Helia 7 / libp2p 3 use it; it exists from
// Node 22). Import it statically, before any import of Helia or libp2p, so the polyfill is in place first; for the
// same reason this module imports those packages only inside its functions.

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

export const RAW = 0x55
export const DAG_PB = 0x70

// libp2p options for a node that listens on 127.0.0.1 only and dials loopback: TCP + noise + yamux + identify +
// ping, plus `services`; no bootstrap, no mDNS, no DHT unless given, no HTTP gateways or delegated routing. The
// connection gater lets it dial 127.0.0.1 (the default one refuses private addresses).
export async function loopbackLibp2pOptions (services = {}) {
  const { tcp } = await import('@libp2p/tcp')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { identify } = await import('@libp2p/identify')
  const { ping } = await import('@libp2p/ping')
  return {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify(), ping: ping(), ...services }
  }
}

// A light Helia node whose only block source is bitswap over a loopback libp2p node (not started). `hashers`: extra
// multiformats hashers (e.g. sha2-512 for checksum CIDs).
export async function createBitswapHelia ({ hashers = [] } = {}) {
  const { createHeliaLight } = await import('helia')
  const { withLibp2pLight } = await import('@helia/libp2p')
  const { withBitswap } = await import('@helia/bitswap')
  return withBitswap(withLibp2pLight(createHeliaLight({ hashers }), await loopbackLibp2pOptions()))
}

// One block's bytes from a Helia blockstore (which verifies them against the CID when it fetches them).
export async function getHeliaBlock (helia, cid, signal) {
  const chunks = []
  for await (const chunk of helia.blockstore.get(cid, { signal })) chunks.push(chunk)
  return Buffer.concat(chunks.map(c => (c instanceof Uint8Array ? c : c.subarray())))
}

let unixfsCodecs = null

// Depth-first walk of a UnixFS file: raw leaves, dag-pb nodes with inline data and/or links. `getBlock(cid)`
// returns the block's bytes (verified by whoever fetched it); `sink(bytes)` receives the file's bytes in order.
export async function readUnixfsFile (getBlock, cid, sink) {
  const block = await getBlock(cid)
  if (cid.code === RAW) {
    sink(block)
    return
  }
  if (cid.code !== DAG_PB) throw new Error(`unsupported codec 0x${cid.code.toString(16)} for ${cid}`)
  unixfsCodecs ??= { dagPb: await import('@ipld/dag-pb'), UnixFS: (await import('ipfs-unixfs')).UnixFS }
  const node = unixfsCodecs.dagPb.decode(block)
  if (node.Data != null) {
    const fsNode = unixfsCodecs.UnixFS.unmarshal(node.Data)
    if (fsNode.type !== 'file' && fsNode.type !== 'raw') throw new Error(`${cid} is a UnixFS ${fsNode.type}, not a file`)
    if (fsNode.data != null && fsNode.data.length > 0) sink(fsNode.data)
  }
  for (const link of node.Links) await readUnixfsFile(getBlock, link.Hash, sink)
}

// Reassembles a UnixFS file from a Helia node, every block fetched (and verified) by Helia.
export async function readHeliaFile (helia, cid, signal, sink) {
  await readUnixfsFile((c) => getHeliaBlock(helia, c, signal), cid, sink)
}
