import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Socket } from 'node:net';
import type pg from 'pg';
import { connectionSettings, loadConfig } from '../src/config/config.js';
import { createPool } from '../src/database/connection.js';
import { socketOf } from '../src/database/pg-internals.js';
import { TransactionHost } from '../src/database/transaction-host.js';
import { connectionEnv, useTestDatabase } from './support/databases.js';

/**
 * What the service relies on in node-postgres past its documented API, all of it
 * in src/database/pg-internals.ts, against a real server. If a driver upgrade moves
 * it, these fail by name: the service would still be correct, but each statement
 * would go out in a write of its own (decision 0015's system CPU, lost quietly).
 */
const db = useTestDatabase();
let pool: pg.Pool;

beforeAll(() => {
  const settings = connectionSettings(loadConfig({ ...connectionEnv() }));
  pool = createPool(db.url, 1, settings);
});
afterAll(() => pool.end());

/** Counts the writes a socket makes to the kernel while `work` runs. */
async function writesDuring(socket: Socket, work: () => Promise<unknown>) {
  const counted = socket as unknown as Record<'_write' | '_writev', (...args: unknown[]) => void>;
  const calls = { write: 0, writev: 0 };
  const original = { write: counted._write, writev: counted._writev };
  counted._write = function (...args) {
    calls.write += 1;
    return original.write.apply(this, args);
  };
  counted._writev = function (...args) {
    calls.writev += 1;
    return original.writev.apply(this, args);
  };
  try {
    await work();
  } finally {
    counted._write = original.write;
    counted._writev = original.writev;
  }
  return calls;
}

describe("node-postgres's internals (src/database/pg-internals.ts)", () => {
  it("finds a pooled connection's socket, through which its statements go", async () => {
    const client = await pool.connect();
    try {
      const socket = socketOf(client);
      expect(socket).toBeInstanceOf(Socket);
      const calls = await writesDuring(socket!, () => client.query('SELECT 1'));
      expect(calls.write + calls.writev).toBeGreaterThan(0);
    } finally {
      client.release();
    }
  });

  it('sends what one turn of the event loop queues in a single write: BEGIN, the guard, two statements', async () => {
    const tx = new TransactionHost(pool);
    const client = await pool.connect();
    const socket = socketOf(client)!;
    client.release(); // the pool's one connection: the transaction below gets this one

    const calls = await writesDuring(socket, () =>
      tx.run(async () => {
        tx.atBegin('SELECT $1::int AS guard', [1]);
        await Promise.all([tx.query('SELECT $1::int', [2]), tx.query('SELECT $1::int', [3])]);
      }),
    );

    // One write per round trip: the first, and COMMIT. (Each statement alone
    // would be a write of its own: five.)
    expect(calls.write + calls.writev).toBe(2);
    expect(calls.writev).toBeGreaterThanOrEqual(1);
  });
});
