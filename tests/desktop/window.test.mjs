// The dashboard window's life, as a user lives it: closing it from the title bar (the window manager's
// WM_DELETE_WINDOW) destroys it while the app keeps seeding from the tray, whose Open dashboard makes a new one; a
// second launch of the app hands over to the running one, which shows its dashboard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { APP, makeHome, startAppInSession, launchApp, status, waitFor, sleep, clickMenuItem, dashboardWindow,
  closeWindowAsUser, appPids } from './lib.mjs';

const run = promisify(execFile);

/** Whether an X window is mapped and viewable (shown), per `xwininfo`. */
async function viewable(env, windowId) {
  const { stdout } = await run('xwininfo', ['-id', windowId], { env, timeout: 10000 });
  return /Map State: IsViewable/.test(stdout);
}

/** The app's WebKit content processes (the webview's renderer), children of `pid`. */
function webProcesses(pid) {
  return run('pgrep', ['-P', String(pid), '-f', 'WebKitWebProcess'])
    .then(({ stdout }) => stdout.trim().split('\n').filter(Boolean))
    .catch(() => []); // pgrep exits 1 when nothing matches
}

test('closing the dashboard destroys its window; the app keeps seeding', { timeout: 180000 }, async (t) => {
  const { env } = makeHome('close');
  const { env: appEnv, tray, app } = await startAppInSession(t, env, { args: [] });
  const window = await waitFor('the dashboard window', () => dashboardWindow(appEnv, app.pid), 60000);
  await waitFor('the dashboard to be shown', () => viewable(appEnv, window), 30000);
  await waitFor('the first scan', async () => (await status(appEnv)).first_scan_done, 60000);
  await waitFor('the dashboard\'s web process', async () => (await webProcesses(app.pid)).length > 0, 30000);

  // The title bar's close, as a window manager delivers it (not a hide, not XDestroyWindow behind the app's back).
  await closeWindowAsUser(appEnv, window);
  await waitFor('the dashboard window to be destroyed', async () => (await dashboardWindow(appEnv, app.pid)) === '',
    30000);
  // Destroyed, not hidden: the webview's renderer goes with it (the idle memory of a tray app).
  await waitFor('the web process to end', async () => (await webProcesses(app.pid)).length === 0, 30000);

  // The last window closing does not end the app: a while later it still runs and seeds.
  await sleep(2000);
  assert.equal(app.exitCode, null, 'the app still runs');
  assert.equal(app.signalCode, null, 'the app was not killed');
  const after = await status(appEnv);
  assert.equal(after.paused, false, 'still seeding');
  assert.equal(after.first_scan_done, true);

  // The tray's Open dashboard builds a new one.
  await clickMenuItem(appEnv, tray, 'Open dashboard');
  const reopened = await waitFor('a new dashboard window', () => dashboardWindow(appEnv, app.pid), 30000);
  assert.notEqual(reopened, window, 'a new window, not the old one');
  await waitFor('the new dashboard to be shown', () => viewable(appEnv, reopened), 30000);
});

test('a second launch exits and the first instance shows its dashboard', { timeout: 180000 }, async (t) => {
  const { env, home } = makeHome('single');
  const { env: appEnv, app } = await startAppInSession(t, env); // --minimized: tray only
  await sleep(2000);
  assert.equal(await dashboardWindow(appEnv, app.pid), '', 'the first instance starts without a window');

  // A second launch, as from the applications menu: the same user (HOME) and session bus.
  const second = launchApp(appEnv, []);
  t.after(second.stop);
  const exited = await waitFor('the second launch to exit', () => (second.exitCode !== null
    || second.signalCode !== null) && { code: second.exitCode, signal: second.signalCode }, 60000);
  assert.deepEqual(exited, { code: 0, signal: null }, 'the second launch exits cleanly');

  const window = await waitFor('the first instance\'s dashboard', () => dashboardWindow(appEnv, app.pid), 30000);
  await waitFor('the dashboard to be shown', () => viewable(appEnv, window), 30000);
  assert.deepEqual(appPids(APP, home), [app.pid], 'one app process, the first');
  assert.equal((await status(appEnv)).paused, false, 'the first instance still seeds');
});
