// Drives the real dashboard through tauri-driver + WebKitWebDriver: sets a limit and turns an ecosystem off, then
// asks the engine (over its control socket and the CLI) whether it applied them. Also checks an invalid limit is
// refused with the engine's error naming the key, that without a keyring the dashboard shows the warning, and that
// "All scopes public" next to an npm registry's scope origin marks every scope of it (`<registry>@*`). Then: the
// dashboard's Start on login and the tray's stay in sync both ways, and the page may call our commands but not the
// plugins' or Tauri core's (least-privilege capability).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { By, until } from 'selenium-webdriver';
import { APP, makeHome, startDashboard, status, engineConfig, readText, waitFor, heliaAskMissing, findTrayItem,
  menuItem, clickMenuItem, dashboardWindow, appPids } from './lib.mjs';

// A registry the test's config marks public; nothing listens there (the cache entry below is all the engine reads).
const REGISTRY = 'http://127.0.0.1:4873/';

// What npm leaves in `~/.npm/_cacache` for a tarball fetched from `url`: the blob under its sha512, and an index
// bucket line (sha1 of the JSON, a tab, the JSON) under the sha256 of the key.
function cacheNpmTarball(home, url, bytes) {
  const cacache = path.join(home, '.npm/_cacache');
  const sha512 = createHash('sha512').update(bytes);
  const hex = sha512.copy().digest('hex');
  const blob = path.join(cacache, 'content-v2/sha512', hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
  mkdirSync(path.dirname(blob), { recursive: true });
  writeFileSync(blob, bytes);
  const key = `make-fetch-happen:request-cache:${url}`;
  const json = JSON.stringify({ key, integrity: `sha512-${sha512.digest('base64')}`, time: 1, size: bytes.length, metadata: {} });
  const k = createHash('sha256').update(key).digest('hex');
  const bucket = path.join(cacache, 'index-v5', k.slice(0, 2), k.slice(2, 4), k.slice(4));
  mkdirSync(path.dirname(bucket), { recursive: true });
  writeFileSync(bucket, `\n${createHash('sha1').update(json).digest('hex')}\t${json}`);
}

test('the dashboard sets limits and ecosystems the engine applies', { timeout: 180000 }, async (t) => {
  const { env, configDir, home } = makeHome('dashboard');
  appendFileSync(`${configDir}/config.toml`, `[origins]\npublic = ["${REGISTRY}"]\n`);
  cacheNpmTarball(home, `${REGISTRY}@corp/lib/-/lib-1.0.0.tgz`, Buffer.from('a scoped tarball\n'));
  const { session, browser } = await startDashboard(t, env); // no keyring on this bus
  const before = await status(session.env);
  assert.equal(before.paused, false);
  assert.equal(before.identity_storage, 'file');

  // Each cache with its path, as the engine reports it: cargo's is under this test's HOME.
  const cargoCaches = before.caches.filter((c) => c.ecosystem === 'cargo');
  assert.ok(cargoCaches.length > 0 && cargoCaches.every((c) => c.path.startsWith(home)), JSON.stringify(cargoCaches));
  await waitFor('the cache paths', async () =>
    (await browser.findElement(By.id('cache-cargo')).getText()).includes(cargoCaches[0].path), 10000);

  // Without a keyring the dashboard says so.
  const warning = await browser.findElement(By.id('identity-warning'));
  assert.ok(await warning.isDisplayed(), 'the keyring warning is shown');
  assert.match(await warning.getText(), /keyring/);

  // A limit: 512 KiB/s upload.
  const upload = await browser.findElement(By.id('upload-limit'));
  await upload.clear();
  await upload.sendKeys('512');
  await browser.findElement(By.id('save-limits')).click();
  await browser.wait(until.elementTextIs(browser.findElement(By.id('limits-message')), 'Saved'), 10000);

  // An ecosystem off.
  const cargo = await browser.findElement(By.id('eco-cargo'));
  assert.equal(await cargo.isSelected(), true, 'cargo starts enabled');
  await cargo.click();

  const applied = await waitFor('the engine to apply the settings', async () => {
    const config = await engineConfig(session.env);
    return config.ecosystems.cargo?.enabled === false && config.limits.upload_bytes_per_sec === 512 * 1024 && config;
  }, 10000);
  assert.equal(applied.network, 'local', 'the rest of the config is kept');
  const file = readText(`${configDir}/config.toml`);
  assert.match(file, /upload_bytes_per_sec = 524288/);
  assert.match(file, /\[ecosystems\.cargo\]\s*enabled = false/);

  // An invalid value is refused by the engine, whose {code, message} names the key.
  const percent = await browser.findElement(By.id('battery-percent'));
  await percent.clear();
  await percent.sendKeys('0');
  await browser.findElement(By.id('save-limits')).click();
  const message = browser.findElement(By.id('limits-message'));
  await browser.wait(until.elementTextMatches(message, /pause_on_battery_below_percent/), 10000);
  assert.match(await message.getText(), /\(config\)$/);
  assert.equal((await engineConfig(session.env)).limits.pause_on_battery_below_percent, 30, 'the bad value was not applied');

  // Traffic: a Helia peer asks the app for a block it lacks. The engine counts the want list it received (and its
  // answer) and the rest of that connection's TCP payload (overhead); the dashboard draws the download series from
  // those counters and shows the totals from the status.
  assert.equal((await status(session.env)).traffic.all_time.downloaded_bytes, 0, 'a fresh home starts at zero');
  const asked = await heliaAskMissing(session.env);
  assert.equal(asked.missing, true, 'the app does not serve what it does not have');
  const counted = await waitFor('the engine to count the traffic', async () => {
    const s = await status(session.env);
    return s.limits.bytes_downloaded > 0
      && s.traffic.all_time.downloaded_bytes === s.limits.bytes_downloaded + s.limits.overhead_bytes_downloaded && s;
  }, 10000);
  assert.equal(counted.traffic.today.downloaded_bytes, counted.traffic.all_time.downloaded_bytes);
  assert.equal(counted.traffic.this_month.downloaded_bytes, counted.traffic.all_time.downloaded_bytes);
  const chart = await browser.findElement(By.id('chart'));
  const downPeak = await waitFor('the download series to rise', async () =>
    Number(await chart.getAttribute('data-down-peak')) > 0 && Number(await chart.getAttribute('data-down-peak')),
  10000);
  assert.ok(downPeak <= counted.traffic.all_time.downloaded_bytes * 4, `a rate from the counters: ${downPeak} B/s`);
  assert.ok(Number(await chart.getAttribute('data-samples')) > 1, 'samples from several polls');
  await waitFor('the totals from the status', async () =>
    (await browser.findElement(By.id('all-down')).getText()) !== '0 B'
    && (await browser.findElement(By.id('today-down')).getText()) !== '0 B', 10000);

  // A scope origin of the public-marked registry is not seeded until its scopes are marked; the button next to it
  // marks them all at once, and the engine says which rule made it public.
  const scopeOrigin = `${REGISTRY}@corp/`;
  const npmOrigin = async () => (await status(session.env)).origins.find((o) => o.origin === scopeOrigin);
  assert.equal((await waitFor('the scope origin', npmOrigin, 30000)).provenance, 'unknown');
  const allScopes = await browser.wait(until.elementLocated(By.css('#origins button.all-scopes')), 10000);
  assert.equal(await allScopes.getText(), 'All scopes public');
  await allScopes.click();
  await waitFor('the wildcard mark in the engine', async () =>
    (await engineConfig(session.env)).origins.public.includes(`${REGISTRY}@*`), 10000);
  const covered = await waitFor('the scope to turn public', async () => {
    const o = await npmOrigin();
    return o?.provenance === 'public' && o;
  }, 30000);
  assert.match(covered.evidence, /@\*/);
  assert.match(readText(`${configDir}/config.toml`), /"http:\/\/127\.0\.0\.1:4873\/@\*"/);

  // Pause from the dashboard reaches the engine.
  await browser.findElement(By.id('pause')).click();
  await waitFor('the engine to pause', async () => (await status(session.env)).paused, 10000);
});

test('Start on login stays in sync between the dashboard and the tray menu', { timeout: 180000 }, async (t) => {
  const { env, home } = makeHome('autostart-sync');
  const { session, browser } = await startDashboard(t, env);
  const tray = await waitFor('the tray item on the bus', () => findTrayItem(session.env), 60000);
  const entry = path.join(home, '.config/autostart/pkgseed.desktop');
  const trayChecked = async () => (await menuItem(session.env, tray, 'Start on login')).toggleState === 1;
  const box = await browser.findElement(By.id('autostart'));
  assert.equal(await box.isSelected(), false);
  assert.equal(await trayChecked(), false);
  assert.equal(existsSync(entry), false);

  // On in the dashboard: the login item appears and the tray's item is checked.
  await box.click();
  await waitFor('the login item', () => existsSync(entry), 10000);
  await waitFor('the tray item to be checked', trayChecked, 10000);

  // Off in the tray: the login item goes and the dashboard's box is unchecked.
  await clickMenuItem(session.env, tray, 'Start on login');
  await waitFor('the login item to go', () => !existsSync(entry), 10000);
  await waitFor('the dashboard box to be unchecked', async () => !(await box.isSelected()), 10000);
  assert.equal(await trayChecked(), false);
});

test('the page can call our commands and nothing else', { timeout: 180000 }, async (t) => {
  const { env, home } = makeHome('capability');
  const { session, browser } = await startDashboard(t, env);
  const entry = path.join(home, '.config/autostart/pkgseed.desktop');
  // Calls a command from the page as app.js does, and reports what came back.
  const invoke = (command, args = {}) => browser.executeAsyncScript(`const done = arguments[arguments.length - 1];
    window.__TAURI__.core.invoke(arguments[0], arguments[1]).then(
      (value) => done({ value: value ?? null }),
      (error) => done({ error: typeof error === 'string' ? error : JSON.stringify(error) }));`, command, args);

  // Commands of the plugins and of Tauri's core that the capability does not grant are refused, with no effect.
  const enable = await invoke('plugin:autostart|enable');
  assert.match(enable.error ?? '', /not allowed/, `the plugin's own command is refused: ${JSON.stringify(enable)}`);
  assert.equal(existsSync(entry), false, 'no login item was written');
  const title = await invoke('plugin:window|set_title', { label: 'dashboard', value: 'hijacked' });
  assert.match(title.error ?? '', /not allowed/, `a core window command is refused: ${JSON.stringify(title)}`);
  const [pid] = appPids(APP, home);
  assert.ok(await dashboardWindow(session.env, pid), 'the window keeps its title');
  const exit = await invoke('plugin:process|exit', { code: 3 });
  assert.ok(exit.error, `no process command: ${JSON.stringify(exit)}`);
  t.diagnostic(`refused: ${enable.error} | ${title.error} | ${exit.error}`);

  // Ours work: the same change through our command is allowed.
  assert.deepEqual(await invoke('get_autostart'), { value: false });
  assert.deepEqual(await invoke('set_autostart', { enabled: true }), { value: true });
  await waitFor('the login item', () => existsSync(entry), 10000);
  assert.equal((await invoke('get_status')).value.paused, false);
});
