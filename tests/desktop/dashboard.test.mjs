// Drives the real dashboard through tauri-driver + WebKitWebDriver: sets a limit and turns an ecosystem off, then
// asks the engine (over its control socket and the CLI) whether it applied them. Also checks an invalid limit is
// refused with the engine's error naming the key, and that without a keyring the dashboard shows the warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Builder, By, until, Capabilities } from 'selenium-webdriver';
import { APP, makeHome, startSession, status, engineConfig, readText, sleep, waitFor } from './lib.mjs';

const PORT = 4444 + Math.floor(Math.random() * 1000);

test('the dashboard sets limits and ecosystems the engine applies', { timeout: 180000 }, async (t) => {
  const { env, configDir } = makeHome('dashboard');
  const session = await startSession(env); // no keyring on this bus
  t.after(session.close);
  const driver = spawn('tauri-driver', ['--port', String(PORT), '--native-port', String(PORT + 1)], {
    env: session.env, stdio: ['ignore', 'inherit', 'inherit'], detached: true,
  });
  t.after(() => { try { process.kill(-driver.pid, 'SIGTERM'); } catch { /* gone */ } });
  await sleep(1000);

  const caps = new Capabilities();
  caps.setBrowserName('wry');
  caps.set('tauri:options', { application: APP });
  const browser = await new Builder().withCapabilities(caps).usingServer(`http://127.0.0.1:${PORT}/`).build();
  t.after(() => browser.quit().catch(() => {}));

  await browser.wait(until.elementLocated(By.css('body[data-ready="true"]')), 60000);
  const before = await status(session.env);
  assert.equal(before.paused, false);
  assert.equal(before.identity_storage, 'file');

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

  // Pause from the dashboard reaches the engine.
  await browser.findElement(By.id('pause')).click();
  await waitFor('the engine to pause', async () => (await status(session.env)).paused, 10000);
});
