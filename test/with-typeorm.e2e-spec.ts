import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DataSource } from 'typeorm';
import {
  Account,
  chargeOnce,
  ChargeOnceTables1700000000000,
  IdempotencyKey,
} from '../examples/with-typeorm/charge-once.js';
import { readmeBlock } from './support/readme.js';
import { createTestDatabase, type TestDatabase, testPool } from './support/databases.js';

/**
 * docs/with-typeorm.md: the lesson written with TypeORM's own API, small enough to
 * copy into a NestJS + TypeORM app, proven as the service is: on a real PostgreSQL,
 * in a database of its own with only its two tables.
 */
let database: TestDatabase;
let dataSource: DataSource;

beforeAll(async () => {
  database = await createTestDatabase({ migrated: false });
  dataSource = await new DataSource({
    type: 'postgres',
    url: database.url,
    entities: [Account, IdempotencyKey],
    migrations: [ChargeOnceTables1700000000000],
    poolSize: 12,
  }).initialize();
  await dataSource.runMigrations();
});

afterAll(async () => {
  await dataSource?.destroy();
  await database?.drop();
});

async function account(balance: number): Promise<string> {
  const id = `acct_${Math.random().toString(36).slice(2)}`;
  await dataSource.getRepository(Account).insert({ id, balance });
  return id;
}

const balance = async (id: string) =>
  (await dataSource.getRepository(Account).findOneByOrFail({ id })).balance;
const keyRow = (key: string) => dataSource.getRepository(IdempotencyKey).findOneBy({ key });

describe('the lesson with TypeORM (examples/with-typeorm)', () => {
  it('is printed in docs/with-typeorm.md as it is in the file the tests run', () => {
    const file = readFileSync(path.resolve('examples/with-typeorm/charge-once.ts'), 'utf8');
    expect(readmeBlock('with-typeorm', 'ts', 'docs/with-typeorm.md')).toBe(file);
  });

  it('replays a retry after a lost response: the same answer, one debit', async () => {
    const id = await account(10_000);
    const first = await chargeOnce(dataSource, 'lost-1', { accountId: id, amount: 2_500 });
    // The response is lost on the way back; the client retries with the same key.
    const retry = await chargeOnce(dataSource, 'lost-1', { accountId: id, amount: 2_500 });

    expect(first).toEqual({ status: 201, body: { charged: 2_500 }, replayed: false });
    expect(retry).toEqual({ status: 201, body: { charged: 2_500 }, replayed: true });
    expect(await balance(id)).toBe(7_500);
  });

  it('executes concurrent duplicates once: the others wait for it, then replay', async () => {
    const id = await account(10_000);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        chargeOnce(dataSource, 'together-1', { accountId: id, amount: 1_000 }),
      ),
    );

    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    expect(answers.every((a) => a.status === 201)).toBe(true);
    expect(await balance(id)).toBe(9_000);
  });

  it('remembers a refusal as it remembers a success, and refuses the key for another request', async () => {
    const id = await account(100);
    const refused = await chargeOnce(dataSource, 'poor-1', { accountId: id, amount: 500 });
    await dataSource.getRepository(Account).update({ id }, { balance: 1_000 }); // money arrives
    const retry = await chargeOnce(dataSource, 'poor-1', { accountId: id, amount: 500 });
    const other = await chargeOnce(dataSource, 'poor-1', { accountId: id, amount: 600 });

    expect(refused).toMatchObject({ status: 402, replayed: false });
    expect(retry).toMatchObject({ status: 402, replayed: true });
    expect(other).toMatchObject({ status: 422 });
    expect(await balance(id)).toBe(1_000);
  });

  it('leaves nothing behind when the connection dies mid-transaction, and the retry executes once', async () => {
    const id = await account(10_000);
    const sql = testPool(database.url, 2);
    const gate = await sql.connect();
    try {
      // Hold the transaction between its debit and its stored response: the UPDATE of
      // the key waits on a lock the test holds. Then kill its connection, as a crash
      // of the process or of the network would.
      await sql.query(`CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$`);
      await sql.query(`CREATE TRIGGER hold BEFORE UPDATE ON idempotency_keys
        FOR EACH ROW EXECUTE FUNCTION hold()`);
      await gate.query('BEGIN');
      await gate.query('SELECT pg_advisory_xact_lock(4242)');
      const crashed = chargeOnce(dataSource, 'crash-1', { accountId: id, amount: 2_500 }).then(
        () => 'committed',
        () => 'connection lost',
      );
      let waiting: number | undefined;
      while (waiting === undefined) {
        const { rows } = await sql.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event = 'advisory' AND pid <> $1`,
          [(await gate.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid],
        );
        waiting = rows[0]?.pid;
      }
      await sql.query('SELECT pg_terminate_backend($1)', [waiting]);
      expect(await crashed).toBe('connection lost');
      await gate.query('ROLLBACK');
      await sql.query('DROP TRIGGER hold ON idempotency_keys');

      expect(await balance(id)).toBe(10_000); // the debit was undone with the rest
      expect(await keyRow('crash-1')).toBeNull(); // and the key is free

      const retry = await chargeOnce(dataSource, 'crash-1', { accountId: id, amount: 2_500 });
      expect(retry).toEqual({ status: 201, body: { charged: 2_500 }, replayed: false });
      expect(await balance(id)).toBe(7_500);
    } finally {
      gate.release();
      await sql.end();
    }
  });
});
