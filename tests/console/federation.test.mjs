// Browser tests of the console's federation page. `tests/e2e/federation.rs` runs this file
// against 广东's gateway (TONGBAN_URL, TONGBAN_CREDENTIALS) at a moment it has set up: 河南's
// gateway, its peer, is down; a demand approved through both gateways has had its grant
// revoked at 河南, and the mirror shows it; two demands were handed off while 河南 was down,
// one of them since withdrawn, so three messages wait in 广东's outbox.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { done, open, shot, signIn } from './browser.mjs';

const REMOTE = '410000:A01-410000-0001';

test('the federation page shows a peer that is down with its outbox, the demand waiting on it and the mirrored grant', async () => {
  const page = await signIn('demander.guangdong-police');
  await open(page, 'federation');
  await page.waitForSelector('[data-testid=peers]');
  assert.match(await page.textContent('[data-testid=gateway]'), /guangdong · 440000/);
  const peers = await page.textContent('[data-testid=peers]');
  assert.match(peers, /henan/);
  assert.match(peers, /河南省/);
  assert.match(peers, /不可达/);
  assert.equal((await page.textContent('[data-testid=pending-henan]')).trim(), '3');

  assert.match(await page.textContent('[data-testid=remote-resources]'), new RegExp(REMOTE));
  // Only the demand still in flight: the withdrawn one and the approved one are settled. Its
  // turn is the supplier's, at the peer.
  const inFlight = await page.$$eval('[data-testid=demands-in-flight] tbody tr', (rows) => rows.map((r) => r.textContent));
  assert.equal(inFlight.length, 1, inFlight.join('\n'));
  assert.match(inFlight[0], /410000:A01-410000-0001/);
  assert.match(inFlight[0], /待供方答复|供方/);
  assert.equal((await page.textContent('[data-testid=turn]')).trim(), '对端网关');
  const mirrors = await page.textContent('[data-testid=grant-mirrors]');
  assert.match(mirrors, /henan/);
  assert.match(mirrors, /已撤销/);
  await shot(page, 'federation');

  // A remote resource opens the demand form with it chosen, under its remote id.
  await page.click(`[data-testid=remote-resources] tbody tr:has-text("${REMOTE}")`);
  await page.waitForSelector('select[name=resource]');
  assert.equal(await page.inputValue('select[name=resource]'), REMOTE);
  assert.match(await page.textContent(`select[name=resource] option[value="${REMOTE}"]`), /（河南省）/);
  await done(page);
});

test('the federation page reads in English too', async () => {
  const page = await signIn('operator', { lang: 'en' });
  await open(page, 'federation');
  await page.waitForSelector('[data-testid=peers]');
  const peers = await page.textContent('[data-testid=peers]');
  assert.match(peers, /Down/);
  assert.match(await page.textContent('main h1'), /Peer gateways/);
  await done(page);
});
