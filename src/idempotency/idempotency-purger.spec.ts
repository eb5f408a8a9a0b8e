import { beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config.js';
import type { TransactionHost } from '../database/transaction-host.js';
import { IdempotencyPurger } from './idempotency-purger.js';

/** A database whose DELETE fails `failures` times, then deletes `rows` rows. */
function flakyDatabase(failures: number, rows: number) {
  const calls: string[] = [];
  const tx = {
    query: async (_sql: string, [batchSize]: [number]) => {
      calls.push('delete');
      if (failures-- > 0) throw new Error('connection terminated');
      const batch = Math.min(rows, batchSize);
      rows -= batch;
      return Array.from({ length: batch }, () => ({}));
    },
  };
  return { calls, remaining: async () => rows, tx: tx as unknown as TransactionHost };
}

const config = { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: 60 } as AppConfig;

describe('IdempotencyPurger', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('keeps going after a failed pass: the next pass purges', async () => {
    const db = flakyDatabase(1, 3);
    const purger = new IdempotencyPurger(db.tx, config);

    await expect(purger.runPass()).resolves.toBeUndefined();
    expect(await db.remaining()).toBe(3);
    await purger.runPass();

    expect(db.calls).toHaveLength(2); // the failure, then one batch that took all 3
    expect(await db.remaining()).toBe(0);
  });

  it('deletes batch after batch until a batch comes back short', async () => {
    const db = flakyDatabase(0, 5);
    expect(await new IdempotencyPurger(db.tx, config).purgeExpired(2)).toBe(5);
    expect(db.calls).toHaveLength(3);
  });
});
