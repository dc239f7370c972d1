#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: unit tests, the reference-importer interop tests and the
# end-to-end tests (real cargo against local registries, the real daemon, a Helia peer over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One debug build of the whole workspace; the e2e tests run the binary it produces.
cargo build --workspace --all-targets
export PKGSEED_BIN="$PWD/target/debug/pkgseed"
cargo test --workspace --no-fail-fast -- --test-threads=2
# The desktop app in real windows (Xvfb, tauri-driver, the tray over D-Bus, keyring, screenshots), reusing the build above.
PKGSEED_DESKTOP_BIN="$PWD/target/debug/pkgseed-desktop" tests/desktop/run.sh
