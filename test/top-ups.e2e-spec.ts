import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { childEnv, projectRoot } from '../tools/api-process.js';
import { reconcile, RECONCILIATION_RULES } from '../src/audit/reconciliation.js';
import { TopUpCompleter } from '../src/top-ups/top-up-completer.js';
import { startTestProcessor, type TestProcessor } from './support/processor.js';
import { useTestApp } from './support/test-app.js';

/**
 * Card top-ups: money that crosses a system no transaction can roll back. The
 * request runs in atomic phases (decision 0012); these tests drive each phase's
 * failure with the processor's test cards. The completer is off here (driven by
 * hand), so that what a retry does and what the completer does are seen apart.
 */
let processor: TestProcessor;
beforeAll(async () => {
  processor = await startTestProcessor({ slowMs: 400, holdMs: 2_000 });
});
const t = useTestApp({
  env: () => ({
    PROCESSOR_URL: processor.url,
    PROCESSOR_TIMEOUT_MS: '1000',
    TOP_UP_RETRY_SECONDS: '0',
    TOP_UP_MAX_ATTEMPTS: '3',
    COMPLETER_INTERVAL_SECONDS: '0',
  }),
});
afterAll(() => processor.close());
const PROCESSOR_API_KEY = 'sk_processor_test_payments_api'; // the API's default
const reconciled = () => reconcile(t.db, { url: processor.url, apiKey: PROCESSOR_API_KEY });
// After every test, besides the books: ours and the processor's agree.
afterEach(async () => expect(await reconciled()).toEqual([]));

const topUp = (account: string, card: string, key: string, amount = 2_500) =>
  t.api.post(`/accounts/${account}/top-ups`, { amount, currency: 'USD', card }, key);

/** The processor's payments for a top-up (its key is the top-up's id). */
async function paymentsFor(topUpId: string) {
  const { rows } = await processor.db.query<{ amount: string; amount_refunded: string }>(
    'SELECT amount, amount_refunded FROM payments WHERE idempotency_key = $1',
    [topUpId],
  );
  return rows.map((r) => ({ amount: Number(r.amount), refunded: Number(r.amount_refunded) }));
}

async function statusOf(topUpId: string) {
  const { rows } = await t.db.query('SELECT status FROM top_ups WHERE id = $1', [topUpId]);
  return rows[0]?.status;
}

/** Where the request with this key rests, if it is under way (idempotency_recovery_points). */
async function underWay(key: string) {
  const { rows } = await t.db.query(
    `SELECT recovery_point AS "recoveryPoint", attempts, locked_until > now() AS leased
       FROM idempotency_recovery_points WHERE key = $1`,
    [key],
  );
  return rows[0];
}

describe('a top-up that goes through', () => {
  it('charges the card once, credits the account once, and replays its 201', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();

    const first = await topUp(account, 'tok_visa', key);
    const again = await topUp(account, 'tok_visa', key);

    expect(first.status).toBe(201);
    expect(first.headers.location).toBe(`/top-ups/${first.body.id}`);
    expect(first.body).toMatchObject({
      object: 'top_up',
      accountId: account,
      amount: 2_500,
      status: 'succeeded',
      processorPaymentId: expect.stringMatching(/^pay_/),
    });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.text).toBe(first.text);
    expect(await t.api.balance(account)).toBe(3_500);
    expect(await paymentsFor(first.body.id)).toEqual([{ amount: 2_500, refunded: 0 }]);
    const ledger = await t.api.get(`/accounts/${account}/ledger`);
    expect(ledger.body.data[0]).toMatchObject({
      type: 'top_up',
      amount: 2_500,
      sourceId: first.body.id,
    });
    expect((await t.api.get(`/top-ups/${first.body.id}`)).body).toEqual(first.body);
  });

  it('stores a decline (402 card-declined): no money moves, and the retry replays it', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();

    const declined = await topUp(account, 'tok_declined', key);
    const again = await topUp(account, 'tok_declined', key);

    expect(declined.status).toBe(402);
    expect(declined.body).toMatchObject({
      type: '/problems/card-declined',
      topUpId: expect.stringMatching(/^tu_/),
      declineCode: 'card_declined',
    });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await t.api.balance(account)).toBe(1_000);
    expect((await t.api.get(`/top-ups/${declined.body.topUpId}`)).body.status).toBe('declined');
  });

  it('answers what the account decides (404, 409 closed, 422 currency) without calling the processor', async () => {
    const closed = await t.api.createAccount();
    await t.api.delete(`/accounts/${closed}`);
    const euros = await t.api.createAccount('EUR');
    const before = Number(
      (await processor.db.query('SELECT count(*) FROM payments')).rows[0].count,
    );

    expect((await topUp('acct_unknown', 'tok_visa', randomUUID())).status).toBe(404);
    expect((await topUp(closed, 'tok_visa', randomUUID())).body.type).toBe(
      '/problems/account-closed',
    );
    expect((await topUp(euros, 'tok_visa', randomUUID())).body.type).toBe(
      '/problems/currency-mismatch',
    );
    expect(Number((await processor.db.query('SELECT count(*) FROM payments')).rows[0].count)).toBe(
      before,
    );
  });

  it('refuses a key reused for another top-up (422), and a card that is not a token (400)', async () => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();
    await topUp(account, 'tok_visa', key, 100);

    expect((await topUp(account, 'tok_visa', key, 200)).body.type).toBe(
      '/problems/idempotency-key-reused',
    );
    expect((await topUp(account, '4242424242424242', randomUUID())).status).toBe(400);
    expect(
      (
        await t.api.post(`/accounts/${account}/top-ups`, {
          amount: 1,
          currency: 'USD',
          card: 'tok_visa',
        })
      ).body.type,
    ).toBe('/problems/idempotency-key-missing');
  });
});

describe('an unknown outcome: never guessed', () => {
  it.each([
    ['the processor charged, then did not answer in time', 'tok_timeout_after_charge'],
    ['the processor charged, then the connection was cut', 'tok_drop_after_charge'],
  ])('%s: 202 pending, then the retry with the same key credits once', async (_, card) => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();

    const pending = await topUp(account, card, key);

    expect(pending.status).toBe(202);
    expect(pending.headers['retry-after']).toMatch(/^\d+$/);
    expect(pending.headers.location).toBe(`/top-ups/${pending.body.id}`);
    expect(pending.body.status).toBe('pending');
    expect(await t.api.balance(account)).toBe(0); // charged there, not credited here yet
    expect(await paymentsFor(pending.body.id)).toEqual([{ amount: 2_500, refunded: 0 }]);
    const underWay = await t.api.get(`/idempotency-keys/${key}`);
    expect(underWay.body).toMatchObject({ phase: 'started', responseStatus: null, attempts: 1 });

    const retry = await topUp(account, card, key);

    expect(retry.status).toBe(201);
    expect(retry.body).toMatchObject({ id: pending.body.id, status: 'succeeded' });
    expect(await t.api.balance(account)).toBe(2_500);
    expect(await paymentsFor(pending.body.id)).toHaveLength(1);
    expect((await t.api.get(`/idempotency-keys/${key}`)).body).toMatchObject({
      phase: 'completed',
      responseStatus: 201,
    });
  });

  it('gives up after TOP_UP_MAX_ATTEMPTS when the processor keeps failing: 402 top-up-failed, stored', async () => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();

    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await topUp(account, 'tok_error', key)).status);

    expect(answers).toEqual([202, 202, 402, 402]);
    const last = await topUp(account, 'tok_error', key);
    expect(last.headers['idempotent-replayed']).toBe('true');
    expect(last.body).toMatchObject({
      type: '/problems/top-up-failed',
      failureCode: 'processor_unreachable',
      detail: expect.stringContaining('after 3 tries'),
    });
    expect(await statusOf(last.body.topUpId)).toBe('failed');
    expect(await underWay(key)).toBeUndefined(); // answered: no recovery point left
    expect(await paymentsFor(last.body.topUpId)).toEqual([]);
    expect(await t.api.balance(account)).toBe(0);
  });
});

describe('the completer', () => {
  it('finishes a top-up whose client went away, and the late retry gets the stored response', async () => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();
    const pending = await topUp(account, 'tok_timeout_after_charge', key);
    expect(pending.status).toBe(202);
    const firstUsed = (await t.api.get(`/idempotency-keys/${key}`)).body.createdAt as string;

    const driven = await t.app.get(TopUpCompleter).completeDue();

    expect(driven).toBeGreaterThanOrEqual(1);
    expect(await statusOf(pending.body.id)).toBe('succeeded');
    expect(await underWay(key)).toBeUndefined();
    expect(await t.api.balance(account)).toBe(2_500);
    const late = await topUp(account, 'tok_timeout_after_charge', key);
    expect(late.status).toBe(201);
    expect(late.headers['idempotent-replayed']).toBe('true');
    expect(await paymentsFor(pending.body.id)).toHaveLength(1);
    // The key's record starts when the key was first used, not when the completer finished.
    const record = (await t.api.get(`/idempotency-keys/${key}`)).body;
    expect(record).toMatchObject({ phase: 'completed', createdAt: firstUsed });
    expect(Date.parse(record.expiresAt) - Date.parse(firstUsed)).toBe(86_400_000);
  });

  it('leaves alone a top-up that a request holds (its lease), and takes nothing twice', async () => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();
    const running = topUp(account, 'tok_slow', key).then((res) => res); // sent now
    // Poll until the request's phase (a) has committed its lease.
    for (let i = 0; i < 200 && !(await underWay(key))?.leased; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }

    expect(await t.app.get(TopUpCompleter).completeDue()).toBe(0);
    expect((await running).status).toBe(201);
    expect(await t.api.balance(account)).toBe(2_500);
  });
});

describe('concurrent duplicates', () => {
  it('charge and credit once when ten requests with one key arrive together; the others get 409', async () => {
    const account = await t.api.fundedAccount(0);
    const key = randomUUID();

    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        fetch(`${t.baseUrl}/accounts/${account}/top-ups`, {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${t.api.apiKey}`,
            'Content-Type': 'application/json',
            'Idempotency-Key': key,
          },
          body: JSON.stringify({ amount: 2_500, currency: 'USD', card: 'tok_slow' }),
        }).then(async (r) => ({
          status: r.status,
          replayed: r.headers.get('idempotent-replayed') === 'true',
          body: (await r.json()) as { type?: string; id?: string },
        })),
      ),
    );

    // One executes. The others arrive while it runs (409), or, on a slow machine (a
    // Citus cluster on two cores), one may arrive after it finished: that one is a
    // replay of the same top-up, which is as correct.
    const executed = results.filter((r) => r.status === 201 && !r.replayed);
    expect(executed).toHaveLength(1);
    const others = results.filter((r) => r !== executed[0]);
    const inUse = others.filter(
      (r) => r.status === 409 && r.body.type === '/problems/idempotency-key-in-use',
    );
    const replays = others.filter((r) => r.status === 201 && r.replayed);
    expect(inUse.length + replays.length).toBe(others.length);
    expect(inUse.length).toBeGreaterThan(0);
    expect(replays.every((r) => r.body.id === executed[0].body.id)).toBe(true);
    expect(await t.api.balance(account)).toBe(2_500);
    const { rows } = await t.db.query('SELECT id FROM top_ups WHERE account_id = $1', [account]);
    expect(rows).toHaveLength(1);
    expect(await paymentsFor(rows[0].id)).toHaveLength(1);
  });
});

describe('compensation', () => {
  it('refunds the card when the account closed while the processor was charging it', async () => {
    const account = await t.api.createAccount();
    const key = randomUUID();
    const running = topUp(account, 'tok_slow', key).then((res) => res); // sent now
    for (let i = 0; i < 200; i++) {
      const { rows } = await t.db.query(`SELECT 1 FROM top_ups WHERE account_id = $1`, [account]);
      if (rows.length) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await t.api.delete(`/accounts/${account}`)).status).toBe(204); // still empty

    const refused = await running;

    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      type: '/problems/account-closed',
      topUpId: expect.any(String),
    });
    expect(await statusOf(refused.body.topUpId)).toBe('failed');
    expect(await underWay(key)).toBeUndefined();
    expect(await paymentsFor(refused.body.topUpId)).toEqual([{ amount: 2_500, refunded: 2_500 }]);
    expect((await topUp(account, 'tok_slow', key)).headers['idempotent-replayed']).toBe('true');
  });
});

describe('reconciliation (npm run audit)', () => {
  const rules = async () => (await reconciled()).map((v) => v.rule);

  it('names a processor payment that has no top-up here', async () => {
    const res = await fetch(`${processor.url}/payments`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${PROCESSOR_API_KEY}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': 'tu_made_elsewhere',
      },
      body: JSON.stringify({ amount: 10, currency: 'USD', card: 'tok_visa' }),
    });
    expect(res.status).toBe(201);
    try {
      expect(await rules()).toEqual([RECONCILIATION_RULES.knownHere]);
    } finally {
      await processor.db.query(`DELETE FROM payments WHERE idempotency_key = 'tu_made_elsewhere'`);
    }
  });

  it('names money kept there but not credited here, and a top-up whose payment is not there', async () => {
    const account = await t.api.fundedAccount(0);
    const done = await topUp(account, 'tok_visa', randomUUID());
    const payment = done.body.processorPaymentId as string;
    await processor.db.query('UPDATE payments SET amount_refunded = amount WHERE id = $1', [
      payment,
    ]);
    try {
      expect(await rules()).toEqual([RECONCILIATION_RULES.keptOnlyIfCredited]);
      await t.db.query(`UPDATE top_ups SET processor_payment_id = 'pay_ghost' WHERE id = $1`, [
        done.body.id,
      ]);
      expect(await rules()).toContain(RECONCILIATION_RULES.knownThere);
    } finally {
      await processor.db.query('UPDATE payments SET amount_refunded = 0 WHERE id = $1', [payment]);
      await t.db.query('UPDATE top_ups SET processor_payment_id = $2 WHERE id = $1', [
        done.body.id,
        payment,
      ]);
    }
  });

  it('names a card charge refunded in part at the processor: kept there is less than credited here', async () => {
    const account = await t.api.fundedAccount(0);
    const done = await topUp(account, 'tok_visa', randomUUID());
    const payment = done.body.processorPaymentId as string;
    // Someone refunds 40 of it through the processor's own API, not through ours.
    const refund = await fetch(`${processor.url}/payments/${payment}/refunds`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${PROCESSOR_API_KEY}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': `partial-${payment}`,
      },
      body: JSON.stringify({ amount: 40 }),
    });
    expect(refund.status).toBe(201);
    try {
      const violations = await reconciled();
      expect(violations).toEqual([
        expect.objectContaining({ rule: RECONCILIATION_RULES.keptOnlyIfCredited, id: payment }),
      ]);
      expect(violations[0].detail).toContain(`${done.body.amount - 40} kept (40 refunded) there`);
    } finally {
      await processor.db.query('DELETE FROM refunds WHERE payment_id = $1', [payment]);
      await processor.db.query('UPDATE payments SET amount_refunded = 0 WHERE id = $1', [payment]);
    }
  });

  it('npm run audit reconciles with the processor of PROCESSOR_URL', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['dist/audit/audit.cli.js'], {
      cwd: projectRoot,
      env: childEnv({ DATABASE_URL: t.databaseUrl, PROCESSOR_URL: processor.url }),
    });
    expect(stdout).toMatch(/^OK: all \d+ checks hold/m);
    expect(stdout).not.toContain('not reconciled');
  });
});
