import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { DataSource, type EntityTarget, type ObjectLiteral, type Repository } from 'typeorm';

interface OpenTransaction {
  client: PoolClient;
  /** Whether BEGIN has been sent: it goes out with the first statement. */
  begun: boolean;
}

/**
 * Carries the request's transaction through async context, so services never pass
 * a connection by hand and cannot escape the transaction by accident: every
 * query made through this host inside run() uses run()'s connection.
 *
 * It talks to node-postgres directly (TypeORM's pool, not its query runner)
 * because on the money paths every round trip counts: BEGIN is not sent on its
 * own but with the transaction's first statement when that statement has no
 * parameters (the simple query protocol takes several statements in one message,
 * but no parameters), and a transaction that ran no statement sends nothing.
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
    const transaction: OpenTransaction = { client, begun: false };
    let result: T;
    try {
      result = await this.storage.run(transaction, work);
    } catch (error) {
      await this.end(transaction, 'ROLLBACK').catch(ignore); // the work's error is the one to report
      throw error;
    }
    await this.end(transaction, 'COMMIT');
    return result;
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
    if (!transaction) return (await this.pool.query<T>(sql, params)).rows;
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
    return (await client.query<T>(sql, params)).rows;
  }

  /** Ends the transaction and returns the connection; a connection that failed to end is closed. */
  private async end({ client, begun }: OpenTransaction, command: 'COMMIT' | 'ROLLBACK') {
    try {
      if (begun) await client.query(command);
    } catch (error) {
      client.removeListener('error', ignore);
      client.release(error as Error);
      throw error;
    }
    client.removeListener('error', ignore);
    client.release();
  }

  private get pool(): Pool {
    return (this.dataSource.driver as unknown as { master: Pool }).master;
  }
}

function ignore(): void {}
