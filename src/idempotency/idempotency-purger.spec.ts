import { beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config.js';
import { IdempotencyPurger } from './idempotency-purger.js';
import type { IdempotencyService } from './idempotency.service.js';

/** A key store whose batch delete fails `failures` times, then deletes `rows` rows. */
function flakyKeys(failures: number, rows: number) {
  const calls: string[] = [];
  const keys = {
    deleteExpired: async (batchSize: number) => {
      calls.push('delete');
      if (failures-- > 0) throw new Error('connection terminated');
      const batch = Math.min(rows, batchSize);
      rows -= batch;
      return batch;
    },
  };
  return { calls, remaining: async () => rows, keys: keys as unknown as IdempotencyService };
}

const config = { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: 60 } as AppConfig;

describe('IdempotencyPurger', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('keeps going after a failed pass: the next pass purges', async () => {
    const db = flakyKeys(1, 3);
    const purger = new IdempotencyPurger(db.keys, config);

    await expect(purger.runPass()).resolves.toBeUndefined();
    expect(await db.remaining()).toBe(3);
    await purger.runPass();

    expect(db.calls).toHaveLength(2); // the failure, then one batch that took all 3
    expect(await db.remaining()).toBe(0);
  });

  it('deletes batch after batch until a batch comes back short', async () => {
    const db = flakyKeys(0, 5);
    expect(await new IdempotencyPurger(db.keys, config).purgeExpired(2)).toBe(5);
    expect(db.calls).toHaveLength(3);
  });
});
