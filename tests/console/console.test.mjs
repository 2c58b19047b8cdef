// Browser tests of the console: headless Debian Chromium, driven by playwright-core, against a
// running demo gateway. `tests/e2e/console.rs` starts the gateway and runs this file with:
//   TONGBAN_URL          the gateway's base address (http://127.0.0.1:PORT)
//   TONGBAN_CREDENTIALS  the demo's demo-credentials.json
//   TONGBAN_SCREENSHOTS  where screenshots are kept as test artifacts
//   CHROMIUM             the browser (default /usr/bin/chromium)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { base, browser, credentials, done, open, shot, signIn } from './browser.mjs';

const RESOURCE = 'B02-440000-0001'; // 广东省社会保险参保信息, supplied by 广东省人社厅
const SYSTEM = '广州公积金业务系统';
const SERVICE_ITEM = 'KSTB-JS-004'; // 正常退休提取住房公积金

function system(name) {
  const found = credentials.systems.find((s) => s.name === name);
  assert.ok(found, `demo system ${name}`);
  return found;
}

// A data call as a department's system makes it, with its API key and purpose headers.
async function dataCall(path, init = {}) {
  const response = await fetch(`${base}/api/v1/data${path}`, {
    ...init,
    headers: {
      Authorization: `Bearer ${system(SYSTEM).api_key}`,
      'X-Tongban-Service-Item': SERVICE_ITEM,
      'X-Tongban-Case-Number': 'GZ-2026-104233',
      'X-Tongban-Operator': '0107',
      'Content-Type': 'application/json',
      ...init.headers,
    },
  });
  return { status: response.status, body: await response.json() };
}

const sqlCall = {
  method: 'POST',
  headers: { Accept: 'application/json' },
  body: JSON.stringify({ query: 'SELECT status, count(*) AS n FROM social_insurance GROUP BY status ORDER BY status' }),
};

async function fileDemand(page, purpose) {
  await open(page, 'catalog');
  await page.fill('input[name=q]', '社会保险');
  await page.click(`[data-testid=catalog] tr:has-text("${RESOURCE}")`);
  await page.waitForSelector('[data-testid=items]');
  await page.click('a:has-text("提交需求")');
  await page.waitForSelector('[data-testid=demand-form]');
  assert.equal(await page.inputValue('select[name=resource]'), RESOURCE);
  await page.selectOption('select[name=service_item]', SERVICE_ITEM);
  await page.selectOption('select[name=system]', { label: SYSTEM });
  await page.fill('input[name=legal_basis]', '《住房公积金管理条例》第二十四条');
  await page.fill('textarea[name=purpose]', purpose);
  for (const item of ['id_number', 'name', 'status', 'paid_months', 'contribution_base']) {
    await page.check(`input[name=item-${item}]`);
  }
  await page.fill('input[name=rate_per_second]', '20');
  await page.fill('input[name=daily_quota]', '5000');
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/demands\/[0-9a-f-]{36}$/);
  await page.waitForSelector('[data-testid=demand-state]');
  return page.url().split('/').pop();
}

async function state(page) {
  return (await page.textContent('[data-testid=demand-state]')).trim();
}

// Opens the demand from the signed-in person's review queue, as a reviewer would.
async function openFromQueue(page, id) {
  await open(page, 'review');
  await page.waitForSelector('[data-testid=review-queue]');
  await page.click(`[data-testid=review-queue] tr:has(code[title="${id}"])`);
  await page.waitForSelector('[data-testid=actions]');
}

async function takeAction(page, action, fill = async () => {}) {
  await page.click(`[data-testid=actions] button[data-action=${action}]`);
  await page.waitForSelector('[data-testid=action-form]');
  await fill();
  await page.click('[data-testid=confirm]');
  await page.waitForSelector('[data-testid=action-form]', { state: 'detached' });
}

test('a wrong password is refused on the sign-in page', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/`);
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  await page.fill('input[name=username]', 'operator');
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  await page.waitForSelector('[role=alert]');
  assert.match(await page.textContent('[role=alert]'), /用户名或密码不正确/);
  await shot(page, 'sign-in-refused');
  await context.close();
});

test('a person changes their own password from their name in the header', async () => {
  // A person no other test signs in as, since the password changes.
  const page = await signIn('demander.hefei-fund');
  await page.click('[data-testid=who]');
  await page.waitForSelector('[data-testid=password-form]');
  const change = async (current, next, again = next) => {
    await page.fill('input[name=current_password]', current);
    await page.fill('input[name=new_password]', next);
    await page.fill('input[name=new_password_again]', again);
    await page.click('[data-testid=password-form] button[type=submit]');
  };
  await change(credentials.password, 'hefei-fund-new-passphrase', 'something-else-entirely');
  assert.match(await page.textContent('[role=alert]'), /两次输入的新密码不一致/);
  await change('not-the-password', 'hefei-fund-new-passphrase');
  // The code is kept for scripts in `data-code`; people read it in their language.
  await page.waitForSelector('[role=alert][data-code=wrong_password] >> text=当前密码不正确');
  await change(credentials.password, 'hefei-fund-new-passphrase');
  await page.waitForSelector('[data-testid=password-changed]');
  await shot(page, 'password-changed');

  // The old password no longer signs in; the new one does.
  const signInWith = async (password) =>
    (await fetch(`${base}/api/v1/sessions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'demander.hefei-fund', password }),
    })).status;
  assert.equal(await signInWith(credentials.password), 401);
  assert.equal(await signInWith('hefei-fund-new-passphrase'), 201);
  await done(page);
});

test('a department replaces a system\'s key and stops and allows the system', async () => {
  // A department and system no other test uses, since the key changes.
  const name = '河南省社保经办系统';
  const me = (key) => fetch(`${base}/api/v1/me`, { headers: { Authorization: `Bearer ${key}` } }).then((r) => r.status);
  const page = await signIn('demander.henan-hrss');
  await page.click('[data-nav=systems]');
  const row = `[data-system="${name}"]`;
  await page.waitForSelector(row);
  page.once('dialog', (dialog) => dialog.accept());
  await page.click(`${row} [data-action=new-key]`);
  const key = (await page.textContent('[data-testid=api-key]')).trim();
  assert.match(key, /^tbk_/);
  assert.equal(await me(system(name).api_key), 401, 'the old key stopped');
  assert.equal(await me(key), 200, 'the new key calls');
  await shot(page, 'system-new-key');

  await page.click(`${row} [data-action=stop]`);
  await page.waitForSelector(`${row} [data-action=allow]`);
  assert.equal(await me(key), 401, 'a stopped system cannot call');
  await page.click(`${row} [data-action=allow]`);
  await page.waitForSelector(`${row} [data-action=stop]`);
  assert.equal(await me(key), 200, 'and calls again once allowed');
  await done(page);

  // A platform administrator reads the three changes on the trail, newest first, with who
  // made them, and never the key.
  const admin = await signIn('admin');
  await admin.click('[data-nav=trail]');
  await admin.waitForSelector('[data-testid=trail] [data-action="system.api_key_replaced"]');
  const rows = await admin.$$eval('[data-testid=trail] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  const henan = rows.filter((r) => r.includes('user:demander.henan-hrss'));
  assert.equal(henan.length, 3, rows.join('\n'));
  ['启用系统', '停用系统', '更换密钥'].forEach((action, i) => assert.ok(henan[i].includes(action), henan[i]));
  assert.ok(!(await admin.content()).includes(key), 'the trail never shows a key');
  // Roles and departments read by their names, not as codes.
  const trail = await admin.textContent('[data-testid=trail]');
  assert.ok(!/roles:|data_office|supplier_admin|角色: demander/.test(trail), trail.slice(0, 2000));
  assert.ok(trail.includes('角色: 数据管理机构') && trail.includes('角色: 需求方业务员'), trail.slice(0, 2000));
  await shot(admin, 'trail');
  await done(admin);
});

test('a demand is filed, reviewed and approved in the pages, and the call it allows shows on the dashboard and in the log', async () => {
  // Before any approval the system's call is refused, and that refusal is logged.
  const refused = await dataCall(`/${RESOURCE}/records/11010519491231002X`);
  assert.equal(refused.status, 403, JSON.stringify(refused.body));

  const demander = await signIn('demander.guangzhou-fund');
  const id = await fileDemand(demander, '核验申请人退休前在广东的参保与缴费情况,办理正常退休提取住房公积金。');
  assert.equal(await state(demander), '待符合性审查');
  await shot(demander, 'demand-filed');

  // The data office of the supplier's province checks conformity and narrows the rate.
  const reviewer = await signIn('reviewer.guangdong');
  await openFromQueue(reviewer, id);
  await shot(reviewer, 'review-queue-demand');
  await takeAction(reviewer, 'pass_conformity', async () => {
    assert.equal(await reviewer.getAttribute('input[name=rate_per_second]', 'max'), '20');
    await reviewer.fill('input[name=rate_per_second]', '10');
  });
  await reviewer.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('待供方答复'));
  await done(reviewer);

  // The contribution items are conditional (有条件共享), so the supplier answers.
  const supplier = await signIn('supplier.guangdong-hrss');
  await openFromQueue(supplier, id);
  await takeAction(supplier, 'supplier_approve');
  await supplier.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('已批准'));
  const approvedRate = await supplier.textContent('div:has(> h2:has-text("批准内容")) dl');
  assert.match(approvedRate ?? '', /10/);
  await shot(supplier, 'demand-approved');
  await done(supplier);

  // The grant is in force at once: the system's SQL over its view succeeds.
  const answer = await dataCall('/sql', sqlCall);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));

  // The demander follows the demand to its grant.
  await open(demander, `demands/${id}`);
  await demander.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('已批准'));
  await open(demander, 'grants');
  await demander.waitForSelector(`[data-testid=grants] tr:has-text("${RESOURCE}")`);
  // Starting another demand for the same purpose, the form says its approval would replace
  // the grant now in force; for another system of the department it says nothing.
  await open(demander, 'catalog');
  await demander.fill('input[name=q]', '社会保险');
  await demander.click(`[data-testid=catalog] tr:has-text("${RESOURCE}")`);
  await demander.click('a:has-text("提交需求")');
  await demander.waitForSelector('[data-testid=demand-form]');
  await demander.selectOption('select[name=service_item]', SERVICE_ITEM);
  await demander.selectOption('select[name=system]', { label: SYSTEM });
  await demander.waitForSelector('[data-testid=replaces-grant]');
  assert.match(await demander.textContent('[data-testid=replaces-grant]'), /替代/);
  await demander.selectOption('select[name=system]', '');
  await demander.waitForSelector('[data-testid=replaces-grant]', { state: 'detached' });
  await done(demander);

  // The operator sees the call on the dashboard, which refreshes itself.
  const operator = await signIn('operator');
  await open(operator, 'dashboard');
  await operator.waitForSelector(`[data-testid=top-resources] tr:has-text("${RESOURCE}")`, { timeout: 30000 });
  const calls = Number(await operator.textContent('[data-testid=tile-calls] .tile-value'));
  assert.ok(calls >= 2, `calls tile shows ${calls}`);
  await operator.waitForSelector('[data-testid=refusal-reasons] li');
  await operator.waitForSelector('[data-testid=chart-volume] canvas');
  await operator.waitForSelector('[data-testid=chain] .badge-ok');
  // The calls per service item and per province pair: Guangzhou's fund system calling
  // Guangdong's social insurance, both in 广东省, by name.
  await operator.waitForSelector(`[data-testid=service-items] li[data-key="${SERVICE_ITEM}"]`);
  const pair = await operator.textContent('[data-testid=province-pairs] tbody tr');
  assert.match(pair, /广东省.*广东省/, pair);
  await shot(operator, 'dashboard');

  // …and finds it in the log search, then opens the record.
  await open(operator, `exchanges?resource=${RESOURCE}&operation=sql`);
  await operator.waitForSelector('[data-testid=log] tbody tr');
  const rows = await operator.$$eval('[data-testid=log] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(rows.length >= 1 && rows.every((r) => r.includes(RESOURCE)), rows.join('\n'));
  assert.ok(rows.some((r) => r.includes('200')), rows.join('\n'));
  await operator.click('[data-testid=log] tbody tr:has-text("200")');
  await operator.waitForSelector('[data-testid=record]');
  assert.equal((await operator.textContent('[data-field=operation]')).trim(), 'sql');
  assert.equal((await operator.textContent('[data-field=service_item]')).trim(), SERVICE_ITEM);
  // The case number and operator are kept only as keyed digests.
  const record = await operator.textContent('[data-testid=record]');
  assert.ok(!record.includes('GZ-2026-104233'), 'the case number appears unhashed');
  await shot(operator, 'exchange-record');

  await open(operator, `exchanges?status=403&resource=${RESOURCE}`);
  await operator.waitForSelector('[data-testid=log] tbody tr:has-text("403")');
  // Refusals read in Chinese, and the calling system by its name, not raw codes and ids.
  const refusedRows = await operator.$$eval('[data-testid=log] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(refusedRows.every((r) => !/access_denied|no_grant/.test(r)), refusedRows.join('\n'));
  assert.ok(refusedRows.some((r) => r.includes('拒绝访问') && r.includes(SYSTEM)), refusedRows.join('\n'));
  await shot(operator, 'exchange-log-refusals');

  // The log pages back in time: one record at a time here (the resource has two so far: the
  // refusal and the SQL call), each page older than the one before, and no empty page after.
  await open(operator, `exchanges?resource=${RESOURCE}&limit=1`);
  await operator.waitForSelector('[data-testid=log-pages] [data-action=older]');
  const firstPage = await operator.$$eval('[data-testid=log] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.equal(firstPage.length, 1, firstPage.join('\n'));
  await operator.click('[data-testid=log-pages] [data-action=older]');
  await operator.waitForSelector('[data-testid=log-pages] [data-action=newest]');
  await operator.waitForFunction(
    (shown) => document.querySelector('[data-testid=log] tbody tr')?.textContent !== shown,
    firstPage[0],
  );
  const secondPage = await operator.$$eval('[data-testid=log] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(secondPage.length === 1 && !firstPage.includes(secondPage[0]), `${firstPage}\n${secondPage}`);
  assert.equal(await operator.$('[data-testid=log-pages] [data-action=older]'), null, 'the last page offers no older one');
  await operator.click('[data-testid=log-pages] [data-action=newest]');
  await operator.waitForFunction(() => !document.querySelector('[data-testid=log-pages] [data-action=newest]'));

  // The dashboard refreshes on its own: a new call shows without reloading the page.
  await open(operator, 'dashboard');
  await operator.waitForSelector('[data-testid=tile-calls]');
  const before = Number(await operator.textContent('[data-testid=tile-calls] .tile-value'));
  assert.equal((await dataCall('/sql', sqlCall)).status, 200);
  await operator.waitForFunction(
    (n) => Number(document.querySelector('[data-testid=tile-calls] .tile-value')?.textContent) > n,
    before,
    { timeout: 25000 },
  );
  await done(operator);

  // The supplier suspends the grant from its page: calls are refused at once, and resuming
  // lets them through again. The grant's history shows both changes.
  const admin = await signIn('supplier.guangdong-hrss');
  await open(admin, 'grants');
  await admin.click(`[data-testid=grants] tr:has-text("广州住房公积金管理中心"):has-text("${RESOURCE}")`);
  await admin.waitForSelector('[data-testid=grant-actions]');
  await changeGrant(admin, 'suspend', '核查调用异常,暂停使用。');
  await admin.waitForFunction(() => document.querySelector('[data-testid=grant-effective]')?.textContent.includes('已暂停'));
  const suspended = await dataCall('/sql', sqlCall);
  assert.equal(suspended.status, 403, JSON.stringify(suspended.body));
  await changeGrant(admin, 'resume', '核查完毕,恢复使用。');
  await admin.waitForFunction(() => document.querySelector('[data-testid=grant-effective]')?.textContent.includes('生效'));
  assert.equal((await dataCall('/sql', sqlCall)).status, 200);
  const history = await admin.$$eval('[data-testid=grant-versions] tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(history.some((h) => h.includes('暂停使用')) && history.some((h) => h.includes('恢复使用')), history.join('\n'));
  await shot(admin, 'grant-history');
  // Revoking ends the grant for good: calls are refused and no further change is offered.
  await changeGrant(admin, 'revoke', '业务系统停用,撤销授权。');
  await admin.waitForFunction(() => document.querySelector('[data-testid=grant-effective]')?.textContent.includes('已撤销'));
  assert.equal(await admin.$('[data-testid=grant-actions]'), null);
  const revoked = await dataCall('/sql', sqlCall);
  assert.equal(revoked.status, 403, JSON.stringify(revoked.body));
  await done(admin);
});

async function changeGrant(page, action, reason) {
  await page.click(`[data-testid=grant-actions] button[data-action=${action}]`);
  await page.fill('[data-testid=grant-actions] textarea[name=reason]', reason);
  await page.click('[data-testid=grant-actions] [data-testid=confirm]');
  await page.waitForSelector('[data-testid=grant-actions] textarea', { state: 'detached' });
}

test('a reviewer refuses a demand with reason and basis, and the demander sees why', async () => {
  const demander = await signIn('demander.guangzhou-fund');
  const id = await fileDemand(demander, '批量比对本中心全部缴存职工的参保信息。');
  const reviewer = await signIn('reviewer.guangdong');
  await openFromQueue(reviewer, id);
  await takeAction(reviewer, 'refuse_conformity', async () => {
    await reviewer.fill('textarea[name=reason]', '用途超出所列事项范围,属于批量比对。');
    await reviewer.fill('input[name=basis]', '《政务数据共享管理办法》有关按需共享的规定');
  });
  await reviewer.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('审查不通过'));
  await done(reviewer);

  await open(demander, `demands/${id}`);
  await demander.waitForSelector('.notice.bad');
  assert.match(await demander.textContent('.notice.bad'), /批量比对/);
  assert.equal(await demander.$('[data-testid=actions]'), null, 'a refused demand offers no further step');
  await shot(demander, 'demand-refused');
  await done(demander);
});

test('a reviewer asks for a correction and the demander resubmits; the office settles a dispute', async () => {
  const demander = await signIn('demander.guangzhou-fund');
  const id = await fileDemand(demander, '异地转移接续时核验参保状态。');
  const reviewer = await signIn('reviewer.guangdong');
  await openFromQueue(reviewer, id);
  await takeAction(reviewer, 'request_correction', async () => {
    await reviewer.fill('textarea[name=reason]', '请补充年度办件量测算。');
  });
  await reviewer.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('待补正'));
  await done(reviewer);

  // The demander reads the request in the history, lowers the quota and resubmits; the
  // stage's clock, paused during the correction, runs again.
  await open(demander, `demands/${id}`);
  await demander.waitForSelector('[data-testid=history]');
  assert.match(await demander.textContent('[data-testid=history]'), /年度办件量测算/);
  await takeAction(demander, 'resubmit', async () => {
    await demander.fill('[data-testid=action-form] input[name=daily_quota]', '3000');
  });
  await demander.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('待符合性审查'));
  assert.match(await demander.textContent('[data-testid=requested]'), /3000|3,000/);
  await done(demander);

  // A supplier's refusal the demander disputed waits for the data office to settle it.
  const office = await signIn('reviewer.anhui');
  await open(office, 'review');
  await office.click('[data-testid=review-queue] tr:has-text("出具异地贷款缴存使用证明")');
  await office.waitForSelector('[data-testid=actions]');
  assert.ok(await office.$('[data-testid=actions] button[data-action=decide_refuse]'));
  await takeAction(office, 'decide_approve', async () => {
    await office.uncheck('[data-testid=action-form] input[name=item-loan_status]');
  });
  await office.waitForFunction(() => document.querySelector('[data-testid=demand-state]')?.textContent.includes('已批准'));
  // The supplier's refusal stays on record, shown as overruled rather than as the outcome.
  assert.match(await office.textContent('[data-testid=refusal]'), /经协调决定共享/);
  assert.equal(await office.$('.notice.bad'), null);
  await shot(office, 'dispute-settled');
  await done(office);
});

test('a demander has no review queue, and an operator cannot take workflow steps', async () => {
  const demander = await signIn('demander.guangzhou-fund');
  await demander.waitForSelector('[data-nav=catalog]');
  assert.equal(await demander.$('[data-nav=review]'), null);
  assert.equal(await demander.$('[data-nav=dashboard]'), null);
  await open(demander, 'review');
  await demander.waitForSelector('[data-testid=forbidden]');
  await shot(demander, 'demander-review-forbidden');
  await done(demander);

  const operator = await signIn('operator');
  assert.equal(await operator.$('[data-nav=review]'), null);
  await open(operator, 'demands');
  await operator.click('[data-testid=demands] tr:has-text("待符合性审查")');
  await operator.waitForSelector('[data-testid=history]');
  assert.equal(await operator.$('[data-testid=actions]'), null);
  await done(operator);
});

test('the review queue counts deadlines down and highlights overdue work', async () => {
  const reviewer = await signIn('reviewer.henan');
  await open(reviewer, 'review');
  await reviewer.waitForSelector('[data-testid=review-queue]');
  // The seed holds a demand submitted three weeks ago that still waits for its check.
  const late = reviewer.locator('[data-testid=review-queue] tr.overdue-row', { hasText: '户口迁移核验（逾期未审）' });
  await late.waitFor();
  assert.match(await late.locator('.deadline.overdue').textContent(), /^超期 \d+ 天$/);
  assert.ok(Number(await reviewer.textContent('[data-testid=queue-overdue]')) >= 1);
  // Work still in time counts down instead, and is not highlighted.
  const inTime = reviewer.locator('[data-testid=review-queue] tr:not(.overdue-row) .deadline');
  assert.ok((await inTime.count()) >= 1, 'the queue also holds work still in time');
  assert.match(await inTime.first().textContent(), /^(剩余 \d+ 天|今日到期)$/);
  // The most urgent work comes first.
  const firstRow = reviewer.locator('[data-testid=review-queue] tbody tr').first();
  assert.match((await firstRow.getAttribute('class')) ?? '', /overdue-row/);
  await shot(reviewer, 'review-queue-overdue');
  await done(reviewer);

  const operator = await signIn('operator');
  await operator.waitForSelector('[data-testid=overdue]');
  await operator.locator('[data-testid=overdue] tbody tr', { hasText: 'A01-410000-0001' }).first().waitFor();
  await done(operator);
});

test('the language switches to English and back, and the choice is kept', async () => {
  const page = await signIn('reviewer.henan');
  await page.waitForSelector('[data-nav=review]');
  assert.equal((await page.textContent('[data-nav=review]')).trim(), '审核队列');
  await page.click('[data-testid=lang]');
  await page.waitForFunction(() => document.querySelector('[data-nav=review]')?.textContent === 'Review queue');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await open(page, 'review');
  await page.waitForSelector('[data-testid=review-queue]');
  await shot(page, 'review-queue-english');
  await page.reload();
  await page.waitForSelector('[data-nav=catalog]');
  assert.equal((await page.textContent('[data-nav=catalog]')).trim(), 'Catalog');
  await page.click('[data-testid=lang]');
  await page.waitForFunction(() => document.querySelector('[data-nav=catalog]')?.textContent === '资源目录');
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  await done(page);
});

test('pages fit an ordinary laptop width, and the console is light to load', async () => {
  const page = await signIn('operator');
  // What a first visit transfers for the console itself (scripts, styles, icon), compressed.
  const weight = await page.evaluate(() =>
    [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
      .filter((entry) => new URL(entry.name).pathname.startsWith('/console/'))
      .reduce((sum, entry) => sum + entry.transferSize, 0),
  );
  console.log(`console assets transferred on a first visit: ${weight} bytes`);
  assert.ok(weight > 0 && weight < 150_000, `the console transfers ${weight} bytes on a first visit`);
  await page.setViewportSize({ width: 1280, height: 720 });
  for (const hash of ['dashboard', 'catalog', 'demands', 'grants', 'exchanges', 'feedback', 'reports', 'federation', 'licences']) {
    await open(page, hash);
    await page.waitForSelector('main.content h1');
    await page.waitForLoadState('networkidle');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${hash} is ${overflow}px wider than the window`);
  }
  await shot(page, 'dashboard-1280');
  await done(page);
});

test('a supplier edits its resource into a new version and registers a new one', async () => {
  const page = await signIn('supplier.guangdong-hrss');
  await open(page, `catalog/${RESOURCE}`);
  await page.click('a:has-text("编辑资源")');
  await page.waitForSelector('textarea[name=summary]');
  assert.equal(await page.isDisabled('input[name=code]'), true);
  await page.fill('textarea[name=summary]', '各险种参保登记与缴费信息,按公民身份号码查询;每日更新。');
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=items]');
  assert.match(await page.textContent('h1'), /v2/);
  assert.match(await page.textContent('dl.kv'), /每日更新/);

  await open(page, 'catalog/new');
  await page.waitForSelector('input[name=code]');
  await page.fill('input[name=code]', 'B03-440000-0001');
  await page.fill('input[name=name]', '广东省社会保险参保状态');
  await page.fill('input[name=dataset]', 'social_insurance');
  await page.fill('input[name=division_item]', 'insured_division_code');
  await page.selectOption('select[name=share_type]', 'unconditional');
  for (const [i, [name, label]] of [['id_number', '公民身份号码'], ['status', '参保状态'], ['insured_division_code', '参保地区划']].entries()) {
    await page.click('button:has-text("添加信息项")');
    await page.fill(`input[name="items.${i}.name"]`, name);
    await page.fill(`input[name="items.${i}.label"]`, label);
  }
  await page.check('label:has-text("KSTB-RS-004") input');
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=items]');
  assert.match(await page.textContent('h1'), /B03-440000-0001/);
  await open(page, 'catalog');
  await page.fill('input[name=q]', '参保状态');
  await page.waitForSelector('[data-testid=catalog] tr:has-text("B03-440000-0001")');
  await shot(page, 'catalog-registered');
  await done(page);
});

test('a department objects to an answer and rates its grant, and the supplier answers both', async () => {
  // The Guangdong police's system looks a person up under its household grant.
  const police = system('广东省公安厅跨省户籍业务系统');
  const person = process.env.TONGBAN_PERSON;
  assert.ok(person, 'TONGBAN_PERSON names a person the grant covers');
  const response = await fetch(`${base}/api/v1/data/A01-410000-0001/records/${person}`, {
    headers: {
      Authorization: `Bearer ${police.api_key}`,
      'X-Tongban-Service-Item': 'KSTB-GA-001',
      'X-Tongban-Case-Number': 'GD-2026-020417',
      'X-Tongban-Operator': '0107',
    },
  });
  assert.equal(response.status, 200);
  const exchange = response.headers.get('x-tongban-exchange-id');

  const demander = await signIn('demander.guangdong-police');
  await open(demander, 'feedback');
  await demander.fill('[data-testid=objection-form] input[name=exchange_id]', exchange);
  await demander.fill('[data-testid=objection-form] input[name=item]', 'status');
  await demander.fill('[data-testid=objection-form] textarea[name=description]', '户口状态应为迁出，与申请人提交的迁移证不一致');
  await demander.click('[data-testid=objection-form] button[type=submit]');
  await demander.waitForSelector('[data-testid=objections] tr:has-text("待答复")');
  // A poor rating names what went wrong and opens a task for the supplier.
  const grant = await demander.$eval('[data-testid=rating-form] select[name=grant_id]',
    (select) => [...select.options].find((o) => o.textContent.includes('A01-410000-0001 · KSTB-GA-001'))?.value);
  assert.ok(grant, 'the household grant is offered');
  await demander.selectOption('[data-testid=rating-form] select[name=grant_id]', grant);
  await demander.selectOption('[data-testid=rating-form] select[name=score]', '2');
  await demander.click('[data-testid=rating-form] button[type=submit]');
  await demander.waitForSelector('[data-testid=rating-form] [data-code=invalid_request]');
  await demander.check('[data-testid=rating-form] input[name=tag-wrong_data]');
  await demander.fill('[data-testid=rating-form] textarea[name=comment]', '户口状态多次与实际不符');
  await demander.click('[data-testid=rating-form] button[type=submit]');
  await demander.waitForSelector('[data-testid=ratings] tr:has-text("数据错误")');
  await shot(demander, 'feedback-filed');
  await done(demander);

  // The supplier answers the objection and the rating's rectification task.
  const supplier = await signIn('supplier.henan-police');
  await open(supplier, 'feedback');
  await supplier.selectOption('[data-testid=answer-objection] select[name=outcome]', 'corrected');
  await supplier.fill('[data-testid=answer-objection] input[name=answer]', '已核实并更正户口状态');
  await supplier.click('[data-testid=answer-objection] button[type=submit]');
  await supplier.waitForSelector('[data-testid=objections] tr:has-text("已更正")');
  await supplier.fill('[data-testid=rectify] input[name=rectification]', '已完成户口状态批量核查');
  await supplier.click('[data-testid=rectify] button[type=submit]');
  await supplier.waitForSelector('[data-testid=ratings] tr:has-text("已完成户口状态批量核查")');
  await shot(supplier, 'feedback-answered');
  await done(supplier);

  // The consumer sees the outcome; the office of the supplier's province sees both.
  const office = await signIn('reviewer.henan');
  await open(office, 'feedback');
  await office.waitForSelector('[data-testid=objections] tr:has-text("已核实并更正户口状态")');
  assert.equal(await office.$('[data-testid=answer-objection]'), null, 'a reviewer does not answer for the supplier');
  await done(office);
});

test('the monthly report shows the month by service item, department and resource, and downloads as Excel', async () => {
  const operator = await signIn('operator');
  await open(operator, 'reports');
  await operator.waitForSelector('[data-testid=report-items] tr:has-text("KSTB-GA-001")');
  await operator.waitForSelector('[data-testid=report-departments] tr');
  const household = await operator.textContent('[data-testid=report-resources] tr:has-text("A01-410000-0001")');
  assert.match(household ?? '', /河南省户籍人口基本信息/);
  const [download] = await Promise.all([operator.waitForEvent('download'), operator.click('[data-testid=download-xlsx]')]);
  assert.match(download.suggestedFilename(), /^tongban-report-\d{4}-\d{2}\.xlsx$/);
  const saved = await download.path();
  const bytes = await readFile(saved);
  assert.equal(bytes.subarray(0, 2).toString(), 'PK', 'an XLSX workbook is a zip archive');
  await shot(operator, 'monthly-report');

  // The dashboard shows the month's objections and ratings per resource.
  await open(operator, 'dashboard');
  await operator.waitForSelector('[data-testid=feedback-quality] tr:has-text("A01-410000-0001")', { timeout: 30000 });
  await operator.waitForSelector('[data-testid=ratings-chart] li[data-key="A01-410000-0001"]');
  await shot(operator, 'dashboard-feedback');
  await done(operator);
});

test('a platform administrator imports a service-item list, and the catalog shows where each item came from', async () => {
  const admin = await signIn('admin');
  await open(admin, 'catalog');
  const national = '[data-testid=service-item-list] tr:has-text("KSTB-GA-001")';
  await admin.waitForSelector(national);
  assert.match(await admin.textContent(national), /全国高频政务服务/);
  const list = 'code,name,item_type,ministry,needs,list\nHN-GA-201,居住证签注,公共服务,公安部,household,河南省“跨省通办”事项清单\n';
  await admin.setInputFiles('input[name=service_item_list]', { name: 'henan.csv', mimeType: 'text/csv', buffer: Buffer.from(list) });
  await admin.waitForSelector('[data-testid=import-outcome]');
  assert.match(await admin.textContent('[data-testid=import-outcome]'), /新增 1/);
  const imported = '[data-testid=service-item-list] tr:has-text("HN-GA-201")';
  await admin.waitForSelector(imported);
  assert.match(await admin.textContent(imported), /河南省“跨省通办”事项清单/);
  // A list with a bad row is refused whole, and the page says which line.
  const bad = 'code,name,item_type,ministry,needs,list\nHN-GA-202,,审批,公安部,household,河南省清单\n';
  await admin.setInputFiles('input[name=service_item_list]', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from(bad) });
  await admin.waitForSelector('[data-code=invalid_service_item_list]');
  assert.match(await admin.textContent('[data-code=invalid_service_item_list]'), /line 2/);
  await shot(admin, 'service-item-list');
  // A resource shows the catalog metadata the national rules ask for.
  await open(admin, 'catalog/C03-340000-0001');
  assert.equal(await admin.textContent('[data-testid=resource-format]'), '数据库');
  await admin.waitForSelector('dd:has-text("部门信息资源")');
  await admin.waitForSelector('dd a:has-text("A01-410000-0001")');
  await done(admin);
});
