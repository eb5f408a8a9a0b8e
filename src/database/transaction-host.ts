import { Inject, Injectable, Optional } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg';
import type { ConnectionSettings } from '../config/config.js';
import { beginStatement, DIRECT } from './connection.js';
import { socketOf } from './pg-internals.js';

/** The injection token of the pool (node-postgres) that the transactions take connections from. */
export const PG_POOL = Symbol('PgPool');
/** The injection token of the pool's ConnectionSettings. */
export const CONNECTION_SETTINGS = Symbol('ConnectionSettings');

interface OpenTransaction {
  /** Its connection, taken from the pool when its first statement is sent (connect()). */
  client?: PoolClient;
  connecting?: Promise<PoolClient>;
  /** Whether BEGIN has been sent and the transaction not yet ended. */
  open: boolean;
  /** Statements to send right after BEGIN, ahead of the work's own (see atBegin). */
  atBegin: QueryConfig[];
  /** The first of them to fail, once answered: the error run() throws. */
  openingError?: unknown;
  /** Statements to send with COMMIT, without waiting between them (see atCommit). */
  atCommit: QueryConfig[];
  /** What to do once COMMIT has succeeded (see afterCommit). */
  afterCommit: Array<() => void>;
  /** Date.now() before BEGIN was sent: no later than the transaction's now(). */
  startedAt: number;
}

/**
 * Carries the request's transaction through async context, so services never pass
 * a connection by hand and cannot escape the transaction by accident: every
 * query made through this host inside run() uses run()'s connection.
 *
 * It also decides how the statements travel, because on the money paths every
 * round trip costs (decisions 0007, 0009, 0015). The pool's connections pipeline
 * (`pipeline: true`, connection.ts): a statement is sent at once, without waiting
 * for the answer to the one before, and PostgreSQL answers them in order. So:
 *
 * - BEGIN is sent with the transaction's first statement, and a transaction that
 *   ran no statement sends nothing at all;
 * - statements queued with atBegin() go right behind BEGIN, in that same round
 *   trip: the claim of an idempotency key travels with the handler's first
 *   statement. Nobody waits for its answer, and nobody needs to: if it fails,
 *   PostgreSQL refuses every statement sent behind it (the transaction is
 *   aborted), and run() throws the claim's error, not the refusals';
 * - statements queued with atCommit() go with COMMIT, in one round trip: the
 *   records whose answers nobody needs, and the stored response.
 *
 * A fresh charge is thus two round trips: BEGIN, the claim and the debit; then
 * the records, the stored response and COMMIT.
 *
 * (@nestjs-cls/transactional does the first job; its nestjs-cls dependency is
 * CommonJS that require()s NestJS 12's ES modules, which Jest cannot load on
 * Node 20. This file is the part of it this service needs.)
 */
@Injectable()
export class TransactionHost {
  private readonly storage = new AsyncLocalStorage<OpenTransaction>();
  private readonly begin: string;
  private readonly prepared: (text: string, values: unknown[]) => QueryConfig;

  constructor(
    @Inject(PG_POOL) private readonly pool: Pool,
    @Optional() @Inject(CONNECTION_SETTINGS) connection: ConnectionSettings = DIRECT,
  ) {
    this.begin = beginStatement(connection);
    this.prepared = connection.preparedStatements === 'named' ? named : unnamed;
  }

  /**
   * Runs `work` in one transaction: commit when it resolves, roll back when it
   * throws. The connection is taken from the pool only when the first statement is
   * sent, so what the work does before (validating a body, resolving a name) holds
   * none.
   */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.storage.getStore()) return work(); // already inside: join it
    const transaction: OpenTransaction = {
      open: false,
      atBegin: [],
      atCommit: [],
      afterCommit: [],
      startedAt: Date.now(),
    };
    try {
      const result = await this.storage.run(transaction, work);
      await this.commit(transaction);
      transaction.client?.release();
      for (const action of transaction.afterCommit) action();
      return result;
    } catch (error) {
      await this.rollback(transaction);
      throw transaction.openingError ?? error;
    } finally {
      transaction.client?.removeListener('error', ignore);
    }
  }

  /**
   * Queues a statement to be sent right after BEGIN, ahead of the work's first
   * statement and in the same round trip, without waiting for its answer (the
   * claim of an idempotency key). When it fails, PostgreSQL refuses everything
   * behind it, and run() throws this statement's error. Only before the
   * transaction's first statement: it guards all of them.
   */
  atBegin(sql: string, params: unknown[] = []): void {
    const transaction = this.storage.getStore();
    if (!transaction) throw new Error('atBegin() needs a transaction');
    if (transaction.open) throw new Error('atBegin() after the first statement');
    transaction.atBegin.push(this.prepared(sql, params));
  }

  /**
   * Queues a statement to be sent with COMMIT, right before it and without waiting
   * in between: one round trip for all of them. When one fails, PostgreSQL turns
   * the COMMIT behind it into a ROLLBACK, and run() throws that statement's error.
   */
  atCommit(sql: string, params: unknown[] = []): void {
    const transaction = this.storage.getStore();
    if (!transaction) throw new Error('atCommit() needs a transaction');
    transaction.atCommit.push(this.prepared(sql, params));
  }

  /** Runs `action` once the current transaction has committed; never if it rolls back. */
  afterCommit(action: () => void): void {
    const transaction = this.storage.getStore();
    if (!transaction) throw new Error('afterCommit() needs a transaction');
    transaction.afterCommit.push(action);
  }

  /** When the current transaction started, in epoch ms: no later than its now() in SQL. */
  get startedAt(): number {
    const transaction = this.storage.getStore();
    if (!transaction) throw new Error('startedAt needs a transaction');
    return transaction.startedAt;
  }

  get inTransaction(): boolean {
    return this.storage.getStore() !== undefined;
  }

  /**
   * Runs SQL in the current transaction (or on the pool outside one) and returns
   * its rows. The statement is sent at once: two queries started without awaiting
   * the first travel together and are answered in order, and if the first fails,
   * the transaction is aborted and PostgreSQL refuses the second.
   */
  async query<T extends QueryResultRow = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<T[]> {
    const transaction = this.storage.getStore();
    const statement = this.prepared(sql, params);
    if (!transaction) return (await this.pool.query<T>(statement)).rows;
    const client = transaction.client ?? (await this.connect(transaction));
    sendTogether(client);
    if (transaction.open) return (await client.query<T>(statement)).rows;
    transaction.open = true;
    const opening = [{ text: this.begin }, ...transaction.atBegin].map((s) => client.query(s));
    const result = client.query<T>(statement);
    // Answered first, in the same round trip: a failure here is the one to report.
    try {
      await Promise.all(opening);
    } catch (error) {
      transaction.openingError = error;
      result.catch(ignore); // refused behind it
      throw error;
    }
    return (await result).rows;
  }

  private async commit(transaction: OpenTransaction): Promise<void> {
    const statements = [...transaction.atCommit, { text: 'COMMIT' }];
    if (!transaction.open) {
      if (statements.length === 1 && transaction.atBegin.length === 0) return; // nothing to end
      statements.unshift({ text: this.begin }, ...transaction.atBegin);
      transaction.open = true;
    }
    const client = transaction.client ?? (await this.connect(transaction));
    sendTogether(client);
    const results = await Promise.allSettled(statements.map((s) => client.query(s)));
    // COMMIT answered: the transaction is over, committed, or rolled back when a
    // statement before it failed (PostgreSQL ends an aborted transaction that way).
    if (results[results.length - 1].status === 'fulfilled') transaction.open = false;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The transaction's connection, from the pool; statements started together share the wait. */
  private connect(transaction: OpenTransaction): Promise<PoolClient> {
    transaction.connecting ??= this.pool.connect().then((client) => {
      // A connection that breaks while checked out emits 'error'; the failed query
      // reports it, so the event itself needs a listener only so it cannot crash us.
      client.on('error', ignore);
      transaction.client = client;
      return client;
    });
    return transaction.connecting;
  }

  /** Rolls back if need be and returns the connection; one that cannot even roll back is closed. */
  private async rollback({ client, open }: OpenTransaction): Promise<void> {
    if (!client) return;
    if (!open) return client.release();
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (error) {
      client.release(error as Error);
    }
  }
}

const statementNames = new Map<string, string>();

/**
 * A statement with parameters as a named prepared statement: node-postgres
 * prepares it once per connection, and PostgreSQL then skips parsing and
 * (after a few runs, with a generic plan) planning. The name is derived from the
 * text, so the same SQL always has the same name.
 */
function named(text: string, values: unknown[]): QueryConfig {
  if (values.length === 0) return { text };
  let name = statementNames.get(text);
  if (!name) {
    name = `s${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

/**
 * The same statement as the protocol's unnamed statement, parsed and planned on
 * every run. node-postgres remembers which names it prepared on its connection;
 * behind a pooler that does not track them, that connection is not the server's,
 * and a named statement fails with "prepared statement ... does not exist" (or
 * "already exists"). The unnamed one is always sent whole.
 */
function unnamed(text: string, values: unknown[]): QueryConfig {
  return values.length === 0 ? { text } : { text, values };
}

/**
 * Holds the statements sent on this connection until the event loop's current turn
 * is over, then writes them to the socket at once: one system call and one TCP
 * segment instead of one per statement (BEGIN, the claim and the debit; or the statements queued for COMMIT and COMMIT). It cut the API's system
 * CPU per fresh charge by about a third (decision 0015). PostgreSQL answers them
 * in order as before; only the writes are merged. node-postgres corks the socket
 * around each statement itself, and corks nest: its uncork leaves ours in place.
 */
function sendTogether(client: PoolClient): void {
  const socket = socketOf(client);
  if (!socket || socket.writableCorked > 0) return; // not a socket, or already held
  socket.cork();
  setImmediate(() => socket.uncork());
}

function ignore(): void {}
