// Fetches from pkgseed's local trustless gateway the way an unrelated HTTP client would, verifying everything.
//
//   node gateway-fetch.mjs --gateway http://127.0.0.1:PORT [--cid CID ...] [--raw CID ...] [--car CID ...]
//                          [--expect-missing CID ...] [--timeout-seconds 60]
//
// --cid: Helia with only the trustless-gateway block broker (no libp2p, no bitswap; the gateway is its one
//        provider) reassembles the whole UnixFS file; Helia verifies every block against its CID.
//        Prints {"cid", "bytes", "sha256", "ok": true}.
// --raw: GET /ipfs/CID?format=raw; the body must hash to the CID's multihash. Prints {"raw", "bytes", "ok"}.
// --car: GET /ipfs/CID?format=car; the CAR is parsed here (dag-cbor header, varint sections), every block checked
//        against its CID, the header's root must be CID, the blocks must be exactly the DAG's (no strays, no
//        duplicates with dups=n, depth-first order) and the file is reassembled from them.
//        Prints {"car", "blocks", "cids", "bytes", "sha256", "content_type", "ok"}.
// --expect-missing: Helia must NOT obtain the block. Prints {"cid", "missing": true, "ok"}.
// Exit status 0 only if every check held.

// First: the Node 20 polyfill Helia 7 needs, and the UnixFS walk shared by the tools.
import { readHeliaFile, readUnixfsFile } from './lib.mjs'

const { createHash } = await import('node:crypto')
const { createHeliaLight } = await import('helia')
const { withHTTP } = await import('@helia/http')
const { CID } = await import('multiformats/cid')
const { sha256, sha512 } = await import('multiformats/hashes/sha2')
const dagCbor = await import('@ipld/dag-cbor')

function parseArgs (argv) {
  const opts = { gateway: null, cids: [], raw: [], car: [], missing: [], timeout: 60 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    switch (a) {
      case '--gateway': opts.gateway = next(); break
      case '--cid': opts.cids.push(next()); break
      case '--raw': opts.raw.push(next()); break
      case '--car': opts.car.push(next()); break
      case '--expect-missing': opts.missing.push(next()); break
      case '--timeout-seconds': opts.timeout = Number(next()); break
      default: throw new Error(`unknown argument ${a}`)
    }
  }
  if (opts.gateway == null) throw new Error('--gateway is required')
  return opts
}

async function hashMatches (cid, bytes) {
  const hasher = { [sha256.code]: sha256, [sha512.code]: sha512 }[cid.multihash.code]
  if (hasher == null) throw new Error(`${cid}: unsupported hash 0x${cid.multihash.code.toString(16)}`)
  const digest = await hasher.digest(bytes)
  return Buffer.from(digest.bytes).equals(Buffer.from(cid.multihash.bytes))
}

function readVarint (bytes, offset) {
  let value = 0
  let shift = 0
  for (let i = offset; i < bytes.length && i < offset + 9; i++) {
    value += (bytes[i] & 0x7f) * 2 ** shift
    shift += 7
    if ((bytes[i] & 0x80) === 0) return [value, i + 1]
  }
  throw new Error('bad varint in CAR')
}

async function checkCar (base, text, timeout) {
  const cid = CID.parse(text)
  const res = await fetch(`${base}/ipfs/${text}?format=car`, { signal: AbortSignal.timeout(timeout * 1000) })
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`)
  const contentType = res.headers.get('content-type')
  if (!/^application\/vnd\.ipld\.car;\s*version=1;\s*order=dfs;\s*dups=n$/.test(contentType)) {
    throw new Error(`unexpected Content-Type ${contentType}`)
  }
  const car = new Uint8Array(await res.arrayBuffer())
  const [headerLen, afterLen] = readVarint(car, 0)
  const header = dagCbor.decode(car.subarray(afterLen, afterLen + headerLen))
  if (header.version !== 1) throw new Error(`CAR version ${header.version}`)
  if (header.roots.length !== 1 || !header.roots[0].equals(cid)) throw new Error(`CAR roots ${header.roots}`)
  const blocks = new Map()
  const order = []
  let offset = afterLen + headerLen
  while (offset < car.length) {
    const [len, start] = readVarint(car, offset)
    const section = car.subarray(start, start + len)
    if (section.length !== len) throw new Error('truncated CAR section')
    const [blockCid, data] = CID.decodeFirst(section)
    if (!(await hashMatches(blockCid, data))) throw new Error(`block ${blockCid} does not match its CID`)
    if (blocks.has(blockCid.toString())) throw new Error(`duplicate block ${blockCid} with dups=n`)
    blocks.set(blockCid.toString(), data)
    order.push(blockCid.toString())
    offset = start + len
  }
  // Depth-first order, and every block reachable from the root.
  const walked = []
  const hash = createHash('sha256')
  let bytes = 0
  await readUnixfsFile(async (c) => {
    const data = blocks.get(c.toString())
    if (data == null) throw new Error(`the CAR lacks block ${c}`)
    if (!walked.includes(c.toString())) walked.push(c.toString())
    return data
  }, cid, (data) => { hash.update(data); bytes += data.length })
  if (JSON.stringify(walked) !== JSON.stringify(order)) throw new Error(`blocks not in depth-first order: ${order} vs ${walked}`)
  return { car: text, blocks: order.length, cids: order, bytes, sha256: hash.digest('hex'), content_type: contentType, ok: true }
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const base = opts.gateway.replace(/\/$/, '')
  let failed = false
  const report = async (what, f) => {
    try {
      console.log(JSON.stringify(await f()))
    } catch (err) {
      failed = true
      console.log(JSON.stringify({ ...what, ok: false, error: String(err?.message ?? err) }))
    }
  }

  for (const text of opts.raw) {
    await report({ raw: text }, async () => {
      const res = await fetch(`${base}/ipfs/${text}?format=raw`, { signal: AbortSignal.timeout(opts.timeout * 1000) })
      if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`)
      const body = new Uint8Array(await res.arrayBuffer())
      if (!(await hashMatches(CID.parse(text), body))) throw new Error('the body does not hash to the CID')
      return { raw: text, bytes: body.length, content_type: res.headers.get('content-type'), ok: true }
    })
  }
  for (const text of opts.car) await report({ car: text }, () => checkCar(base, text, opts.timeout))

  if (opts.cids.length > 0 || opts.missing.length > 0) {
    // No libp2p and no delegated routing: the gateway under test is the only provider Helia knows.
    const helia = withHTTP(createHeliaLight({ hashers: [sha512] }), {
      delegatedRouters: [],
      recursiveGateways: [base],
      allowInsecure: true,
      allowLocal: true
    })
    // Helia 7.1.15 waits forever when no router but the fallback one is configured (its provider search over zero
    // routers never finishes); a router that finds nothing lets it go on to the fallback, i.e. the gateway.
    helia.addRouter({ name: 'no-other-providers', async * findProviders () {} })
    await helia.start()
    try {
      for (const text of opts.cids) {
        await report({ cid: text }, async () => {
          const hash = createHash('sha256')
          let bytes = 0
          const signal = AbortSignal.timeout(opts.timeout * 1000)
          await readHeliaFile(helia, CID.parse(text), signal, (data) => { hash.update(data); bytes += data.length })
          return { cid: text, bytes, sha256: hash.digest('hex'), ok: true }
        })
      }
      for (const text of opts.missing) {
        let got = false
        try {
          await getter(AbortSignal.timeout(10_000))(CID.parse(text))
          got = true
        } catch {}
        if (got) failed = true
        console.log(JSON.stringify({ cid: text, missing: !got, ok: !got }))
      }
    } finally {
      await helia.stop().catch(() => {})
    }
  }
  process.exit(failed ? 1 : 0)
}

main().catch(err => {
  console.error(`gateway-fetch: ${err?.stack ?? err}`)
  process.exit(2)
})
