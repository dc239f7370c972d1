#!/usr/bin/env bash
# Installs what building and testing pkgseed needs on a fresh Debian machine: system packages (when missing) and
# the npm modules of the interop tools (the reference UnixFS importer and a Helia peer), from the lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: a Rust toolchain (cargo) is required: see rustup" >&2; exit 1; }

# The interop tools' npm modules, exactly as locked.
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
