import { beforeEach, describe, expect, it } from '@jest/globals';
import type { Pool, QueryConfig } from 'pg';
import { TransactionHost } from './transaction-host.js';

/**
 * What TransactionHost sends, and in which round trips. A fake connection stands
 * in for node-postgres in pipeline mode: every statement written before the fake
 * answers belongs to one round trip, and it answers on the next turn of the event
 * loop. Like PostgreSQL, once a statement fails the transaction is aborted: the
 * statements after it are refused, and COMMIT then ends it as a ROLLBACK.
 *
 * What PostgreSQL itself does with these statements (atomicity, locks) is proven
 * by the e2e tests against a real server; this is the client's half.
 */
class FakeConnection {
  /** Every statement sent, grouped by round trip. */
  readonly roundTrips: string[][] = [];
  /** The name of every statement sent with parameters, by text, in the order sent. */
  readonly names: Array<[string, string | undefined]> = [];
  released?: { destroyed: boolean };
  /** Statements (by their text) that fail when they are run. */
  failing = new Set<string>();
  /** The connection itself is broken: even ROLLBACK fails. */
  broken = false;
  private batch?: Array<() => void>;
  private aborted = false;

  query(statement: QueryConfig | string): Promise<{ rows: unknown[] }> {
    const text = typeof statement === 'string' ? statement : statement.text;
    if (typeof statement !== 'string' && statement.values) this.names.push([text, statement.name]);
    if (!this.batch) {
      this.batch = [];
      this.roundTrips.push([]);
      setImmediate(() => {
        const answers = this.batch!;
        this.batch = undefined;
        for (const answer of answers) answer();
      });
    }
    this.roundTrips[this.roundTrips.length - 1].push(text);
    return new Promise((resolve, reject) => {
      this.batch!.push(() => {
        const outcome = this.run(text);
        if (outcome instanceof Error) reject(outcome);
        else resolve({ rows: [{ text }] });
      });
    });
  }

  private run(text: string): Error | undefined {
    if (this.broken) return new Error('Connection terminated');
    if (text === 'BEGIN') this.aborted = false;
    if (text === 'COMMIT' || text === 'ROLLBACK') {
      this.aborted = false; // an aborted transaction's COMMIT is its ROLLBACK
      return undefined;
    }
    if (this.aborted) return new Error('current transaction is aborted');
    if (this.failing.has(text)) {
      this.aborted = true;
      return Object.assign(new Error(`${text} failed`), { code: '23505' });
    }
    return undefined;
  }

  release(error?: Error): void {
    this.released = { destroyed: error !== undefined };
  }

  on(): this {
    return this;
  }

  removeListener(): this {
    return this;
  }
}

class FakePool {
  readonly connection = new FakeConnection();
  /** Statements run on the pool, outside any transaction. */
  readonly outside: string[] = [];
  /** How often a connection was taken from the pool. */
  taken = 0;

  async connect(): Promise<FakeConnection> {
    this.taken += 1;
    return this.connection;
  }

  async query(statement: QueryConfig): Promise<{ rows: unknown[] }> {
    this.outside.push(statement.text);
    return { rows: [] };
  }
}

let pool: FakePool;
let connection: FakeConnection;
let tx: TransactionHost;

beforeEach(() => {
  pool = new FakePool();
  connection = pool.connection;
  tx = new TransactionHost(pool as unknown as Pool);
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: Error) => error,
  );
}

describe('TransactionHost', () => {
  describe('commit', () => {
    it('sends BEGIN with the first statement and COMMIT alone after the last', async () => {
      await tx.run(async () => {
        await tx.query('SELECT 1');
        await tx.query('SELECT 2');
      });

      expect(connection.roundTrips).toEqual([['BEGIN', 'SELECT 1'], ['SELECT 2'], ['COMMIT']]);
      expect(connection.released).toEqual({ destroyed: false });
    });

    it('sends the atCommit statements with COMMIT, in the order they were queued', async () => {
      await tx.run(async () => {
        await tx.query('SELECT 1');
        tx.atCommit('INSERT a', [1]);
        tx.atCommit('INSERT b', [2]);
      });

      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT 1'],
        ['INSERT a', 'INSERT b', 'COMMIT'],
      ]);
    });

    it('sends statements started without awaiting in one round trip, in the order started', async () => {
      await tx.run(async () => {
        await Promise.all([tx.query('SELECT 1'), tx.query('SELECT 2')]);
        await tx.query('SELECT 3');
      });

      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT 1', 'SELECT 2'],
        ['SELECT 3'],
        ['COMMIT'],
      ]);
    });

    it('wraps atCommit statements in BEGIN and COMMIT when nothing was sent before', async () => {
      await tx.run(async () => tx.atCommit('INSERT a', [1]));

      expect(connection.roundTrips).toEqual([['BEGIN', 'INSERT a', 'COMMIT']]);
    });

    it('sends nothing, and takes no connection, for a transaction that ran no statement', async () => {
      expect(await tx.run(async () => 'done')).toBe('done');

      expect(connection.roundTrips).toEqual([]);
      expect(pool.taken).toBe(0);
    });

    it('takes its connection from the pool only when its first statement goes out', async () => {
      const taken: number[] = [];
      await tx.run(async () => {
        await new Promise((resolve) => setImmediate(resolve)); // work before any statement
        taken.push(pool.taken);
        await Promise.all([tx.query('SELECT 1'), tx.query('SELECT 2')]);
        taken.push(pool.taken);
      });

      expect(taken).toEqual([0, 1]);
      expect(connection.roundTrips).toEqual([['BEGIN', 'SELECT 1', 'SELECT 2'], ['COMMIT']]);
      expect(connection.released).toEqual({ destroyed: false });
    });

    it('joins the transaction already open instead of opening another', async () => {
      await tx.run(async () => {
        await tx.query('SELECT 1');
        await tx.run(() => tx.query('SELECT 2'));
      });

      expect(connection.roundTrips).toEqual([['BEGIN', 'SELECT 1'], ['SELECT 2'], ['COMMIT']]);
    });
  });

  describe('rollback', () => {
    it('sends ROLLBACK when the work throws after a statement, and rethrows', async () => {
      const bug = new Error('bug');
      const error = await rejection(
        tx.run(async () => {
          await tx.query('SELECT 1');
          tx.atCommit('INSERT a', [1]);
          throw bug;
        }),
      );

      expect(error).toBe(bug);
      expect(connection.roundTrips).toEqual([['BEGIN', 'SELECT 1'], ['ROLLBACK']]);
      expect(connection.released).toEqual({ destroyed: false });
    });

    it('sends nothing, and takes no connection, when the work throws before any statement', async () => {
      const bug = new Error('bug');
      expect(await rejection(tx.run(() => Promise.reject(bug)))).toBe(bug);

      expect(connection.roundTrips).toEqual([]);
      expect(pool.taken).toBe(0);
    });

    it('rolls back when a statement fails, and refuses the ones sent behind it', async () => {
      connection.failing.add('SELECT 1');
      const answers: string[] = [];
      const error = await rejection(
        tx.run(async () => {
          const first = tx.query('SELECT 1').then(
            () => 'answered',
            () => 'refused',
          );
          const second = tx.query('SELECT 2').then(
            () => 'answered',
            () => 'refused',
          );
          answers.push(await first, await second);
          await tx.query('SELECT 3');
        }),
      );

      expect(answers).toEqual(['refused', 'refused']);
      expect(error.message).toBe('current transaction is aborted');
      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT 1', 'SELECT 2'],
        ['SELECT 3'],
        ['ROLLBACK'],
      ]);
    });

    it('throws the error of a failed atCommit statement, whose COMMIT ended the transaction: no ROLLBACK follows', async () => {
      connection.failing.add('INSERT a');
      const error = await rejection(
        tx.run(async () => {
          await tx.query('SELECT 1');
          tx.atCommit('INSERT a', [1]);
          tx.atCommit('INSERT b', [2]);
        }),
      );

      expect(error.message).toBe('INSERT a failed');
      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT 1'],
        ['INSERT a', 'INSERT b', 'COMMIT'],
      ]);
      expect(connection.released).toEqual({ destroyed: false });
    });

    it('destroys a connection that cannot even roll back', async () => {
      const error = await rejection(
        tx.run(async () => {
          await tx.query('SELECT 1');
          connection.broken = true;
          await tx.query('SELECT 2');
        }),
      );

      expect(error.message).toBe('Connection terminated');
      expect(connection.roundTrips).toEqual([['BEGIN', 'SELECT 1'], ['SELECT 2'], ['ROLLBACK']]);
      expect(connection.released).toEqual({ destroyed: true });
    });
  });

  describe('atBegin: a guard that travels with BEGIN', () => {
    it('sends it right behind BEGIN, with the first statement, without a round trip of its own', async () => {
      await tx.run(async () => {
        tx.atBegin('SELECT claim($1)', [1]);
        await tx.query('UPDATE debit');
        tx.atCommit('INSERT stored', [2]);
      });

      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT claim($1)', 'UPDATE debit'],
        ['INSERT stored', 'COMMIT'],
      ]);
    });

    it("throws the guard's error when it fails, not the refusals of the statements behind it", async () => {
      connection.failing.add('SELECT claim($1)');
      const answers: string[] = [];
      const error = await rejection(
        tx.run(async () => {
          tx.atBegin('SELECT claim($1)', [1]);
          const debit = tx.query('UPDATE debit').then(
            () => 'answered',
            (e: Error) => e.message,
          );
          answers.push(await debit);
          throw new Error('the work gave up');
        }),
      );

      expect(error.message).toBe('SELECT claim($1) failed');
      expect(answers).toEqual(['SELECT claim($1) failed']);
      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT claim($1)', 'UPDATE debit'],
        ['ROLLBACK'],
      ]);
    });

    it('goes with COMMIT when the work sent nothing else, and still decides the outcome', async () => {
      connection.failing.add('SELECT claim($1)');
      const error = await rejection(
        tx.run(async () => {
          tx.atBegin('SELECT claim($1)', [1]);
          tx.atCommit('INSERT stored', [2]);
        }),
      );

      expect(error.message).toBe('SELECT claim($1) failed');
      expect(connection.roundTrips).toEqual([
        ['BEGIN', 'SELECT claim($1)', 'INSERT stored', 'COMMIT'],
      ]);
    });

    it('is refused once the transaction has sent a statement: it must guard all of them', async () => {
      await expect(
        tx.run(async () => {
          await tx.query('SELECT 1');
          tx.atBegin('SELECT claim($1)', [1]);
        }),
      ).rejects.toThrow('atBegin() after the first statement');
    });
  });

  describe('outside a transaction', () => {
    it('runs a query on the pool, with no BEGIN', async () => {
      await tx.query('SELECT 1');

      expect(pool.outside).toEqual(['SELECT 1']);
      expect(connection.roundTrips).toEqual([]);
    });

    it('refuses atCommit, which has no COMMIT to travel with', () => {
      expect(() => tx.atCommit('INSERT a', [1])).toThrow('atCommit() needs a transaction');
    });
  });

  it('sends a statement with parameters as a prepared statement named after its text', async () => {
    await tx.run(async () => {
      await tx.query('SELECT $1::int', [1]);
      await tx.query('SELECT $1::int', [2]);
      await tx.query('SELECT $1::text', ['a']);
    });

    const [[, first], [, again], [, other]] = connection.names;
    expect(connection.names.map(([text]) => text)).toEqual([
      'SELECT $1::int',
      'SELECT $1::int',
      'SELECT $1::text',
    ]);
    expect(first).toMatch(/^s[0-9a-f]{16}$/);
    expect(again).toBe(first);
    expect(other).toMatch(/^s[0-9a-f]{16}$/);
    expect(other).not.toBe(first);
  });
});
