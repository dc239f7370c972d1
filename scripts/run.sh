#!/usr/bin/env bash
# Sets up a fresh machine, builds pkgseed (release) and runs the daemon in the foreground with the given flags,
# e.g. `scripts/run.sh --network local`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || { echo "run: a Rust toolchain (cargo) is required: see rustup" >&2; exit 1; }
cargo build --release -p pkgseed
exec target/release/pkgseed daemon "$@"
