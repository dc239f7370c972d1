// Fetches files from one pkgseed node with Helia (bitswap only), the way an unrelated IPFS peer would.
//
//   node helia-fetch.mjs --peer <multiaddr/p2p/id> --cid <cid> [--cid <cid> ...] [--out-dir <dir>]
//                        [--expect-missing <cid> ...] [--missing-seconds 5] [--idle-seconds N] [--timeout-seconds 60]
//                        [--parallel] [--allow-failures]
//
// For each --cid the whole file is reassembled by walking the DAG (raw leaves, or dag-pb/UnixFS nodes); Helia
// verifies every block's hash before handing it over. Prints one JSON line per CID:
//   {"cid": ..., "bytes": n, "sha256": hex, "ok": true, "ms": n}   (ms: the fetch of this CID alone, after the dial)
// --expect-missing asserts the block is NOT obtainable within --missing-seconds (prints {"cid", "missing": true, "ok"}).
// --idle-seconds keeps the connection open and idle that long before fetching.
// --parallel fetches every --cid at once (default: one after another). --allow-failures exits 0 even when a --cid
// could not be fetched (the fault-injection tests expect some fetches to fail and judge each line themselves).
// libp2p: TCP + noise + yamux + identify + ping, listening on 127.0.0.1 only; no bootstrap, no mDNS, no DHT, no HTTP
// gateways or delegated routing. Exit status 0 only if every assertion held.

// First: the Node 20 polyfill Helia 7 needs, the loopback Helia node and the UnixFS walk shared by the tools.
import { createBitswapHelia, getHeliaBlock, readHeliaFile } from './lib.mjs'

const { createHash } = await import('node:crypto')
const fs = await import('node:fs/promises')
const path = await import('node:path')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
// sha2-512 checksum CIDs (NuGet/npm integrity) need a hasher the light Helia does not configure by default.
const { sha512 } = await import('multiformats/hashes/sha2')

function parseArgs (argv) {
  const opts = { cids: [], missing: [], outDir: null, peer: null, idle: 0, timeout: 60, missingSeconds: 5, parallel: false, allowFailures: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    switch (a) {
      case '--peer': opts.peer = next(); break
      case '--cid': opts.cids.push(next()); break
      case '--expect-missing': opts.missing.push(next()); break
      case '--out-dir': opts.outDir = next(); break
      case '--idle-seconds': opts.idle = Number(next()); break
      case '--timeout-seconds': opts.timeout = Number(next()); break
      case '--missing-seconds': opts.missingSeconds = Number(next()); break
      case '--parallel': opts.parallel = true; break
      case '--allow-failures': opts.allowFailures = true; break
      default: throw new Error(`unknown argument ${a}`)
    }
  }
  if (opts.peer == null) throw new Error('--peer is required')
  if (opts.cids.length === 0 && opts.missing.length === 0) throw new Error('nothing to do: give --cid or --expect-missing')
  return opts
}

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const peerAddr = multiaddr(opts.peer)

  const helia = await createBitswapHelia({ hashers: [sha512] })
  await helia.start()

  let failed = false
  try {
    const conn = await helia.libp2p.dial(peerAddr, { signal: AbortSignal.timeout(opts.timeout * 1000) })
    const remote = conn.remotePeer
    if (opts.idle > 0) {
      await sleep(opts.idle * 1000)
      const open = helia.libp2p.getConnections(remote).filter(c => c.status === 'open')
      if (open.length === 0) {
        console.error(`connection to ${remote} closed during ${opts.idle}s idle`)
        failed = true
      }
    }

    const fetchOne = async (text) => {
      const cid = CID.parse(text)
      const hash = createHash('sha256')
      const parts = []
      let bytes = 0
      const started = Date.now()
      try {
        const signal = AbortSignal.timeout(opts.timeout * 1000)
        await readHeliaFile(helia, cid, signal, (data) => {
          hash.update(data)
          bytes += data.length
          if (opts.outDir != null) parts.push(Buffer.from(data))
        })
        const ms = Date.now() - started
        if (opts.outDir != null) {
          await fs.mkdir(opts.outDir, { recursive: true })
          await fs.writeFile(path.join(opts.outDir, text), Buffer.concat(parts))
        }
        console.log(JSON.stringify({ cid: text, bytes, sha256: hash.digest('hex'), ok: true, ms }))
      } catch (err) {
        if (!opts.allowFailures) failed = true
        console.log(JSON.stringify({ cid: text, ok: false, error: String(err?.message ?? err) }))
      }
    }
    if (opts.parallel) {
      await Promise.all(opts.cids.map(fetchOne))
    } else {
      for (const text of opts.cids) await fetchOne(text)
    }

    for (const text of opts.missing) {
      const cid = CID.parse(text)
      let got = false
      try {
        await getHeliaBlock(helia, cid, AbortSignal.timeout(opts.missingSeconds * 1000))
        got = true
      } catch {
        got = false
      }
      if (got) failed = true
      console.log(JSON.stringify({ cid: text, missing: !got, ok: !got }))
    }
  } catch (err) {
    failed = true
    console.error(`helia-fetch: ${err?.stack ?? err}`)
  } finally {
    await Promise.race([helia.stop().catch(() => {}), sleep(5000)])
  }
  process.exit(failed ? 1 : 0)
}

main().catch(err => {
  console.error(`helia-fetch: ${err?.stack ?? err}`)
  process.exit(2)
})
