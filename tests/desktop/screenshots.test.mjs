// Screenshots for docs/screenshots/: the dashboard, and the tray menu opened under xfce4-panel (a real
// StatusNotifierItem host). Set PKGSEED_SCREENSHOTS=0 to skip (they are committed when the UI changes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, copyFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT, makeHome, startSession, launchApp, status, waitFor, sleep } from './lib.mjs';

const run = promisify(execFile);
const OUT = process.env.PKGSEED_SCREENSHOT_DIR || path.join(ROOT, 'docs/screenshots');
const skip = process.env.PKGSEED_SCREENSHOTS === '0';

async function shot(env, file) {
  await run('import', ['-window', 'root', file], { env });
  assert.ok(statSync(file).size > 1000, `${file} is an image`);
}

test('screenshots of the dashboard and the tray menu', { timeout: 180000, skip }, async (t) => {
  const { env, home } = makeHome('shots');
  const xml = path.join(home, '.config/xfce4/xfconf/xfce-perchannel-xml');
  mkdirSync(xml, { recursive: true });
  copyFileSync(path.join(ROOT, 'tests/desktop/xfce4-panel.xml'), path.join(xml, 'xfce4-panel.xml'));
  const session = await startSession(env, { keyring: true });
  t.after(session.close);
  const panel = spawn('xfce4-panel', ['--disable-wm-check'], { env: session.env, stdio: 'ignore', detached: true });
  t.after(() => { try { process.kill(-panel.pid, 'SIGTERM'); } catch { /* gone */ } });
  await sleep(3000);
  const app = launchApp(session.env, []);
  t.after(app.stop);
  await waitFor('the engine', async () => (await status(session.env)).first_scan_done, 60000);
  await sleep(4000); // the dashboard's first polls and chart samples
  mkdirSync(OUT, { recursive: true });
  // On a loaded machine the webview may not have painted yet: a blank window is one flat colour, a painted
  // dashboard (text, badges, the chart) has many.
  const dashboard = path.join(OUT, 'dashboard.png');
  await waitFor('the dashboard to be painted', async () => {
    await shot(session.env, dashboard);
    const { stdout: colours } = await run('convert', [dashboard, '-crop', '1000x760+0+0', '-format', '%k', 'info:']);
    return Number(colours) > 100;
  }, 60000);

  // Open the tray menu: the systray is the panel's last plugin, at its right end.
  const { stdout } = await run('xdotool', ['search', '--class', 'xfce4-panel'], { env: session.env });
  let width = 0;
  let height = 0;
  for (const id of stdout.trim().split('\n')) {
    const geo = await run('xdotool', ['getwindowgeometry', id], { env: session.env });
    const m = /Geometry: (\d+)x(\d+)/.exec(geo.stdout);
    if (m && Number(m[1]) > width) { width = Number(m[1]); height = Number(m[2]); }
  }
  assert.ok(width > 0, 'the panel is up');
  await run('xdotool', ['mousemove', String(width - 18), String(Math.floor(height / 2)), 'click', '1'],
    { env: session.env });
  await sleep(1500);
  await shot(session.env, path.join(OUT, 'tray-menu.png'));
});
