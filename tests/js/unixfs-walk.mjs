// Shared by the Helia tools: the Node 20 shim Helia 7 needs, and a depth-first walk that reassembles a UnixFS file.
//
// Importing this module installs a `Promise.withResolvers` polyfill (Helia 7 / libp2p 3 use it; it exists from
// Node 22). Import it statically, before the dynamic imports of Helia, so the polyfill is in place first.

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const dagPb = await import('@ipld/dag-pb')
const { UnixFS } = await import('ipfs-unixfs')

export const RAW = 0x55
export const DAG_PB = 0x70

// Depth-first walk of a UnixFS file: raw leaves, dag-pb nodes with inline data and/or links. `getBlock(cid)`
// returns the block's bytes (verified by whoever fetched it); `sink(bytes)` receives the file's bytes in order.
export async function readUnixfsFile (getBlock, cid, sink) {
  const block = await getBlock(cid)
  if (cid.code === RAW) {
    sink(block)
    return
  }
  if (cid.code !== DAG_PB) throw new Error(`unsupported codec 0x${cid.code.toString(16)} for ${cid}`)
  const node = dagPb.decode(block)
  if (node.Data != null) {
    const fsNode = UnixFS.unmarshal(node.Data)
    if (fsNode.type !== 'file' && fsNode.type !== 'raw') throw new Error(`${cid} is a UnixFS ${fsNode.type}, not a file`)
    if (fsNode.data != null && fsNode.data.length > 0) sink(fsNode.data)
  }
  for (const link of node.Links) await readUnixfsFile(getBlock, link.Hash, sink)
}
