import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import pg, {
  type Pool,
  type PoolClient,
  type QueryConfig,
  type QueryResult,
  type QueryResultRow,
} from 'pg';
import { DataSource, type EntityTarget, type ObjectLiteral, type Repository } from 'typeorm';

interface OpenTransaction {
  client: PoolClient;
  /** Whether BEGIN has been sent: it goes out with the first statement. */
  begun: boolean;
  /** Statements to send with COMMIT, in the same message (see atCommit). */
  atCommit: string[];
}

/**
 * Carries the request's transaction through async context, so services never pass
 * a connection by hand and cannot escape the transaction by accident: every
 * query made through this host inside run() uses run()'s connection.
 *
 * It talks to node-postgres directly (TypeORM's pool, not its query runner)
 * because on the money paths every round trip counts. node-postgres waits for a
 * statement's answer before it sends the next, but PostgreSQL's simple query
 * protocol takes several statements in one message (without parameters), so:
 * BEGIN is sent with the transaction's first statement when that statement has
 * no parameters, statements queued with atCommit() are sent with COMMIT, and a
 * transaction that ran no statement sends nothing.
 *
 * (@nestjs-cls/transactional does the same job; its nestjs-cls dependency is
 * CommonJS that require()s NestJS 12's ES modules, which Jest cannot load on
 * Node 20. This file is the part of it this service needs.)
 */
@Injectable()
export class TransactionHost {
  private readonly storage = new AsyncLocalStorage<OpenTransaction>();

  constructor(private readonly dataSource: DataSource) {}

  /** Runs `work` in one transaction: commit when it resolves, roll back when it throws. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.storage.getStore()) return work(); // already inside: join it
    const client = await this.pool.connect();
    // A connection that breaks while checked out emits 'error'; the failed query
    // reports it, so the event itself needs a listener only so it cannot crash us.
    client.on('error', ignore);
    const transaction: OpenTransaction = { client, begun: false, atCommit: [] };
    try {
      const result = await this.storage.run(transaction, work);
      await this.commit(transaction);
      client.release();
      return result;
    } catch (error) {
      await this.rollback(transaction);
      throw error;
    } finally {
      client.removeListener('error', ignore);
    }
  }

  /**
   * Queues a statement without parameters to be sent in one message with COMMIT,
   * saving a round trip. When it fails, COMMIT does not run: the transaction rolls
   * back and run() throws the statement's error. Values in it must be numbers
   * computed by us or strings quoted with literal().
   */
  atCommit(sql: string): void {
    const transaction = this.storage.getStore();
    if (!transaction) throw new Error('atCommit() needs a transaction');
    transaction.atCommit.push(sql);
  }

  get inTransaction(): boolean {
    return this.storage.getStore() !== undefined;
  }

  /**
   * A TypeORM repository on the pool, for reads built with its query builder
   * (the lists). Writes go through query(), which joins the transaction.
   */
  repository<T extends ObjectLiteral>(entity: EntityTarget<T>): Repository<T> {
    if (this.inTransaction) throw new Error('inside a transaction, use query()');
    return this.dataSource.getRepository(entity);
  }

  /** Runs SQL in the current transaction (or on the pool outside one) and returns its rows. */
  async query<T extends QueryResultRow = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<T[]> {
    const transaction = this.storage.getStore();
    if (!transaction) return (await this.pool.query<T>(prepared(sql, params))).rows;
    const { client } = transaction;
    if (!transaction.begun) {
      transaction.begun = true;
      if (params.length === 0) {
        // One round trip for both; node-postgres answers a multi-statement query with one result each.
        const results = (await client.query(`BEGIN; ${sql}`)) as unknown as QueryResult<T>[];
        return results[results.length - 1].rows;
      }
      await client.query('BEGIN');
    }
    return (await client.query<T>(prepared(sql, params))).rows;
  }

  private async commit(transaction: OpenTransaction): Promise<void> {
    const statements = [...transaction.atCommit, 'COMMIT'];
    if (!transaction.begun) {
      if (statements.length === 1) return; // nothing was sent: nothing to end
      statements.unshift('BEGIN');
      transaction.begun = true;
    }
    await transaction.client.query(statements.join('; '));
  }

  /** Rolls back and returns the connection; one that cannot even roll back is closed. */
  private async rollback({ client, begun }: OpenTransaction): Promise<void> {
    if (!begun) return client.release();
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (error) {
      client.release(error as Error);
    }
  }

  private get pool(): Pool {
    return (this.dataSource.driver as unknown as { master: Pool }).master;
  }
}

const statementNames = new Map<string, string>();

/**
 * A statement with parameters as a named prepared statement: node-postgres
 * prepares it once per connection, and PostgreSQL then skips parsing and
 * (after a few runs, with a generic plan) planning. The name is derived from the
 * text, so the same SQL always has the same name.
 */
function prepared(text: string, values: unknown[]): QueryConfig {
  if (values.length === 0) return { text };
  let name = statementNames.get(text);
  if (!name) {
    name = `s${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

/**
 * A string as an SQL literal, for statements sent without parameters (atCommit):
 * quotes doubled, and backslashes doubled in an E'' string, as libpq's
 * PQescapeLiteral does. null becomes NULL.
 */
export function literal(value: string | null): string {
  return value === null ? 'NULL' : pg.escapeLiteral(value);
}

function ignore(): void {}
