// Browser tests of the console's licence page: headless Debian Chromium against a running
// demo gateway. `tests/e2e/console.rs` starts the gateway and runs this file with the
// variables `browser.mjs` names and:
//   TONGBAN_LICENCE   the number of a standing 住房公积金缴存证明 of 安徽's register
//   TONGBAN_SEAL_PEM  a seal certificate (PEM) for 安徽住建厅's own sealing system

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { base, credentials, done, open, shot, signIn } from './browser.mjs';

const REGISTER = 'E04-340000-0001';
const ISSUER_SYSTEM = '安徽省住房公积金电子证照系统';
const NUMBER = process.env.TONGBAN_LICENCE;

// The readable copy the issuer's system makes of the licence, as a holder would carry it.
async function sealedCopy() {
  const issuer = credentials.systems.find((s) => s.name === ISSUER_SYSTEM);
  assert.ok(issuer, ISSUER_SYSTEM);
  const response = await fetch(`${base}/api/v1/licences/seal?format=html`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${issuer.api_key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ resource: REGISTER, number: NUMBER }),
  });
  assert.equal(response.status, 200);
  const page = await response.text();
  const dir = await mkdtemp(join(tmpdir(), 'licence-'));
  const file = join(dir, `${NUMBER}.html`);
  await writeFile(file, page);
  const start = page.indexOf('id="sealed-licence">') + 'id="sealed-licence">'.length;
  const sealed = JSON.parse(page.slice(start, page.indexOf('</script>', start)));
  return { file, sealed };
}

async function verdict(page) {
  await page.waitForSelector('[data-testid=verdict]');
  return {
    genuine: await page.getAttribute('[data-testid=verdict]', 'data-genuine'),
    reason: await page.getAttribute('[data-testid=verdict]', 'data-reason'),
  };
}

test('a counter verifies a presented licence, the issuer looks it up and revokes it, and the counter sees the revocation', async () => {
  assert.ok(NUMBER, 'TONGBAN_LICENCE names a licence');
  const { file, sealed } = await sealedCopy();

  // At a counter in 合肥: the holder's readable copy, uploaded, is genuine.
  const counter = await signIn('demander.hefei-fund');
  await open(counter, 'licences');
  await counter.waitForSelector('[data-testid=licence-types] tr:has-text("住房公积金缴存证明")');
  assert.equal(await counter.locator('[data-testid=licence-types] tbody tr').count(), 5);
  assert.equal(await counter.locator('[data-testid=lookup]').count(), 0, 'a demander looks nothing up');
  assert.equal(await counter.locator('[data-testid=seal-form]').count(), 0, 'nor registers seals');
  await counter.setInputFiles('[data-testid=verify-form] input[type=file]', file);
  await counter.waitForFunction(() => document.querySelector('textarea[name=document]')?.value.includes('sealed-licence'));
  await counter.click('[data-testid=verify-form] button[type=submit]');
  assert.deepEqual(await verdict(counter), { genuine: 'true', reason: '' });
  assert.equal((await counter.textContent('[data-testid=verdict-status]')).trim(), '有效');
  await shot(counter, 'licence-genuine');

  // The same document with its account status changed: the altered item is named.
  const altered = structuredClone(sealed);
  altered.document.surface.account_status = '封存';
  await counter.fill('textarea[name=document]', JSON.stringify(altered));
  await counter.click('[data-testid=verify-form] button[type=submit]');
  await counter.waitForSelector('[data-testid=verdict][data-reason=surface_altered]');
  assert.equal((await counter.textContent('[data-testid=altered]')).trim(), '账户状态');
  await shot(counter, 'licence-altered');
  // Something that is no document is refused on the page, before any call.
  await counter.fill('textarea[name=document]', '<html><body>not a licence</body></html>');
  await counter.click('[data-testid=verify-form] button[type=submit]');
  await counter.waitForSelector('[data-testid=verify-form] .error[data-code=malformed_document]');

  // The issuer's data administrator looks the licence up, masked, and revokes it.
  const issuer = await signIn('supplier.anhui-housing');
  await open(issuer, 'licences');
  await issuer.waitForSelector('[data-testid=lookup] select[name=resource]');
  assert.equal(await issuer.inputValue('[data-testid=lookup] select[name=resource]'), REGISTER);
  await issuer.fill('[data-testid=lookup] input[name=number]', NUMBER);
  await issuer.click('[data-testid=lookup] button[type=submit]');
  await issuer.waitForSelector('[data-testid=issued-licence]');
  assert.equal((await issuer.textContent('[data-testid=licence-status]')).trim(), '有效');
  const holder = (await issuer.textContent('[data-testid=holder]')).trim();
  assert.match(holder, /^\d{6}\*+\w{4}$/, 'the holder is masked');
  assert.ok(!holder.includes(sealed.document.holder));
  issuer.once('dialog', (dialog) => dialog.accept());
  await issuer.fill('[data-testid=revoke-form] input[name=reason]', '缴存单位申请更正后重新出具');
  await issuer.click('[data-testid=revoke-form] button[type=submit]');
  await issuer.waitForSelector('[data-testid=revocation]');
  assert.equal((await issuer.textContent('[data-testid=licence-status]')).trim(), '已注销');
  assert.equal(await issuer.locator('[data-testid=revoke-form]').count(), 0, 'a revoked licence is not revoked again');
  await shot(issuer, 'licence-revoked');

  // The counter checks the holder's copy again: revoked.
  await counter.setInputFiles('[data-testid=verify-form] input[type=file]', file);
  await counter.waitForFunction(() => document.querySelector('textarea[name=document]')?.value.includes('sealed-licence'));
  await counter.click('[data-testid=verify-form] button[type=submit]');
  await counter.waitForSelector('[data-testid=verdict][data-reason=revoked]');
  await done(counter);
  await done(issuer);
});

test('an issuing department registers its sealing system\'s certificate and retires it', async () => {
  const pem = process.env.TONGBAN_SEAL_PEM;
  assert.ok(pem, 'TONGBAN_SEAL_PEM holds a certificate');
  const issuer = await signIn('supplier.anhui-housing');
  await open(issuer, 'licences');
  await issuer.waitForSelector('[data-testid=seal-form]');
  const rows = await issuer.locator('[data-testid=seals] tbody tr').count();
  await issuer.fill('[data-testid=seal-form] textarea[name=certificate]', pem);
  await issuer.click('[data-testid=seal-form] button[type=submit]');
  await issuer.waitForFunction((n) => document.querySelectorAll('[data-testid=seals] tbody tr').length === n + 1, rows);
  const retire = issuer.locator('[data-testid=seals] button[data-action=retire]');
  assert.equal(await retire.count(), 1, 'the registered certificate can be retired');
  const row = issuer.locator('[data-testid=seals] tr:has(button[data-action=retire])');
  assert.match(await row.textContent(), /接口登记/);
  await shot(issuer, 'seal-registered');
  // The same certificate again is refused with its reason.
  await issuer.fill('[data-testid=seal-form] textarea[name=certificate]', pem);
  await issuer.click('[data-testid=seal-form] button[type=submit]');
  await issuer.waitForSelector('.error[data-code=already_exists]');
  issuer.once('dialog', (dialog) => dialog.accept());
  await retire.click();
  await issuer.waitForFunction(() => !document.querySelector('[data-testid=seals] button[data-action=retire]'));
  await done(issuer);

  // Another issuer sees the certificate listed, and nothing to retire.
  const other = await signIn('supplier.henan-police');
  await open(other, 'licences');
  await other.waitForSelector('[data-testid=seals] tbody tr');
  assert.equal(await other.locator('[data-testid=seals] tbody tr').count(), rows + 1);
  assert.equal(await other.locator('[data-testid=seals] button[data-action=retire]').count(), 0);
  await done(other);
});
