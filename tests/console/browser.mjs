// What the console's browser tests share: headless Debian Chromium driven by playwright-core,
// a fresh signed-in profile per person whose requests and script errors are watched, and
// screenshots kept as the run's artifacts. The gateway is named by the environment:
//   TONGBAN_URL          the gateway's base address (http://127.0.0.1:PORT)
//   TONGBAN_CREDENTIALS  the demo's demo-credentials.json
//   TONGBAN_SCREENSHOTS  where screenshots are kept
//   CHROMIUM             the browser (default /usr/bin/chromium)

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

export const base = process.env.TONGBAN_URL;
export const credentials = JSON.parse(await readFile(process.env.TONGBAN_CREDENTIALS, 'utf8'));
export const screenshots = process.env.TONGBAN_SCREENSHOTS ?? 'screenshots';
await mkdir(screenshots, { recursive: true });

// Launched before the file's tests, closed after them.
export let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // The machine has no route outside; these keep Chromium from trying to reach Google.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

let shotNumber = 0;
export async function shot(page, name) {
  shotNumber += 1;
  await page.screenshot({ path: `${screenshots}/${String(shotNumber).padStart(2, '0')}-${name}.png`, fullPage: true });
}

// A fresh browser profile signed in as `username`. Every request it makes is watched: the
// console must load nothing from anywhere but the gateway, and raise no script error.
export async function signIn(username, { lang } = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, locale: 'zh-CN' });
  const page = await context.newPage();
  page.foreign = [];
  page.errors = [];
  context.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) page.foreign.push(url);
  });
  page.on('pageerror', (error) => page.errors.push(error.message));
  page.on('console', (message) => {
    // A refused API call shows in the console as a failed resource load; the page handles it.
    if (message.type() === 'error' && !message.text().includes('status of 4')) page.errors.push(message.text());
  });
  await page.goto(`${base}/`);
  if (lang === 'en') await page.click('[data-testid=lang]');
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', credentials.password);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=who]');
  return page;
}

export async function done(page) {
  assert.deepEqual(page.foreign, [], 'the console reached outside the gateway');
  assert.deepEqual(page.errors, [], 'the console raised errors');
  await page.context().close();
}

// Opens a page by its address; an address already shown is loaded again, as a person
// would press reload to see a change made elsewhere.
export async function open(page, hash) {
  const url = `${base}/console/#/${hash}`;
  if (page.url() === url) await page.reload();
  else await page.goto(url);
}

