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
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
# tests/gradle.rs: Debian's Gradle 4.4.1 (runs on the JDK 17 that maven pulls in).
command -v gradle >/dev/null 2>&1 || need_apt+=(gradle)
# tests/maven.rs: the real install:install-file (Debian's plugin, read from /usr/share/maven-repo); tests/go.rs: git.
[ -d /usr/share/maven-repo/org/apache/maven/plugins/maven-install-plugin ] || need_apt+=(libmaven-install-plugin-java)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# tests/apt.rs: a local repository signed with test keys, served to the real apt-get.
command -v gpg >/dev/null 2>&1 || need_apt+=(gnupg)
command -v gpgv >/dev/null 2>&1 || need_apt+=(gpgv)
command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg)
# tests/pip.rs: venvs with a newer and an older pip (below).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v ruby >/dev/null 2>&1 || need_apt+=(ruby)
command -v php >/dev/null 2>&1 || need_apt+=(php-cli)
command -v composer >/dev/null 2>&1 || need_apt+=(composer)
# yarn v1 for tests/yarn.rs (Debian's package; the test runs it with NODE_PATH=/usr/share/nodejs).
command -v yarnpkg >/dev/null 2>&1 || command -v yarn >/dev/null 2>&1 || need_apt+=(yarnpkg)
# The desktop app (src-tauri): its build libraries, and what its tests in real windows run (Xvfb, WebKitWebDriver,
# a private D-Bus, gnome-keyring, xfce4-panel as the tray host, ImageMagick and xdotool for screenshots, gdbus).
# `dbus` also gives dbus-daemon to crates/engine's power test (fake UPower / NetworkManager on a private bus).
for pkg in libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libssl-dev xvfb \
    webkit2gtk-driver dbus dbus-x11 libglib2.0-bin gnome-keyring xfce4-panel imagemagick x11-apps xdotool \
    x11-utils file; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: a Rust toolchain (cargo) is required: see rustup" >&2; exit 1; }

# The interop tools' npm modules, exactly as locked.
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

# tests/pip.rs needs pip >= 23.3 (its http-v2 cache keeps response bodies as files): a venv under target/ so the
# machine's own pip is left as it is.
if [ ! -x target/e2e-pip/bin/python3 ]; then
    python3 -m venv target/e2e-pip
    target/e2e-pip/bin/python3 -m pip install -q --disable-pip-version-check 'pip>=24.2'
fi
# ... and pip 23.2.1, the last pip whose HTTP cache keeps each body inline (http/), for the old-layout test (the test
# makes the same venv on first use when this did not run).
if [ "$(target/e2e-pip-23.2/bin/python3 -c 'import pip; print(pip.__version__)' 2>/dev/null)" != 23.2.1 ]; then
    [ -x target/e2e-pip-23.2/bin/python3 ] || python3 -m venv target/e2e-pip-23.2
    target/e2e-pip-23.2/bin/python3 -m pip install -q --disable-pip-version-check 'pip==23.2.1'
fi

# The desktop tests' tools: tauri-driver (WebDriver for the app) from the Rust package registry, and the Tauri CLI + selenium
# from the lockfile in tests/desktop.
command -v tauri-driver >/dev/null 2>&1 || cargo install tauri-driver --locked
npm ci --prefix tests/desktop --no-audit --no-fund --loglevel=error
