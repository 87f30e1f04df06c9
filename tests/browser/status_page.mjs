// The status page in a real browser: Debian's Chromium, headless, driven by Playwright.
// Run by the integration test `status_page` (tests/tests/all/status_page.rs), which starts
// `factline run` with the order flow and a poisoned projector (`counts`, `dead_letter =
// "block"`) and passes, in the environment:
//   FACTLINE_URL        the host's base URL
//   FACTLINE_TOKEN      its admin token
//   FIXED_COMPONENT     the fixed build of `counts` to deploy
//   ARTIFACTS           a directory for the screenshots
//   CHROMIUM            the browser (default /usr/bin/chromium)
// Exits non-zero with the reason (and a screenshot of the page then) when a step fails.
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('FACTLINE_URL');
const token = env('FACTLINE_TOKEN');
const fixed = env('FIXED_COMPONENT');
const artifacts = env('ARTIFACTS');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const step = (what) => console.log(`status page: ${((Date.now() - started) / 1000).toFixed(1)} s  ${what}`);
const TIMEOUT = 20_000;

async function expect(condition, what) {
  if (!(await condition)) throw new Error(`expected ${what}`);
}

// Orders sent all along, so the throughput chart and the order-summary group have work.
let sending = true;
let sent = 0;
async function sendOrders() {
  for (let i = 0; sending; i++) {
    const id = `UI-${i}`;
    for (const [type, payload] of [
      ['create', { customer_id: `C-${i % 7}` }],
      ['add-item', { product_id: 'P-1', quantity: 1 + (i % 3), unit_price: 1250 }],
      ['confirm', {}],
    ]) {
      const r = await fetch(`${url}/v1/aggregates/order/${id}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type, payload }),
      });
      if (!r.ok) throw new Error(`${type} ${id}: ${r.status} ${await r.text()}`);
      sent++;
    }
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in a container: Chromium's sandbox needs user namespaces it may not have.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
step(`launched ${executablePath} ${browser.version()}`);
const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // 401s of the first poll (no token yet) are expected; anything else logged as an error
  // (a CSP violation, a script error) fails the test.
  if (m.type() === 'error' && !/401/.test(m.text())) problems.push(`console: ${m.text()}`);
});
page.on('response', (r) => {
  if (r.status() >= 400 && r.status() !== 401) problems.push(`${r.status()} for ${r.url()}`);
});
const sender = sendOrders();

try {
  await page.goto(url, { waitUntil: 'load' });
  const tokenField = page.getByLabel('Admin token');
  await tokenField.waitFor({ timeout: TIMEOUT });
  await page.getByRole('alert').filter({ hasText: 'Sign in with the admin token' }).waitFor({ timeout: TIMEOUT });
  step('the page asks for the token');

  await tokenField.fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'The admin token was refused' }).waitFor({ timeout: TIMEOUT });
  await expect(page.locator('#board').isHidden(), 'no data shown with a wrong token');
  step('a wrong token is refused');

  await tokenField.fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const counts = page.locator('#groups tr[data-group="counts"]');
  await counts.waitFor({ timeout: TIMEOUT });
  const stored = await page.evaluate(() => [sessionStorage.getItem('factline.adminToken'), localStorage.length]);
  await expect(stored[0] === token && stored[1] === 0, `the token in sessionStorage only, not ${JSON.stringify(stored)}`);
  step('signed in');

  // The poisoned projector is blocked on its dead letter, with lag behind it.
  await page.locator('#groups tr[data-group="counts"][data-state="blocked"]').waitFor({ timeout: TIMEOUT });
  const lag = Number(await counts.locator('td.lag').textContent());
  await expect(lag > 0, `counts to lag behind its dead letter, lag ${lag}`);
  await expect((await counts.textContent()).includes('blocked on a dead letter'), 'the blocked state spelled out');
  const letter = page.locator('#dead-letters tr[data-dead-letter^="counts item/"]');
  await letter.waitFor({ timeout: TIMEOUT });
  await expect((await letter.locator('.kind').textContent()) === 'trap', 'the failure kind trap');
  await expect((await letter.textContent()).includes('poisoned item.a'), "the guest's panic message");
  await letter.getByText('Guest backtrace').click();
  const backtrace = await letter.locator('pre.backtrace').textContent();
  await expect(backtrace.includes('Poison as factline_guest::projector::Projector'), `the guest backtrace, not ${backtrace}`);
  step(`counts is blocked with lag ${lag}; its dead letter shows trap and the backtrace`);

  // Topics, plugins and live throughput from the orders being sent.
  await expect((await page.locator('#topics').textContent()).includes('item'), 'the item topic');
  await page.locator('#plugins tr[data-plugin="order-summary"]').waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(() => Number(document.querySelector('#commands-rate b')?.textContent) > 0, null, { timeout: TIMEOUT });
  await page.waitForFunction(() => Number(document.querySelector('#events-rate b')?.textContent) > 0, null, { timeout: TIMEOUT });
  // A few more samples so the chart and trends have a line to show.
  await page.waitForTimeout(4000);
  await letter.locator('pre.backtrace').waitFor({ state: 'visible', timeout: TIMEOUT });
  step(`throughput shown (${sent} commands sent so far)`);
  const shot = join(artifacts, 'status-page.png');
  await page.screenshot({ path: shot, fullPage: true });
  step(`screenshot ${shot}`);

  // Deploy the fixed build through the API, then retry from the page.
  const deployed = await fetch(`${url}/v1/admin/plugins/counts/deploy?version=fixed`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/wasm' },
    body: readFileSync(fixed),
  });
  if (!deployed.ok) throw new Error(`deploy: ${deployed.status} ${await deployed.text()}`);
  const plugin = page.locator('#plugins tr[data-plugin="counts"]');
  await plugin.filter({ hasText: 'fixed+' }).waitFor({ timeout: TIMEOUT });
  await expect((await plugin.textContent()).includes('1 earlier'), 'the version before it in the history');
  step('the fixed build is deployed and shown');

  await letter.getByRole('button', { name: /^Retry counts item\// }).click();
  await page.getByRole('status').filter({ hasText: /Retried counts item\/\d+@\d+: (Reprocessed|Unblocked)/ }).waitFor({ timeout: TIMEOUT });
  await page.locator('#dlq-empty').waitFor({ state: 'visible', timeout: TIMEOUT });
  await expect((await page.locator('#dead-letters tbody tr').count()) === 0, 'no dead letter rows');
  await page.locator('#groups tr[data-group="counts"][data-state="running"]').waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(() => document.querySelector('#groups tr[data-group="counts"] td.lag')?.textContent === '0', null, { timeout: TIMEOUT });
  step('Retry cleared the dead letter; counts runs and caught up');
  await page.screenshot({ path: join(artifacts, 'status-page-after-retry.png'), fullPage: true });

  if (problems.length) throw new Error(problems.join('\n'));
} catch (e) {
  await page.screenshot({ path: join(artifacts, 'status-page-failure.png'), fullPage: true }).catch(() => {});
  console.error(`status page: ${e.stack || e}\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  sending = false;
  await sender.catch((e) => {
    console.error(`status page: sending orders: ${e}`);
    process.exitCode = 1;
  });
  await browser.close();
}
step(`done, ${sent} commands sent`);
