// Helpers for the desktop tests: a temp HOME, a private D-Bus session per test, the app, the CLI, the tray menu
// over D-Bus (com.canonical.dbusmenu) and the engine's control socket.
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Builder, By, until, Capabilities } from 'selenium-webdriver';

const run = promisify(execFile);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
export const APP = process.env.PKGSEED_DESKTOP_BIN || path.join(TARGET, 'debug/pkgseed-desktop');
export const CLI = process.env.PKGSEED_BIN || path.join(TARGET, 'debug/pkgseed');
export const NO_SERVICES = path.join(ROOT, 'tests/desktop/session-no-services.conf');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A temp HOME with pkgseed's dirs and a loopback-only config (no public network in tests). */
export function makeHome(name) {
  const home = mkdtempSync(path.join(tmpdir(), `pkgseed-desktop-${name}-`));
  const configDir = path.join(home, '.config/pkgseed');
  mkdirSync(configDir, { recursive: true });
  // System-wide caches (apt's archives, the system gem dir) are off: a test must not seed the machine's own caches.
  writeFileSync(
    path.join(configDir, 'config.toml'),
    'network = "local"\n[ecosystems.apt]\nenabled = false\n[ecosystems.rubygems]\nenabled = false\n',
  );
  const env = {
    // A clean environment: no cache variables of the developer's (CARGO_HOME, npm_config_cache, …) leak in.
    PATH: process.env.PATH,
    HOME: home,
    DISPLAY: process.env.DISPLAY,
    LANG: 'C.UTF-8',
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local/share'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    PKGSEED_CONFIG_DIR: configDir,
    PKGSEED_DATA_DIR: path.join(home, '.local/share/pkgseed'),
    RUST_LOG: process.env.RUST_LOG || 'warn',
    NO_AT_BRIDGE: '1',
  };
  return { home, configDir, env };
}

/**
 * A private session bus (`dbus-run-session`) living until `close()`. With `keyring`, gnome-keyring's Secret Service
 * runs in it, unlocked (with a non-empty password: an empty one makes it prompt for a new login keyring, which
 * fails without a prompter); without, the bus has no service activation at all, so no keyring exists.
 */
export async function startSession(env, { keyring = false, services = false } = {}) {
  const script = keyring
    ? 'printf pkgseed-test | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 & '
      + 'sleep 1; echo "$DBUS_SESSION_BUS_ADDRESS"; exec sleep 3600'
    : 'echo "$DBUS_SESSION_BUS_ADDRESS"; exec sleep 3600';
  const args = services || keyring ? [] : [`--config-file=${NO_SERVICES}`];
  const proc = spawn('dbus-run-session', [...args, '--', 'sh', '-c', script], {
    env, stdio: ['ignore', 'pipe', 'inherit'], detached: true,
  });
  const address = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.trim());
    });
    proc.on('exit', (code) => reject(new Error(`dbus-run-session exited (${code})`)));
  });
  const sessionEnv = { ...env, DBUS_SESSION_BUS_ADDRESS: address };
  return {
    env: sessionEnv,
    close: () => { try { process.kill(-proc.pid, 'SIGTERM'); } catch { /* gone */ } },
  };
}

/** Starts the app; its stderr goes to the test's log. */
export function launchApp(env, args = [], bin = APP) {
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  proc.stop = async () => {
    if (proc.exitCode !== null) return;
    try { process.kill(-proc.pid, 'SIGTERM'); } catch { return; }
    for (let i = 0; i < 50 && proc.exitCode === null; i++) await sleep(100);
    if (proc.exitCode === null) try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  return proc;
}

/**
 * Starts the app (tray only, unless `args` say otherwise) in a new private session with `env`'s HOME, and waits for
 * its tray item on the bus and its engine on the control socket. The session and the app end with the test.
 */
export async function startAppInSession(t, env, { bin = APP, args = ['--minimized'] } = {}) {
  const session = await startSession(env);
  t.after(session.close);
  const app = launchApp(session.env, args, bin);
  t.after(app.stop);
  const tray = await waitFor('the tray item on the bus', () => findTrayItem(session.env), 60000);
  await waitFor('the engine', () => status(session.env), 60000);
  return { env: session.env, tray, app, session };
}

/** `pkgseed status --json` (or another CLI command) against the app's control socket. */
export async function cli(env, ...args) {
  const { stdout } = await run(CLI, args, { env, timeout: 20000 });
  return stdout;
}

export async function status(env) {
  return JSON.parse(await cli(env, 'status', '--json'));
}

/** A TCP port free on loopback right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * The app with its dashboard open, driven through tauri-driver + WebKitWebDriver (selenium), in a new private session
 * (no keyring) with `env`'s HOME; waits until the page shows its first status. Returns the session (its `env` has the
 * bus) and the selenium driver; the driver, the app and the session end with the test.
 */
export async function startDashboard(t, env) {
  const session = await startSession(env);
  t.after(session.close);
  const [port, nativePort] = [await freePort(), await freePort()];
  const driver = spawn('tauri-driver', ['--port', String(port), '--native-port', String(nativePort)], {
    env: session.env, stdio: ['ignore', 'inherit', 'inherit'], detached: true,
  });
  t.after(() => { try { process.kill(-driver.pid, 'SIGTERM'); } catch { /* gone */ } });
  await waitFor('tauri-driver', () => new Promise((resolve) => {
    const probe = net.createConnection(port, '127.0.0.1', () => { probe.end(); resolve(true); });
    probe.on('error', () => resolve(false));
  }), 30000);

  const caps = new Capabilities();
  caps.setBrowserName('wry');
  caps.set('tauri:options', { application: APP });
  const browser = await new Builder().withCapabilities(caps).usingServer(`http://127.0.0.1:${port}/`).build();
  t.after(() => browser.quit().catch(() => {}));
  await browser.wait(until.elementLocated(By.css('body[data-ready="true"]')), 60000);
  return { session, env: session.env, browser };
}

/**
 * Bitswap traffic with the app, from a Helia peer over loopback (`tests/js/helia-fetch.mjs`): asks the app's node for
 * a block it does not have (a CID of fresh random bytes), so the app receives a want list and answers it.
 */
export async function heliaAskMissing(env, seconds = 3) {
  const s = await status(env);
  const addr = s.listen_addrs.find((a) => a.startsWith('/ip4/127.0.0.1/tcp/'));
  if (!addr) throw new Error(`no loopback TCP address: ${s.listen_addrs}`);
  const file = path.join(env.HOME, 'not-seeded.bin');
  writeFileSync(file, randomBytes(4096));
  const cid = (await cli(env, 'cid', file)).trim().split(/\s+/)[0];
  const { stdout } = await run(process.execPath, [path.join(ROOT, 'tests/js/helia-fetch.mjs'), '--peer',
    `${addr}/p2p/${s.peer_id}`, '--expect-missing', cid, '--missing-seconds', String(seconds),
    '--out-dir', path.join(env.HOME, 'helia-out')], { cwd: path.join(ROOT, 'tests/js'), timeout: 120000 });
  return JSON.parse(stdout.trim().split('\n').pop());
}

/** Polls `fn` (every `intervalMs`) until it returns a truthy value, or fails with `what`. */
export async function waitFor(what, fn, timeoutMs = 60000, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) { last = err; }
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/**
 * One request to the engine's control socket (`{"cmd": ...}`, one JSON line each way), as the CLI sends it: its
 * `ok` value, or its `{code, message}` error thrown.
 */
export function control(env, request) {
  const socket = path.join(env.PKGSEED_DATA_DIR, 'control.sock');
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket, () => conn.write(`${JSON.stringify(request)}\n`));
    let data = '';
    conn.on('data', (d) => {
      data += d;
      if (data.includes('\n')) {
        conn.end();
        const reply = JSON.parse(data);
        if (reply.ok) resolve(reply.ok); else reject(new Error(JSON.stringify(reply.error)));
      }
    });
    conn.on('error', reject);
  });
}

/** The engine's settings in force, asked over its control socket (what the engine applied, not the file). */
export const engineConfig = (env) => control(env, { cmd: 'config' });

export async function gdbus(env, ...args) {
  const { stdout } = await run('gdbus', ['call', '--session', ...args], { env, timeout: 10000 });
  return stdout;
}

/** Finds the app's StatusNotifierItem (libayatana-appindicator) on the bus: [bus name, item path]. */
export async function findTrayItem(env) {
  const names = (await gdbus(env, '--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus',
    '--method', 'org.freedesktop.DBus.ListNames')).match(/':[0-9.]+'/g) || [];
  for (const quoted of names) {
    const name = quoted.slice(1, -1);
    try {
      const { stdout } = await run('gdbus', ['introspect', '--session', '--dest', name, '--object-path',
        '/org/ayatana/NotificationItem'], { env, timeout: 5000 });
      const node = /node (\S+) \{/.exec(stdout.replace(/^node \/org\/ayatana\/NotificationItem \{/m, ''));
      const child = /^\s+node (\S+) \{/m.exec(stdout);
      if (child || node) return [name, `/org/ayatana/NotificationItem/${(child || node)[1]}`];
    } catch { /* not this one */ }
  }
  return null;
}

/** The menu's items as {id, label, toggleState}, from com.canonical.dbusmenu GetLayout. */
export async function menuItems(env, [name, itemPath]) {
  const out = await gdbus(env, '--dest', name, '--object-path', `${itemPath}/Menu`,
    '--method', 'com.canonical.dbusmenu.GetLayout', '--', '0', '-1', '[]');
  const items = [];
  const re = /\((\d+), \{([^{}]*)\}/g;
  let m;
  while ((m = re.exec(out))) {
    const label = /'label': <'([^']*)'>/.exec(m[2]);
    const toggle = /'toggle-state': <(-?\d+)>/.exec(m[2]);
    if (label) items.push({ id: Number(m[1]), label: label[1].replace(/_/g, ''), toggleState: toggle ? Number(toggle[1]) : null });
  }
  return items;
}

/** The menu item labelled `label`, as {id, label, toggleState}. */
export async function menuItem(env, tray, label) {
  const item = (await menuItems(env, tray)).find((i) => i.label === label);
  if (!item) throw new Error(`no menu item ${label}`);
  return item;
}

/** Clicks a menu item (its label, or an item `menuItem` found), as a panel does. */
export async function clickMenuItem(env, tray, labelOrItem) {
  const item = typeof labelOrItem === 'string' ? await menuItem(env, tray, labelOrItem) : labelOrItem;
  await gdbus(env, '--dest', tray[0], '--object-path', `${tray[1]}/Menu`, '--method', 'com.canonical.dbusmenu.Event', '--',
    String(item.id), 'clicked', '<int32 0>', '0');
  return item;
}

export async function trayProperty(env, [name, itemPath], property) {
  const out = await gdbus(env, '--dest', name, '--object-path', itemPath, '--method',
    'org.freedesktop.DBus.Properties.Get', 'org.kde.StatusNotifierItem', property);
  const m = /<'([^']*)'>/.exec(out);
  return m ? m[1] : out.trim();
}

/**
 * The X window ids of the app's dashboard (a window of `pid` titled with the product name), '' when it has none.
 * Unmapped windows are found too: a hidden dashboard is not a closed one.
 */
export async function dashboardWindow(env, pid) {
  const found = await run('xdotool', ['search', '--all', '--pid', String(pid), '--name', '^pkgseed$'], { env })
    .catch(() => ({ stdout: '' })); // xdotool exits 1 when nothing matches
  return found.stdout.trim();
}

/**
 * Closes windows (ids as `dashboardWindow` lists them) as the user does from the title bar: the client message a
 * window manager sends, WM_DELETE_WINDOW (`wm-close.py`), which each window must list in its WM_PROTOCOLS (a window
 * manager kills the client of a window that does not).
 */
export async function closeWindowAsUser(env, windowIds) {
  const ids = windowIds.split(/\s+/).filter(Boolean);
  for (const id of ids) {
    const { stdout } = await run('xprop', ['-id', id, 'WM_PROTOCOLS'], { env, timeout: 10000 });
    if (!/\bWM_DELETE_WINDOW\b/.test(stdout)) throw new Error(`window ${id} does not take WM_DELETE_WINDOW: ${stdout}`);
  }
  await run('python3', [path.join(ROOT, 'tests/desktop/wm-close.py'), ...ids], { env, timeout: 10000 });
}

/** The pids of the running processes of `bin` whose HOME is `home`: this test's instances of the app. */
export function appPids(bin, home) {
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/exe`) !== path.resolve(bin)) continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`HOME=${home}`)) pids.push(Number(entry));
    } catch { /* gone (or a zombie), or not ours */ }
  }
  return pids;
}

/** The colour of a pixel of a PNG (ImageMagick), as "r,g,b". */
export async function pixel(file, x, y) {
  const { stdout } = await run('convert', [file, '-format', `%[fx:round(255*p{${x},${y}}.r)],%[fx:round(255*p{${x},${y}}.g)],%[fx:round(255*p{${x},${y}}.b)]`, 'info:']);
  return stdout.trim();
}

export const readText = (file) => readFileSync(file, 'utf8');

/**
 * The program and arguments of a Desktop Entry's `Exec=` line (as a session manager runs a login item): quoted
 * arguments keep their spaces and lose their backslash escapes (Desktop Entry spec, "The Exec key").
 */
export function execLine(desktopEntryText) {
  const line = /^Exec=(.*)$/m.exec(desktopEntryText);
  if (!line) throw new Error('no Exec= line');
  const args = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m;
  while ((m = re.exec(line[1]))) args.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  return { exec: line[1], program: args[0], args: args.slice(1) };
}
