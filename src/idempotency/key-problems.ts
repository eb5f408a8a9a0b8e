import { ProblemError } from '../problems/problem.js';

/** 409: a request with this key is running; retry to get its response. Not stored. */
export function keyInUse(key: string, preferredWait = 0): ProblemError {
  return new ProblemError(
    'idempotency-key-in-use',
    preferredWait > 0
      ? `A request with Idempotency-Key '${key}' was still being processed after ${preferredWait} s. Retry later to get its response.`
      : `A request with Idempotency-Key '${key}' is still being processed. Retry after it completes to get its response.`,
    {},
    {
      'Retry-After': '1',
      ...(preferredWait > 0 ? { 'Preference-Applied': `wait=${preferredWait}` } : {}),
    },
  );
}

/** 422: the key names another request (`method path`); nothing executes. Not stored. */
export function keyReused(key: string, method: string, path: string): ProblemError {
  return new ProblemError(
    'idempotency-key-reused',
    `Idempotency-Key '${key}' was used for a different request (${method} ${path} with another body). Use a new key for a new request.`,
  );
}
