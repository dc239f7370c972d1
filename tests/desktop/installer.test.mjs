// The Linux installer, as a user gets it: builds the .deb (the debug build, `tauri build --debug --bundles deb`, or
// $PKGSEED_DEB), checks its control fields and contents, installs it with apt, runs the installed
// /usr/bin/pkgseed-desktop in a private session under Xvfb (engine over the control socket, tray item on the bus,
// dashboard window, pause and resume from the menu, single instance, start on login, quit), "logs in again" by
// running the login item's Exec line in a new session (tray only; Open dashboard opens it), and removes the package.
// Needs root (or sudo -n): tests/desktop/run.sh runs it last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT, TARGET, makeHome, startAppInSession, status, waitFor, sleep, menuItems, clickMenuItem, gdbus,
  execLine, dashboardWindow } from './lib.mjs';

const run = promisify(execFile);
const CONF = JSON.parse(readFileSync(path.join(ROOT, 'src-tauri/tauri.conf.json'), 'utf8'));
const PACKAGE = CONF.productName;
const INSTALLED = `/usr/bin/${CONF.mainBinaryName}`;
const DESKTOP_ENTRY = `/usr/share/applications/${CONF.productName}.desktop`;
// The libraries the app links (WebKitGTK, GTK) and loads at run time for the tray (libayatana-appindicator).
const REQUIRED_DEPENDS = ['libwebkit2gtk-4.1-0', 'libgtk-3-0', 'libayatana-appindicator3-1'];
const PNG_MAGIC = '89504e470d0a1a0a';

/** Runs a command as root: directly in CI (root), else through `sudo -n` (never prompts). */
function asRoot(cmd, args, options = {}) {
  const [bin, argv] = process.getuid() === 0 ? [cmd, args] : ['sudo', ['-n', cmd, ...args]];
  return run(bin, argv, { timeout: 600000, maxBuffer: 16 << 20, ...options,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

async function installedVersion() {
  try {
    const { stdout } = await run('dpkg-query', ['-W', '-f=${Status}|${Version}', PACKAGE]);
    const [state, version] = stdout.split('|');
    return state.endsWith(' installed') ? version : null;
  } catch { return null; }
}

/** The .deb: $PKGSEED_DEB, or built now from the debug profile (only tauri and the app are rebuilt, with
 *  tauri's custom-protocol feature; every other crate comes from the workspace's debug build). */
async function theDeb() {
  if (process.env.PKGSEED_DEB) return path.resolve(process.env.PKGSEED_DEB);
  const { stdout: arch } = await run('dpkg', ['--print-architecture']);
  const deb = path.join(TARGET, 'debug/bundle/deb', `${PACKAGE}_${CONF.version}_${arch.trim()}.deb`);
  rmSync(deb, { force: true });
  const started = Date.now();
  const build = spawn(path.join(ROOT, 'tests/desktop/node_modules/.bin/tauri'), ['build', '--debug', '--bundles', 'deb'],
    { cwd: path.join(ROOT, 'src-tauri'), stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise((resolve) => build.on('exit', resolve));
  assert.equal(code, 0, 'tauri build --debug --bundles deb');
  console.log(`# built ${path.basename(deb)} in ${Math.round((Date.now() - started) / 1000)} s`);
  return deb;
}

let deb;
test('the .deb is built', { timeout: 45 * 60000 }, async () => {
  deb = await theDeb();
  assert.ok(existsSync(deb), `${deb} exists`);
});

test('the .deb names its libraries and holds the app, its desktop entry and icons', async () => {
  const field = async (name) => (await run('dpkg-deb', ['-f', deb, name])).stdout.trim();
  assert.equal(await field('Package'), PACKAGE);
  assert.equal(await field('Version'), CONF.version);
  assert.equal(await field('Architecture'), (await run('dpkg', ['--print-architecture'])).stdout.trim());
  const depends = (await field('Depends')).split(',').map((d) => d.trim().split(' ')[0]);
  for (const lib of REQUIRED_DEPENDS) assert.ok(depends.includes(lib), `Depends names ${lib}: ${depends}`);
  assert.equal(new Set(depends).size, depends.length, `no library is named twice: ${depends}`);

  const { stdout: listing } = await run('dpkg-deb', ['-c', deb], { maxBuffer: 16 << 20 });
  const files = new Map(listing.trim().split('\n').map((line) => {
    const cols = line.split(/\s+/);
    return [`/${cols.slice(5).join(' ').replace(/^\.?\//, '')}`, cols[0]];
  }));
  assert.equal(files.get(INSTALLED), '-rwxr-xr-x', `the binary is ${INSTALLED}, executable`);
  assert.ok(files.has(DESKTOP_ENTRY), `the desktop entry is ${DESKTOP_ENTRY}`);
  for (const size of ['32x32', '128x128']) {
    assert.ok(files.has(`/usr/share/icons/hicolor/${size}/apps/${CONF.mainBinaryName}.png`), `a ${size} icon`);
  }
  for (const file of files.keys()) {
    assert.ok(file === '/usr' || file.startsWith('/usr/'), `everything is under /usr (no /etc, no home): ${file}`);
  }
});

test('apt installs the .deb; the installed app runs, pauses from its tray, starts again after a re-login',
  { timeout: 10 * 60000 }, async (t) => {
    const before = await installedVersion();
    assert.equal(before, null, `a ${PACKAGE} package is already installed (${before}); not replacing it`);
    t.after(async () => {
      if (await installedVersion()) await asRoot('apt-get', ['remove', '-y', '-qq', PACKAGE]);
    });
    await asRoot('apt-get', ['install', '-y', '-qq', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', deb]);
    assert.equal(await installedVersion(), CONF.version);

    // Where the .deb put things: the binary on PATH (the desktop entry runs it by name), the entry, its icon.
    assert.equal((await run('sh', ['-c', `command -v ${CONF.mainBinaryName}`])).stdout.trim(), INSTALLED);
    const entry = readFileSync(DESKTOP_ENTRY, 'utf8');
    assert.match(entry, /^Type=Application$/m);
    assert.match(entry, new RegExp(`^Name=${CONF.productName}$`, 'm'));
    assert.equal(execLine(entry).program, CONF.mainBinaryName);
    const icon = /^Icon=(.*)$/m.exec(entry)[1];
    for (const size of ['32x32', '128x128']) {
      const png = `/usr/share/icons/hicolor/${size}/apps/${icon}.png`;
      assert.equal(readFileSync(png).subarray(0, 8).toString('hex'), PNG_MAGIC, `${png} is a PNG`);
    }

    // First start, as from the menu: the dashboard opens, the tray item registers, the engine answers.
    const home = makeHome('installed');
    const first = await startAppInSession(t, home.env, { bin: INSTALLED, args: [] });
    const { env, tray, app } = first;
    // The tray item belongs to the process we started from /usr/bin, not to some other build.
    const ownerPid = Number(/uint32 (\d+)/.exec(await gdbus(env, '--dest', 'org.freedesktop.DBus', '--object-path',
      '/org/freedesktop/DBus', '--method', 'org.freedesktop.DBus.GetConnectionUnixProcessID', tray[0]))[1]);
    assert.equal(ownerPid, app.pid, 'the tray item is the installed app\'s');
    assert.equal(readlinkSync(`/proc/${app.pid}/exe`), INSTALLED);
    assert.ok(await waitFor('the dashboard window', () => dashboardWindow(env, app.pid), 30000));
    const seeding = await waitFor('the first scan', async () => {
      const s = await status(env);
      return s.first_scan_done && s;
    }, 60000);
    assert.equal(seeding.paused, false);
    assert.equal(seeding.network, 'local');
    assert.match(seeding.peer_id, /^12D3KooW/);

    // Pause and resume from the tray menu.
    await clickMenuItem(env, tray, 'Pause seeding');
    await waitFor('the engine to pause', async () => (await status(env)).paused, 5000);
    await clickMenuItem(env, tray, 'Pause seeding');
    await waitFor('the engine to resume', async () => !(await status(env)).paused, 5000);

    // A second launch hands over to the first and exits.
    const second = spawn(INSTALLED, [], { env, stdio: 'ignore' });
    const secondCode = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve('still running'), 30000);
      second.on('exit', (code) => { clearTimeout(timer); resolve(code); });
    });
    if (secondCode === 'still running') second.kill('SIGKILL');
    assert.equal(secondCode, 0, 'a second launch exits');

    // Start on login: the login item runs the installed binary, tray only.
    await clickMenuItem(env, tray, 'Start on login');
    const loginItem = path.join(home.home, '.config/autostart', `${CONF.productName}.desktop`);
    const login = execLine(await waitFor('the login item', () => existsSync(loginItem)
      && readFileSync(loginItem, 'utf8'), 5000));
    assert.equal(login.program, INSTALLED);
    assert.deepEqual(login.args, ['--minimized']);

    // Still up after all that; then Quit from the menu ends it cleanly.
    assert.equal(app.exitCode, null, 'the app is still running');
    await clickMenuItem(env, tray, 'Quit');
    const quitCode = await waitFor('the app to quit', () => app.exitCode !== null && { code: app.exitCode }, 20000);
    assert.equal(quitCode.code, 0);
    await assert.rejects(status(env), 'the control socket is gone');
    first.session.close();

    // A re-login: a new session runs the login item's Exec line, with the same HOME.
    const again = await startAppInSession(t, home.env, { bin: login.program, args: login.args });
    assert.equal(readlinkSync(`/proc/${again.app.pid}/exe`), INSTALLED);
    const restarted = await status(again.env);
    assert.equal(restarted.peer_id, seeding.peer_id, 'the same identity after the re-login');
    assert.equal(restarted.paused, false);
    const startOnLogin = (await menuItems(again.env, again.tray)).find((i) => i.label === 'Start on login');
    assert.equal(startOnLogin.toggleState, 1, 'Start on login is checked');
    await sleep(2000);
    assert.equal(await dashboardWindow(again.env, again.app.pid), '', 'the login item starts in the tray only');
    // Open dashboard in the tray menu opens it.
    await clickMenuItem(again.env, again.tray, 'Open dashboard');
    await waitFor('the dashboard opened from the tray', () => dashboardWindow(again.env, again.app.pid), 30000);
    await again.app.stop();

    // Removed, the machine is as before.
    await asRoot('apt-get', ['remove', '-y', '-qq', PACKAGE]);
    assert.equal(await installedVersion(), null);
    assert.equal(existsSync(INSTALLED), false, `${INSTALLED} is gone`);
    assert.equal(existsSync(DESKTOP_ENTRY), false, `${DESKTOP_ENTRY} is gone`);
    assert.ok(statSync(deb).size > 0);
  });
