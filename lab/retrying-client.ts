/**
 * A client that retries the way a careful payments client should: one
 * Idempotency-Key per operation, reused on every attempt, and a short back-off.
 * Used by the retry lab and the chaos tests. It can also make the mistake most
 * clients in the wild make, a new key for every attempt (`keys: 'per-attempt'`),
 * so that the lab can show what that costs.
 */

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
  deadlineMs?: number;
  timeoutMs?: number;
  keys?: KeyMode;
}

export interface Result {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

/**
 * Sends an operation until it gets an answer that is not a transient failure,
 * reusing its Idempotency-Key on every attempt, as a payments client should:
 * network errors, 409 idempotency-key-in-use, 503 (unavailable) and 202 (pending:
 * a top-up whose processor has not answered yet) are retried with a short
 * back-off; anything else is the answer (a 409 account-closed too: retrying it
 * cannot change it).
 */
export async function sendWithRetries(
  baseUrl: () => string,
  apiKey: string,
  op: Operation,
  stats: Stats,
  { deadlineMs = 60_000, timeoutMs = 15_000, keys = 'per-operation' }: RetryOptions = {},
): Promise<Result> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) stats.retries++;
    if (Date.now() > deadline) {
      throw new Error(
        `gave up on ${op.key ?? `${op.method} ${op.path}`} after ${attempt} attempts: ${JSON.stringify(stats)}`,
      );
    }
    stats.attempts++;
    try {
      const res = await fetch(`${baseUrl()}${op.path}`, {
        method: op.method,
        headers: {
          Authorization: `Bearer ${apiKey}`,
          'Content-Type': 'application/json',
          ...(op.key === null
            ? {}
            : { 'Idempotency-Key': keys === 'per-attempt' ? `${op.key}~${attempt}` : op.key }),
          Connection: 'close',
        },
        body: JSON.stringify(op.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
      const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
      const inUse = res.status === 409 && body.type === '/problems/idempotency-key-in-use';
      if (inUse || res.status === 503 || res.status === 202) {
        if (inUse) stats.inUse++;
        else if (res.status === 202) stats.pending++;
        else stats.unavailable++;
        await pause(attempt);
        continue;
      }
      const replayed = res.headers.get('idempotent-replayed') === 'true';
      if (replayed) stats.replays++;
      return { status: res.status, body, replayed };
    } catch (error) {
      if ((error as Error).name === 'TimeoutError') {
        throw new Error(
          `${op.key ?? `${op.method} ${op.path}`}: no answer within ${timeoutMs} ms (a hang)`,
          { cause: error },
        );
      }
      stats.networkErrors++; // connection refused, reset, or a response cut short
      await pause(attempt);
    }
  }
}

function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(20 * 2 ** attempt, 500)));
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
