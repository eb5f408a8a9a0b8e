/**
 * A client that retries the way a careful payments client should: one
 * Idempotency-Key per operation, reused on every attempt, and a short back-off.
 * Used by the retry lab and the chaos tests.
 */

export interface Stats {
  attempts: number;
  retries: number;
  networkErrors: number;
  inUse: number;
  unavailable: number;
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
    replays: 0,
    statuses: {},
  };
}

export interface Operation {
  key: string;
  method: 'POST';
  path: string;
  body: Record<string, unknown>;
}

export interface Result {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

/**
 * Sends an operation until it gets an answer that is not a transient failure,
 * reusing its Idempotency-Key on every attempt, as a payments client should:
 * network errors, 409 (in use) and 503 (unavailable) are retried with a short
 * back-off; anything else is the answer.
 */
export async function sendWithRetries(
  baseUrl: () => string,
  apiKey: string,
  op: Operation,
  stats: Stats,
  { deadlineMs = 60_000, timeoutMs = 15_000 } = {},
): Promise<Result> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) stats.retries++;
    if (Date.now() > deadline) {
      throw new Error(`gave up on ${op.key} after ${attempt} attempts: ${JSON.stringify(stats)}`);
    }
    stats.attempts++;
    try {
      const res = await fetch(`${baseUrl()}${op.path}`, {
        method: op.method,
        headers: {
          Authorization: `Bearer ${apiKey}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': op.key,
          Connection: 'close',
        },
        body: JSON.stringify(op.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
      if (res.status === 409 || res.status === 503) {
        if (res.status === 409) stats.inUse++;
        else stats.unavailable++;
        await pause(attempt);
        continue;
      }
      const replayed = res.headers.get('idempotent-replayed') === 'true';
      if (replayed) stats.replays++;
      return { status: res.status, body: JSON.parse(text) as Record<string, unknown>, replayed };
    } catch (error) {
      if ((error as Error).name === 'TimeoutError') {
        throw new Error(`${op.key}: no answer within ${timeoutMs} ms (a hang)`, { cause: error });
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

export interface SendAllOptions {
  /** How many operations are in flight at once. */
  clients: number;
  /** Where the n-th operation is sent (asked again on every attempt). */
  baseUrl: (n: number) => string;
  apiKey: string;
  /** Counts to add to; default: new ones. */
  stats?: Stats;
  deadlineMs?: number;
  timeoutMs?: number;
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
