import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import playwright, { type Browser, type Page } from 'playwright-core';
import { DEMO_API_KEY } from './support/demo-merchant.js';
import { ledgerViolations } from './support/invariants.js';
import { startInstance, useTestApp } from './support/test-app.js';

/**
 * The retry lab at /lab, clicked through in headless Chromium the way a learner
 * would: open an account, charge it with the response lost, retry with the same
 * key (a replay, charged once), retry with a new key (charged twice), fire
 * duplicates (one executes), send a stale If-Match (412). It checks what the page
 * shows after every click, and the database at the end.
 *
 * Needs Debian's chromium (apt-get install chromium; .ci/run installs it), or
 * CHROMIUM_PATH. LAB_SCREENSHOT=<file.png> saves the page at the end (the README's).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const found = existsSync(CHROMIUM);
if (!found) {
  console.warn(
    `SKIPPED the browser test of /lab (test/lab-page.e2e-spec.ts): no Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`,
  );
}
const describeInBrowser = found ? describe : describe.skip;

const t = useTestApp();
/**
 * The page sets body[data-busy] while an action runs (evaluated in the browser, as
 * a function: the page's CSP runs no string as code).
 */
const BUSY_DONE = () =>
  (globalThis as unknown as { document: { body: { dataset: Record<string, string> } } }).document
    .body.dataset.busy === 'false';

describeInBrowser('the retry lab in the browser', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await playwright.chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  });
  afterAll(() => browser?.close());

  /** Clicks a button and waits until the page has finished the action it starts. */
  async function click(testId: string): Promise<void> {
    await page.getByTestId(testId).click();
    await page.waitForFunction(BUSY_DONE);
  }
  const text = async (testId: string) => (await page.getByTestId(testId).textContent()) ?? '';
  /** The newest `n` exchanges in the log, newest first. */
  const exchanges = (n: number) =>
    page.$$eval(
      '[data-testid=requests] li',
      (items, count) =>
        items.slice(0, count).map((li) => ({
          status: Number(li.getAttribute('data-status')),
          replayed: li.getAttribute('data-replayed') === 'true',
          lost: li.getAttribute('data-lost') === 'true',
        })),
      n,
    );
  const ledgerRows = () => page.locator('[data-testid=ledger] tbody tr').count();

  it('loses a response, replays it with the same key, double-charges with a new one, and shows each step', async () => {
    await page.goto(`${t.baseUrl}/lab`);
    expect(await page.inputValue('#api-key')).toBe(DEMO_API_KEY); // the demo merchant's, outside production
    await page.fill('#api-key', t.api.apiKey);

    await click('create-account');
    expect(await text('balance')).toBe('$100.00');
    expect(await ledgerRows()).toBe(1);

    // The charge happens; its response is lost on the way back.
    expect(await page.isChecked('#lose')).toBe(true);
    await click('charge');
    expect(await exchanges(1)).toEqual([{ status: 201, replayed: false, lost: true }]);
    expect(await text('balance')).toBe('$75.00');
    expect(await text('explanation')).toContain('the response was lost');
    expect(await text('sequence')).toContain('✗ lost');

    // The same key: the stored response, replayed; nothing charged again.
    await click('retry-same');
    expect(await exchanges(1)).toEqual([{ status: 201, replayed: true, lost: false }]);
    expect(await text('balance')).toBe('$75.00');
    expect(await ledgerRows()).toBe(2);
    // The diagram tells the whole story of the charge: the lost answer, then the replay.
    expect(await text('sequence')).toMatch(/✗ lost.*201 · replayed/);

    // A new key: a new charge, as far as the server can tell.
    await click('retry-new');
    expect(await exchanges(1)).toEqual([{ status: 201, replayed: false, lost: false }]);
    expect(await text('balance')).toBe('$50.00');
    expect(await ledgerRows()).toBe(3);
    expect(await text('explanation')).toContain('double charges');

    // Five at once with one key: one executes, the others get 409 or the replay.
    await click('duplicates');
    const five = await exchanges(5);
    expect(five.filter((e) => e.status === 201 && !e.replayed)).toHaveLength(1);
    expect(five.every((e) => e.status === 409 || (e.status === 201 && !e.lost))).toBe(true);
    expect(await text('balance')).toBe('$25.00');
    expect(await ledgerRows()).toBe(4);
    expect(await text('explanation')).toContain('1 executed');

    // A PUT with the version read before another PUT: 412, nothing overwritten.
    await click('stale');
    expect((await exchanges(3)).map((e) => e.status)).toEqual([412, 200, 200]);
    expect(await text('explanation')).toContain('412');
    expect(await text('account')).toContain('Retry lab, renamed at');

    // The database agrees with what the page showed: three charges, books sound.
    const { rows } = await t.db.query<{ charges: number; balance: string }>(
      `SELECT (SELECT count(*)::int FROM charges c WHERE c.account_id = a.id) AS charges, a.balance
         FROM accounts a WHERE a.name LIKE 'Retry lab%'`,
    );
    expect(rows).toEqual([{ charges: 3, balance: '2500' }]);
    expect(await ledgerViolations(t.db)).toEqual([]);

    if (process.env.LAB_SCREENSHOT) {
      // The README's picture: a new account, a lost response and its replay, under the demo key.
      await click('create-account');
      await click('charge');
      await click('retry-same');
      await page.fill('#api-key', DEMO_API_KEY);
      await page.screenshot({ path: process.env.LAB_SCREENSHOT });
    }
  });
});

describeInBrowser('the pages under their Content-Security-Policy', () => {
  it('/docs and /lab run with no violation, and the docs keep no API key in localStorage', async () => {
    const browser = await playwright.chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
      });
      const docs = await page.goto(`${t.baseUrl}/docs`);
      expect(docs?.headers()['content-security-policy']).toContain("script-src 'self'");
      await page.locator('.swagger-ui .info .title').waitFor();
      // A key given to "Authorize", as a reader would; persisted, it would sit in localStorage.
      await page.locator('.swagger-ui .btn.authorize').first().click();
      await page.locator('.auth-container input').first().fill('sk_test_demo');
      await page.locator('.auth-btn-wrapper .btn.authorize').first().click();
      await page
        .locator('.auth-btn-wrapper .btn-done, .auth-btn-wrapper button.logout')
        .first()
        .waitFor();
      const stored = () => ({
        ...(globalThis as unknown as { localStorage: Record<string, string> }).localStorage,
      });
      expect(await page.evaluate(stored)).toEqual({});

      await page.goto(`${t.baseUrl}/lab`);
      await page.getByTestId('create-account').waitFor();
      expect(violations).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe('/lab in production', () => {
  it('is not served', async () => {
    const production = await startInstance(t.databaseUrl, { NODE_ENV: 'production' });
    try {
      for (const path of ['/lab', '/lab/lab.js']) {
        expect((await fetch(`${production.baseUrl}${path}`)).status).toBe(404);
      }
      expect((await fetch(`${t.baseUrl}/lab/lab.js`)).status).toBe(200);
    } finally {
      await production.close();
    }
  });
});
