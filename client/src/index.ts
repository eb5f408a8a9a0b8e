export {
  type Account,
  type ApiResult,
  type AttemptEvent,
  type CallOptions,
  type Charge,
  type ClientOptions,
  createPaymentsClient,
  type Deposit,
  type IdempotencyKeyRecord,
  type LedgerEntry,
  PaymentsClient,
  type Refund,
  type TopUp,
} from './client.js';
export {
  PaymentsApiError,
  type ProblemCode,
  type ProblemFor,
  problemCode,
  RetriesExhaustedError,
} from './errors.js';
export {
  backoffMs,
  DEFAULT_RETRY_POLICY,
  delayBeforeRetry,
  type RetryPolicy,
  type RetryReason,
  retryAfterMs,
  retryReason,
} from './retry.js';
export type { components, operations, paths } from './schema.js';
