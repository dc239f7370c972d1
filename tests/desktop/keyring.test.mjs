// The node key goes to the OS keyring when one runs (gnome-keyring's Secret Service in a private session), and to
// the 0600 file with a visible warning when none does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeHome, startSession, launchApp, status, waitFor } from './lib.mjs';

async function identityWith(t, name, keyring) {
  const { env } = makeHome(name);
  const session = await startSession(env, { keyring });
  t.after(session.close);
  const app = launchApp(session.env, ['--minimized']);
  t.after(app.stop);
  return waitFor('the engine', () => status(session.env), 60000);
}

test('with gnome-keyring the node key is kept in the keyring', { timeout: 120000 }, async (t) => {
  const s = await identityWith(t, 'keyring', true);
  assert.equal(s.identity_storage, 'keyring');
  assert.equal(s.identity_warning, null);
});

test('without a keyring the key is kept in a file, with a warning', { timeout: 120000 }, async (t) => {
  const s = await identityWith(t, 'nokeyring', false);
  assert.equal(s.identity_storage, 'file');
  assert.match(s.identity_warning, /keyring/);
});
