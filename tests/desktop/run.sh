#!/usr/bin/env bash
# The desktop app's tests in real windows: builds the app and the CLI (debug, the shared target dir), starts Xvfb,
# and runs the node tests (each in its own D-Bus session with its own temp HOME), the installer's last. Screenshots go
# to docs/screenshots. With arguments, runs just those test files.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
# scripts/test.sh passes the binaries of its workspace build; run alone, this builds just the two it needs.
if [ -z "${PKGSEED_DESKTOP_BIN:-}" ]; then
    cargo build -p pkgseed-desktop -p pkgseed
    export PKGSEED_DESKTOP_BIN="$TARGET/debug/pkgseed-desktop" PKGSEED_BIN="$TARGET/debug/pkgseed"
fi
export PKGSEED_BIN="${PKGSEED_BIN:-$TARGET/debug/pkgseed}"
[ -d tests/desktop/node_modules ] || npm ci --prefix tests/desktop --no-audit --no-fund --loglevel=error

display=99
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do display=$((display + 1)); done
Xvfb ":$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$xvfb" 2>/dev/null || true' EXIT
export DISPLAY=":$display"
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$display" ] && break; sleep 0.1; done

if [ "$#" -gt 0 ]; then
    node --test --test-concurrency=1 --test-reporter=spec "$@"
    exit 0
fi
# The tests of the app as built, then the installer's (it builds the .deb, installs it with apt, runs the installed
# app and removes it; it needs root or `sudo -n`). PKGSEED_INSTALLER_TEST=0 leaves the installer out.
status=0
node --test --test-concurrency=1 --test-reporter=spec $(ls tests/desktop/*.test.mjs | grep -v /installer.test.mjs) \
    || status=$?
if [ "${PKGSEED_INSTALLER_TEST:-1}" != 0 ]; then
    node --test --test-concurrency=1 --test-reporter=spec tests/desktop/installer.test.mjs || status=$?
fi
exit "$status"
