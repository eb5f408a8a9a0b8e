import type { CompletedRequest } from './completed-responses.js';
import { requestFingerprint } from './fingerprint.js';
import type { KeyedRequest, Refusal } from './idempotency.service.js';
import type { RecordedResponse } from './recorded-response.js';

/**
 * In-memory stand-ins for the key store and the transaction host, for the
 * interceptor's unit test (idempotency.interceptor.spec.ts). They decide what the
 * interceptor is told, the way PostgreSQL would; what PostgreSQL itself decides
 * (locks, the unique key, atomic commit) is proven by the e2e tests against a real
 * server. Not part of the build (tsconfig.build.json leaves *.fakes.ts out).
 */

export interface Row extends CompletedRequest {
  expired: boolean;
}

/** A refusal of the claim, as PostgreSQL raises it: a unique or a lock violation. */
function refusal(kind: Refusal): Error {
  return kind === 'completed'
    ? Object.assign(new Error('stored'), { code: '23505', constraint: 'idempotency_keys_pkey' })
    : Object.assign(new Error('in use'), { code: '55P03' });
}

/**
 * The interceptor's own decisions, with the database replaced by an in-memory
 * table. What PostgreSQL decides (locks, the unique key, atomic commit) is proven
 * by the e2e tests against a real server.
 */
export class InMemoryKeys {
  rows = new Map<string, Row>();
  /** What this instance remembers (IdempotencyService.recall). */
  memory = new Map<string, CompletedRequest>();
  locked = new Set<string>();
  /** Simulates another request committing the key between our claim and our COMMIT. */
  stolenBeforeSave?: Row;
  /** Expired rows the claim deleted. */
  deleted = 0;

  constructor(private readonly tx: RecordingTransactions) {}

  recall({ merchantId, key }: KeyedRequest) {
    return this.memory.get(`${merchantId}:${key}`);
  }

  /**
   * Like the real one: sent with BEGIN, it aborts the transaction when the key is
   * completed or held, so the handler's work behind it is refused; it deletes an
   * expired row, which the response stored at COMMIT replaces.
   */
  claim({ merchantId, key }: KeyedRequest) {
    const id = `${merchantId}:${key}`;
    const stored = this.rows.get(id);
    if (this.locked.has(id)) this.tx.abort(refusal('in-use'));
    else if (stored && !stored.expired) this.tx.abort(refusal('completed'));
    else if (stored) {
      this.rows.delete(id);
      this.deleted += 1;
    }
  }

  refusalOf(error: { code?: string }): Refusal | undefined {
    return error.code === '23505' ? 'completed' : error.code === '55P03' ? 'in-use' : undefined;
  }

  /** Like the real one: written at COMMIT, where a row stored meanwhile makes COMMIT fail. */
  storeAtCommit(request: KeyedRequest, response: RecordedResponse) {
    this.tx.atCommit(() => {
      const id = `${request.merchantId}:${request.key}`;
      if (this.stolenBeforeSave) this.rows.set(id, this.stolenBeforeSave);
      if (this.rows.has(id)) throw refusal('completed');
      this.rows.set(id, row(request, response));
    });
  }

  async findCompleted({ merchantId, key }: KeyedRequest) {
    const stored = this.rows.get(`${merchantId}:${key}`);
    return stored && !stored.expired ? stored : null;
  }

  /** Probes of a held key; `onProbe` plays the original finishing meanwhile. */
  probes = 0;
  onProbe?: (probe: number) => void;
  async isFree({ merchantId, key }: KeyedRequest) {
    this.probes += 1;
    this.onProbe?.(this.probes);
    return !this.locked.has(`${merchantId}:${key}`);
  }
}

export function row(
  request: Omit<KeyedRequest, 'merchantId' | 'key'>,
  response: RecordedResponse,
): Row {
  return {
    requestMethod: request.method,
    requestPath: request.path,
    fingerprint: request.fingerprint,
    responseStatus: response.status,
    responseContentType: response.contentType,
    responseBody: response.body,
    responseLocation: response.location,
    expired: false,
  };
}

/** A row that a request with body `{ amount: 1 }` stored, answering `body`. */
export function storedAnswer(body: string, location: string): Row {
  const fingerprint = requestFingerprint('POST', '/things', { amount: 1 });
  return row(
    { method: 'POST', path: '/things', fingerprint },
    { status: 201, contentType: 'application/json', body, location },
  );
}

/**
 * A transaction that records how it ended and runs atCommit() actions at COMMIT.
 * Once a guard sent with BEGIN has failed (abort()), it refuses the handler's
 * work, as PostgreSQL refuses what was sent behind the failed claim, and run()
 * throws the guard's error, as TransactionHost does.
 */
export class RecordingTransactions {
  outcomes: Array<'commit' | 'rollback'> = [];
  guardError?: Error;
  private pending: Array<() => void> = [];
  abort(error: Error) {
    this.guardError = error;
  }
  atCommit(action: () => void) {
    this.pending.push(action);
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    this.pending = [];
    this.guardError = undefined;
    try {
      const result = await work();
      const failed = this.guardError as Error | undefined; // set by the claim, during work()
      if (failed) throw failed;
      for (const action of this.pending) action();
      this.outcomes.push('commit');
      return result;
    } catch (error) {
      this.outcomes.push('rollback');
      throw this.guardError ?? error;
    }
  }
}

/** The part of a FastifyReply the interceptor uses. */
export function fakeReply() {
  const headers: Record<string, string> = {};
  const reply = {
    headers(values: Record<string, string>) {
      for (const [name, value] of Object.entries(values)) reply.header(name, value);
      return reply;
    },
    header(name: string, value: string) {
      headers[name.toLowerCase()] = value;
      return reply;
    },
  };
  return { reply, headers };
}
