// Reference UnixFS CIDs: imports files with ipfs-unixfs-importer configured for a pkgseed CID profile.
//
// usage: node unixfs-cids.mjs [--blocks] [--chunk-bytes N] [--max-links N] PROFILE PATH...
//   PROFILE        unixfs-v1-2025 | unixfs-v0-2015
//   --blocks       after each file's line, print "block CID" for every distinct block the importer stored for it
//   --chunk-bytes  override the profile's chunk size (test layouts only; not a CID profile)
//   --max-links    override the profile's links per node (test layouts only; not a CID profile)
//
// Prints one line per file: "CID  PATH" (two spaces). Files are imported one at a time, streamed from disk with
// 1 MiB reads; block bytes are not kept, only their CIDs, so large files stay cheap.

import { createReadStream } from 'node:fs'
import { BaseBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const PROFILES = {
  'unixfs-v1-2025': { cidVersion: 1, rawLeaves: true, chunkBytes: 1048576, maxLinks: 1024 },
  'unixfs-v0-2015': { cidVersion: 0, rawLeaves: false, chunkBytes: 262144, maxLinks: 174 }
}

/** Remembers the CID of every block put, in first-put order, without keeping the bytes. */
class CidRecordingBlockstore extends BaseBlockstore {
  constructor () {
    super()
    this.cids = new Set()
  }

  async put (cid) {
    this.cids.add(cid.toString())
    return cid
  }

  async has (cid) {
    return this.cids.has(cid.toString())
  }
}

function fail (message) {
  process.stderr.write(`unixfs-cids: ${message}\n`)
  process.exit(2)
}

function parsePositiveInteger (flag, text) {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) {
    fail(`${flag} needs a positive integer, got ${text}`)
  }
  return value
}

const args = process.argv.slice(2)
let printBlocks = false
let chunkBytesOverride
let maxLinksOverride
while (args.length > 0 && args[0].startsWith('--')) {
  const flag = args.shift()
  if (flag === '--blocks') {
    printBlocks = true
  } else if (flag === '--chunk-bytes') {
    chunkBytesOverride = parsePositiveInteger(flag, args.shift())
  } else if (flag === '--max-links') {
    maxLinksOverride = parsePositiveInteger(flag, args.shift())
  } else {
    fail(`unknown flag ${flag}`)
  }
}
const profileName = args.shift()
const profile = PROFILES[profileName]
if (profile === undefined) {
  fail(`unknown profile ${profileName}; expected one of ${Object.keys(PROFILES).join(', ')}`)
}

const importerOptions = {
  cidVersion: profile.cidVersion,
  rawLeaves: profile.rawLeaves,
  chunker: fixedSize({ chunkSize: chunkBytesOverride ?? profile.chunkBytes }),
  layout: balanced({ maxChildrenPerNode: maxLinksOverride ?? profile.maxLinks }),
  reduceSingleLeafToSelf: true
}

const output = []
for (const path of args) {
  const blockstore = new CidRecordingBlockstore()
  const content = createReadStream(path, { highWaterMark: 1024 * 1024 })
  let root
  for await (const entry of importer([{ content }], blockstore, importerOptions)) {
    root = entry.cid
  }
  if (root === undefined) {
    fail(`the importer yielded nothing for ${path}`)
  }
  output.push(`${root.toString()}  ${path}`)
  if (printBlocks) {
    for (const cid of blockstore.cids) {
      output.push(`block ${cid}`)
    }
  }
  if (output.length > 10000) {
    process.stdout.write(output.join('\n') + '\n')
    output.length = 0
  }
}
if (output.length > 0) {
  process.stdout.write(output.join('\n') + '\n')
}
