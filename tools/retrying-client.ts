/**
 * The lab's and the chaos tests' way of sending a batch of operations through the
 * client in client/ (the one a user would install): one Idempotency-Key per
 * operation, reused on every attempt, back-off with jitter, Retry-After honoured.
 * It counts what happened on the way, and it can also make the mistake most
 * clients in the wild make, a new key for every attempt (`keys: 'per-attempt'`),
 * so that the lab can show what that costs.
 */
import {
  type AttemptEvent,
  backoffMs,
  createPaymentsClient,
  PaymentsApiError,
  RetriesExhaustedError,
} from '../client/src/index.js';

export interface Stats {
  attempts: number;
  retries: number;
  networkErrors: number;
  inUse: number;
  unavailable: number;
  /** 202s: a top-up pending at the processor, asked again. */
  pending: number;
  replays: number;
  statuses: Record<number, number>;
}

export function newStats(): Stats {
  return {
    attempts: 0,
    retries: 0,
    networkErrors: 0,
    inUse: 0,
    unavailable: 0,
    pending: 0,
    replays: 0,
    statuses: {},
  };
}

export interface Operation {
  /** Its Idempotency-Key; null for a PUT or DELETE, which needs none. */
  key: string | null;
  method: 'POST' | 'PUT' | 'DELETE';
  path: string;
  body: Record<string, unknown>;
}

/**
 * How the client keys an operation's attempts: 'per-operation' (right: one key,
 * reused on every retry) or 'per-attempt' (the classic bug: a fresh key each
 * time, so the server cannot tell a retry from a new request).
 */
export type KeyMode = 'per-operation' | 'per-attempt';

export interface RetryOptions {
  /** How long an operation may keep trying. Default 60 s. */
  deadlineMs?: number;
  /** How long one attempt may take. Default 15 s. */
  timeoutMs?: number;
  keys?: KeyMode;
}

export interface Result {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

/** Back-off for a test's pace: 20 ms doubling to 500 ms, full jitter; a server's Retry-After still wins. */
const LAB_BACKOFF = { baseDelayMs: 20, maxDelayMs: 500 };

/**
 * Sends an operation until it gets an answer that is not a transient failure.
 * Network errors, timeouts, 409 idempotency-key-in-use, 429, 5xx and 202 (a top-up
 * pending at the processor) are retried; anything else is the answer (a 409
 * account-closed too: retrying it cannot change it).
 */
export async function sendWithRetries(
  baseUrl: () => string,
  apiKey: string,
  op: Operation,
  stats: Stats,
  { deadlineMs = 60_000, timeoutMs = 15_000, keys = 'per-operation' }: RetryOptions = {},
): Promise<Result> {
  const count = (event: AttemptEvent) => {
    stats.attempts++;
    if (event.retry) stats.retries++;
    if (event.failure) stats.networkErrors++;
    if (event.status !== undefined) {
      stats.statuses[event.status] = (stats.statuses[event.status] ?? 0) + 1;
    }
    if (event.code === 'idempotency-key-in-use') stats.inUse++;
    else if (event.status === 503) stats.unavailable++;
    else if (event.status === 202 && event.retry) stats.pending++;
  };
  const client = createPaymentsClient({
    baseUrl,
    apiKey,
    timeoutMs,
    headers: { Connection: 'close' }, // a new connection per attempt, as after a fault
    onAttempt: count,
  });
  const send = (key: string | undefined, retry: object) =>
    client.request<Record<string, unknown>>(op.method, op.path, {
      body: op.body,
      idempotencyKey: key,
      pending: 'retry',
      retry,
    });
  try {
    const result =
      keys === 'per-operation'
        ? await send(op.key ?? undefined, { ...LAB_BACKOFF, maxAttempts: Infinity, deadlineMs })
        : await everyAttemptANewKey(op, send, deadlineMs, () => stats.retries++);
    if (result.replayed) stats.replays++;
    return { status: result.status, body: result.data ?? {}, replayed: result.replayed };
  } catch (error) {
    if (!(error instanceof PaymentsApiError)) throw error;
    // The answer was an error (a 402, a 422...): the lab and the tests look at it.
    if (error.replayed) stats.replays++;
    return {
      status: error.status,
      body: error.problem ?? {},
      replayed: error.replayed,
    };
  }
}

/**
 * The bug, on purpose: each attempt with a key never used before, so that a retry
 * after a lost response is a new charge. Only the lab's LAB_KEYS=per-attempt uses it.
 */
async function everyAttemptANewKey<T>(
  op: Operation,
  send: (key: string | undefined, retry: object) => Promise<T>,
  deadlineMs: number,
  onRetry: () => void,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await send(`${op.key}~${attempt}`, { maxAttempts: 1 });
    } catch (error) {
      if (!(error instanceof RetriesExhaustedError) || Date.now() > deadline) throw error;
      onRetry();
      await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt, LAB_BACKOFF)));
    }
  }
}

/** Runs `work` over `items` with `concurrency` workers. */
export async function pool<T, R>(
  items: T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]);
      }
    }),
  );
  return results;
}

export interface SendAllOptions extends RetryOptions {
  /** How many operations are in flight at once. */
  clients: number;
  /** Where the n-th operation is sent (asked again on every attempt). */
  baseUrl: (n: number) => string;
  apiKey: string;
  /** Counts to add to; default: new ones. */
  stats?: Stats;
  /** Called as each operation gets its answer. */
  onAnswer?: () => void;
}

/** Sends every operation, `clients` at a time, each with sendWithRetries until it gets its answer. */
export async function sendAll(
  ops: Operation[],
  { clients, baseUrl, apiKey, stats = newStats(), onAnswer, ...limits }: SendAllOptions,
): Promise<{ results: Result[]; stats: Stats }> {
  const indexed = ops.map((op, n) => ({ op, n }));
  const results = await pool(indexed, clients, async ({ op, n }) => {
    const result = await sendWithRetries(() => baseUrl(n), apiKey, op, stats, limits);
    onAnswer?.();
    return result;
  });
  return { results, stats };
}
