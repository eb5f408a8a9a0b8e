import createClient from 'openapi-fetch';
import {
  PaymentsApiError,
  problemCode,
  type ProblemCode,
  type ProblemFor,
  RetriesExhaustedError,
} from './errors.js';
import {
  DEFAULT_RETRY_POLICY,
  delayBeforeRetry,
  type RetryPolicy,
  type RetryReason,
  retryAfterMs,
  retryReason,
} from './retry.js';
import type { components, operations, paths } from './schema.js';

type Schemas = components['schemas'];
export type Account = Schemas['Account'];
export type Charge = Schemas['Charge'];
export type Deposit = Schemas['Deposit'];
export type Refund = Schemas['Refund'];
export type TopUp = Schemas['TopUp'];
export type LedgerEntry = Schemas['LedgerEntry'];
export type IdempotencyKeyRecord = Schemas['IdempotencyKey'];
type Query<O extends keyof operations> = NonNullable<operations[O]['parameters']['query']>;

export interface ClientOptions {
  /** The API's root URL; a function is asked again before every attempt. */
  baseUrl: string | (() => string);
  /** The merchant's API key (sent as a Bearer token, never logged). */
  apiKey: string;
  /** How retries are spaced and bounded; see RetryPolicy for the defaults. */
  retry?: Partial<RetryPolicy>;
  /** How long one attempt may take, response body included. Default 30 s. */
  timeoutMs?: number;
  /**
   * Ask the server to wait up to N seconds (1..10) for a running request with the
   * same key, and answer with its replay, instead of an immediate 409 (Prefer: wait=N).
   */
  preferWait?: number;
  /** Sent with every request (a User-Agent, say). */
  headers?: Record<string, string>;
  /** Told about every attempt as it ends: for logs, metrics, and the retry lab's counters. */
  onAttempt?: (event: AttemptEvent) => void;
  /** Makes the Idempotency-Key of an operation given none. Default: crypto.randomUUID(). */
  newKey?: () => string;
  /** The jitter's random source, in [0, 1). Default Math.random. */
  random?: () => number;
}

/** Per call: everything optional. */
export interface CallOptions {
  /**
   * The operation's key. Give one when the operation must survive this process (a
   * key stored with the order before the call, and used again by whoever resumes
   * it); otherwise the client makes one, and reuses it on every attempt.
   */
  idempotencyKey?: string;
  /** Cancels the call, attempts and waits between them included. */
  signal?: AbortSignal;
  preferWait?: number;
  retry?: Partial<RetryPolicy>;
}

export interface ApiResult<T> {
  data: T;
  status: number;
  /** True when the server answered with the stored response of an earlier attempt. */
  replayed: boolean;
  /** The key the operation was sent with (keyed operations only). */
  idempotencyKey?: string;
  /** How many attempts it took (1: no retry). */
  attempts: number;
  headers: Headers;
}

export interface AttemptEvent {
  operation: string;
  attempt: number;
  idempotencyKey?: string;
  /** The response's status; absent when the attempt got none (see `failure`). */
  status?: number;
  replayed?: boolean;
  code?: ProblemCode | 'unknown';
  failure?: 'network' | 'timeout';
  /** Set when the client will try again: why, and after how long. */
  retry?: { reason: RetryReason; delayMs: number };
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** What one attempt gets from openapi-fetch. */
interface Answer {
  data?: unknown;
  error?: unknown;
  response: Response;
}

/** What an attempt is given: where to send it, its deadline, and the headers that make it safe. */
interface Attempt {
  baseUrl: string;
  signal: AbortSignal;
  /** Idempotency-Key (keyed operations), Prefer: wait=N (when asked for). */
  headers: Record<string, string>;
}

interface SendOptions extends CallOptions {
  /** POSTs carry a key; GET, PUT and DELETE are idempotent by their nature and need none. */
  keyed: boolean;
  /** 'retry': a 202 (still pending elsewhere) is asked again with the same key until final. */
  pending?: 'return' | 'retry';
}

/**
 * The payments API's client. Every method is one logical operation: it may take
 * several attempts, but they all carry the same Idempotency-Key, so the server
 * executes the operation once whatever happens to the network.
 *
 *   const payments = createPaymentsClient({ baseUrl: 'http://localhost:3000', apiKey });
 *   const { data: charge, replayed } = await payments.charges.create({ accountId, amount: 2500, currency: 'USD' });
 */
export function createPaymentsClient(options: ClientOptions): PaymentsClient {
  return new PaymentsClient(options);
}

export class PaymentsClient {
  readonly #http;
  readonly #options: ClientOptions;
  readonly #retry: RetryPolicy;

  constructor(options: ClientOptions) {
    this.#options = options;
    this.#retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.#http = createClient<paths>({
      headers: { ...options.headers, Authorization: `Bearer ${options.apiKey}` },
    });
  }

  readonly accounts = {
    create: (body: Schemas['CreateAccount'], opts: CallOptions = {}) =>
      this.#send<Account>('POST /accounts', { ...opts, keyed: true }, (a) =>
        this.#http.POST('/accounts', { ...init(a), body }),
      ),
    get: (id: string, opts: CallOptions = {}) =>
      this.#send<Account>(`GET /accounts/${id}`, { ...opts, keyed: false }, (a) =>
        this.#http.GET('/accounts/{id}', { ...init(a), params: { path: { id } } }),
      ),
    list: (query: Query<'listAccounts'> = {}, opts: CallOptions = {}) =>
      this.#send<Schemas['AccountList']>('GET /accounts', { ...opts, keyed: false }, (a) =>
        this.#http.GET('/accounts', { ...init(a), params: { query } }),
      ),
    /** PUT: sets the name (and metadata); sent twice, it sets them once. `ifMatch`: only from this version (an ETag). */
    replace: (
      id: string,
      body: Schemas['ReplaceAccount'],
      { ifMatch, ...opts }: CallOptions & { ifMatch?: string } = {},
    ) =>
      this.#send<Account>(`PUT /accounts/${id}`, { ...opts, keyed: false }, (a) =>
        this.#http.PUT('/accounts/{id}', {
          ...init(a),
          params: { path: { id }, header: ifMatch === undefined ? {} : { 'If-Match': ifMatch } },
          body,
        }),
      ),
    /** DELETE: closes an empty account; closing a closed one is a success too. */
    close: (id: string, { ifMatch, ...opts }: CallOptions & { ifMatch?: string } = {}) =>
      this.#send<undefined>(`DELETE /accounts/${id}`, { ...opts, keyed: false }, (a) =>
        this.#http.DELETE('/accounts/{id}', {
          ...init(a),
          params: { path: { id }, header: ifMatch === undefined ? {} : { 'If-Match': ifMatch } },
        }),
      ),
    ledger: (accountId: string, query: Query<'listLedgerEntries'> = {}, opts: CallOptions = {}) =>
      this.#send<Schemas['LedgerEntryList']>(
        `GET /accounts/${accountId}/ledger`,
        { ...opts, keyed: false },
        (a) =>
          this.#http.GET('/accounts/{accountId}/ledger', {
            ...init(a),
            params: { path: { accountId }, query },
          }),
      ),
  };

  readonly deposits = {
    create: (accountId: string, body: Schemas['CreateDeposit'], opts: CallOptions = {}) =>
      this.#send<Deposit>(`POST /accounts/${accountId}/deposits`, { ...opts, keyed: true }, (a) =>
        this.#http.POST('/accounts/{accountId}/deposits', {
          ...init(a),
          params: { path: { accountId }, header: keyHeader(a) },
          body,
        }),
      ),
  };

  readonly charges = {
    create: (body: Schemas['CreateCharge'], opts: CallOptions = {}) =>
      this.#send<Charge>('POST /charges', { ...opts, keyed: true }, (a) =>
        this.#http.POST('/charges', { ...init(a), params: { header: keyHeader(a) }, body }),
      ),
    get: (id: string, opts: CallOptions = {}) =>
      this.#send<Charge>(`GET /charges/${id}`, { ...opts, keyed: false }, (a) =>
        this.#http.GET('/charges/{id}', { ...init(a), params: { path: { id } } }),
      ),
    list: (query: Query<'listCharges'> = {}, opts: CallOptions = {}) =>
      this.#send<Schemas['ChargeList']>('GET /charges', { ...opts, keyed: false }, (a) =>
        this.#http.GET('/charges', { ...init(a), params: { query } }),
      ),
  };

  readonly refunds = {
    create: (chargeId: string, body: Schemas['CreateRefund'] = {}, opts: CallOptions = {}) =>
      this.#send<Refund>(`POST /charges/${chargeId}/refunds`, { ...opts, keyed: true }, (a) =>
        this.#http.POST('/charges/{chargeId}/refunds', {
          ...init(a),
          params: { path: { chargeId }, header: keyHeader(a) },
          body,
        }),
      ),
  };

  readonly topUps = {
    /**
     * A card top-up: money from outside, through the card processor. `pending:
     * 'retry'` asks again, with the same key, while the answer is 202 (the
     * processor's answer is not known yet), until it is final.
     */
    create: (
      accountId: string,
      body: Schemas['CreateTopUp'],
      { pending = 'return', ...opts }: CallOptions & { pending?: 'return' | 'retry' } = {},
    ) =>
      this.#send<TopUp>(
        `POST /accounts/${accountId}/top-ups`,
        { ...opts, keyed: true, pending },
        (a) =>
          this.#http.POST('/accounts/{accountId}/top-ups', {
            ...init(a),
            params: { path: { accountId }, header: keyHeader(a) },
            body,
          }),
      ),
    get: (id: string, opts: CallOptions = {}) =>
      this.#send<TopUp>(`GET /top-ups/${id}`, { ...opts, keyed: false }, (a) =>
        this.#http.GET('/top-ups/{id}', { ...init(a), params: { path: { id } } }),
      ),
  };

  readonly idempotencyKeys = {
    get: (key: string, opts: CallOptions = {}) =>
      this.#send<IdempotencyKeyRecord>(
        `GET /idempotency-keys/${key}`,
        { ...opts, keyed: false },
        (a) => this.#http.GET('/idempotency-keys/{key}', { ...init(a), params: { path: { key } } }),
      ),
  };

  /**
   * Any route, with the same retries, for a path built at run time (the typed
   * methods above are checked against openapi.yaml; this one is not). POSTs get a key.
   */
  request<T = unknown>(
    method: Method,
    path: string,
    {
      body,
      ifMatch,
      ...opts
    }: CallOptions & { body?: unknown; ifMatch?: string; pending?: 'return' | 'retry' } = {},
  ): Promise<ApiResult<T>> {
    return this.#send<T>(`${method} ${path}`, { ...opts, keyed: method === 'POST' }, (a) =>
      this.#http.request(
        method.toLowerCase() as never,
        path as never,
        {
          ...init(a),
          headers: { ...a.headers, ...(ifMatch === undefined ? {} : { 'If-Match': ifMatch }) },
          body,
        } as never,
      ),
    );
  }

  /**
   * One logical operation: attempts, all with the same key, until one gets an
   * answer that is not worth retrying, or the policy says stop.
   */
  async #send<T>(
    operation: string,
    options: SendOptions,
    attempt: (a: Attempt) => Promise<Answer>,
  ): Promise<ApiResult<T>> {
    const policy = { ...this.#retry, ...options.retry };
    const idempotencyKey = options.keyed
      ? (options.idempotencyKey ?? (this.#options.newKey ?? newKey)())
      : undefined;
    const preferWait = options.preferWait ?? this.#options.preferWait;
    const headers: Record<string, string> = {
      ...(idempotencyKey === undefined ? {} : { 'Idempotency-Key': idempotencyKey }),
      ...(preferWait === undefined || !options.keyed ? {} : { Prefer: `wait=${preferWait}` }),
    };
    const deadline = Date.now() + (policy.deadlineMs ?? Infinity);

    for (let n = 1; ; n++) {
      const event: AttemptEvent = { operation, attempt: n, idempotencyKey };
      let reason: RetryReason;
      let retryAfter: number | undefined;
      let failure: unknown;

      const signal = attemptSignal(this.#options.timeoutMs ?? 30_000, options.signal);
      const answer = await attempt({ baseUrl: this.#baseUrl(), signal, headers }).catch(
        (error: unknown) => {
          if (options.signal?.aborted) throw options.signal.reason;
          return error instanceof Error ? error : new Error(String(error));
        },
      );

      if (answer instanceof Error) {
        // No answer, or half of one: the request may or may not have executed.
        const timedOut =
          signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError';
        reason = event.failure = timedOut ? 'timeout' : 'network';
        failure = answer;
      } else {
        const { response, data, error } = answer;
        const replayed = response.headers.get('Idempotent-Replayed') === 'true';
        Object.assign(event, { status: response.status, replayed });
        const again = retryReason(response.status, problemCode(error), {
          retryPending: options.pending === 'retry',
        });
        if (again === null) {
          if (response.ok) {
            this.#options.onAttempt?.(event);
            const result = { data: data as T, status: response.status, replayed };
            return { ...result, idempotencyKey, attempts: n, headers: response.headers };
          }
          const apiError = toApiError(response, error, replayed, idempotencyKey);
          event.code = apiError.code;
          this.#options.onAttempt?.(event);
          throw apiError;
        }
        reason = again;
        retryAfter = retryAfterMs(response.headers.get('Retry-After'));
        failure = response.ok ? undefined : toApiError(response, error, replayed, idempotencyKey);
        if (failure instanceof PaymentsApiError) event.code = failure.code;
      }

      const delayMs = delayBeforeRetry(n - 1, policy, retryAfter, this.#options.random);
      if (n >= policy.maxAttempts || Date.now() + delayMs > deadline) {
        this.#options.onAttempt?.(event);
        throw new RetriesExhaustedError(operation, n, reason, idempotencyKey, failure);
      }
      event.retry = { reason, delayMs };
      this.#options.onAttempt?.(event);
      await sleep(delayMs, options.signal);
    }
  }

  #baseUrl(): string {
    const { baseUrl } = this.#options;
    return typeof baseUrl === 'function' ? baseUrl() : baseUrl;
  }
}

/** The openapi-fetch options every attempt shares. */
function init({ baseUrl, signal, headers }: Attempt) {
  return { baseUrl, signal, headers };
}

/** The key as a typed header parameter (openapi.yaml marks it required on these routes). */
function keyHeader({ headers }: Attempt): { 'Idempotency-Key': string } {
  return { 'Idempotency-Key': headers['Idempotency-Key'] };
}

function newKey(): string {
  return globalThis.crypto.randomUUID();
}

function toApiError(
  response: Response,
  body: unknown,
  replayed: boolean,
  idempotencyKey: string | undefined,
): PaymentsApiError {
  const code = problemCode(body);
  const problem = code === 'unknown' ? undefined : (body as ProblemFor<ProblemCode>);
  return new PaymentsApiError(
    response.status,
    code,
    problem,
    replayed,
    idempotencyKey,
    response.headers.get('X-Request-Id'),
  );
}

/** The attempt's own timeout, and the caller's cancellation when there is one. */
function attemptSignal(timeoutMs: number, caller: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return caller ? AbortSignal.any([caller, timeout]) : timeout;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', abort, { once: true });
  });
}
