// The tray menu, driven over D-Bus as a panel would (com.canonical.dbusmenu Event "clicked"): Pause seeding pauses
// the engine within a second and changes the icon; Start on login writes and removes the login item, whose Exec line
// must survive an install path with a space.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { APP, makeHome, startAppInSession, status, control, waitFor, menuItems, menuItem, clickMenuItem,
  trayProperty, pixel, execLine } from './lib.mjs';

async function startApp(t, name, { bin = APP } = {}) {
  const home = makeHome(name);
  return { ...home, ...(await startAppInSession(t, home.env, { bin })) };
}

/** Where the panel is told to read the icon: IconThemePath + IconName (a PNG the app wrote). */
async function iconFile(env, tray) {
  const name = await trayProperty(env, tray, 'IconName');
  const dir = await trayProperty(env, tray, 'IconThemePath').catch(() => '');
  if (path.isAbsolute(name)) return name.endsWith('.png') ? name : `${name}.png`;
  return path.join(dir, `${name}.png`);
}

test('Pause seeding in the tray menu pauses the engine and changes the icon', { timeout: 120000 }, async (t) => {
  const { env, tray, home } = await startApp(t, 'tray');
  const labels = (await menuItems(env, tray)).map((i) => i.label);
  for (const label of ['Pause seeding', 'Open dashboard', 'Start on login', 'Quit']) {
    assert.ok(labels.includes(label), `menu has ${label}: ${labels}`);
  }
  assert.ok(labels.some((l) => /^(Seeding|Indexing|Paused)/.test(l)), `menu has a status line: ${labels}`);
  // Let the first scan (of an empty home) finish so the icon shows seeding.
  await waitFor('seeding', async () => (await status(env)).first_scan_done, 30000);
  const seedingIcon = await waitFor('the seeding icon', async () => {
    const file = await iconFile(env, tray);
    return (await pixel(file, 10, 32)) === '31,157,85' && file; // the seeding disc's green
  }, 10000);
  assert.ok(seedingIcon.startsWith(home), `the icon is written under the app's own dir, not /tmp: ${seedingIcon}`);

  // Pausing stops serving and announcing within a second: the node's pause is what the engine reports as `paused`
  // (node tests prove a paused node neither serves nor announces). Timed from the click on the bus to the first
  // status, asked over the control socket every 50 ms, that says paused.
  const pauseItem = await menuItem(env, tray, 'Pause seeding');
  const clickedAt = Date.now();
  const [, pausedAt] = await Promise.all([
    clickMenuItem(env, tray, pauseItem),
    waitFor('the engine to pause', async () => (await control(env, { cmd: 'status' })).paused && Date.now(), 10000, 50),
  ]);
  const pauseMs = pausedAt - clickedAt;
  t.diagnostic(`pause latency: ${pauseMs} ms from the D-Bus click to the engine reporting paused`);
  assert.ok(pauseMs <= 1000, `paused within a second of the click: ${pauseMs} ms`);
  const pausedIcon = await waitFor('the paused icon', async () => {
    const file = await iconFile(env, tray);
    return (await pixel(file, 10, 32)) === '107,114,128' && file; // the paused disc's grey
  }, 5000);
  assert.notEqual(pausedIcon, seedingIcon);
  const pause = (await menuItems(env, tray)).find((i) => i.label === 'Pause seeding');
  assert.equal(pause.toggleState, 1, 'the menu item is checked');

  await clickMenuItem(env, tray, 'Pause seeding');
  await waitFor('the engine to resume', async () => !(await status(env)).paused, 5000);
});

test('Start on login writes a login item that survives a path with a space', { timeout: 120000 }, async (t) => {
  const home = makeHome('autostart-bin');
  // Install the app under a path with a space, as a user might.
  const dir = path.join(home.home, 'my apps');
  mkdirSync(dir);
  const bin = path.join(dir, 'pkgseed-desktop');
  // The copy is the size of the app (a debug build is 235 MB): gone with the test.
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(APP, bin);
  chmodSync(bin, 0o755);
  const { env, tray, home: appHome } = await startApp(t, 'autostart', { bin });
  const entry = path.join(appHome, '.config/autostart/pkgseed.desktop');
  assert.equal(existsSync(entry), false);

  await clickMenuItem(env, tray, 'Start on login');
  const text = await waitFor('the login item', () => existsSync(entry) && readFileSync(entry, 'utf8'), 5000);
  const { exec, program, args } = execLine(text);
  // Desktop Entry spec: a quoted argument keeps its spaces.
  assert.equal(exec, `"${bin}" --minimized`);
  assert.equal(program, bin);
  assert.deepEqual(args, ['--minimized']);
  assert.ok(existsSync(program), `the Exec program exists: ${program}`);
  await waitFor('the menu item to be checked', async () =>
    (await menuItems(env, tray)).find((i) => i.label === 'Start on login').toggleState === 1, 5000);

  await clickMenuItem(env, tray, 'Start on login');
  await waitFor('the login item to go', () => !existsSync(entry), 5000);
});
