import { describe, expect, it } from '@jest/globals';
import {
  errorCode,
  isDatabaseUnavailable,
  isLockNotAvailable,
  isUniqueViolation,
  isUnstorableCharacter,
} from './database-errors.js';

const pgError = (code: string, extra: object = {}) =>
  Object.assign(new Error('from PostgreSQL'), { code, ...extra });
/** How TypeORM wraps a driver error (QueryFailedError). */
const wrapped = (driverError: Error) =>
  Object.assign(new Error('query failed'), { driverError, code: undefined });

describe('database errors', () => {
  it('reads the SQLSTATE of a driver error, wrapped by TypeORM or not', () => {
    expect(errorCode(pgError('23505'))).toBe('23505');
    expect(errorCode(wrapped(pgError('22021')))).toBe('22021');
    expect(errorCode(new Error('no code'))).toBeUndefined();
    expect(errorCode(null)).toBeUndefined();
  });

  it('recognises a unique violation of one constraint, and of its shard copies (Citus)', () => {
    const violation = (constraint: string) => pgError('23505', { constraint });

    expect(isUniqueViolation(violation('idempotency_keys_pkey'), 'idempotency_keys_pkey')).toBe(
      true,
    );
    expect(
      isUniqueViolation(violation('idempotency_keys_pkey_102191'), 'idempotency_keys_pkey'),
    ).toBe(true);
    expect(
      isUniqueViolation(wrapped(violation('idempotency_keys_pkey')), 'idempotency_keys_pkey'),
    ).toBe(true);
    expect(isUniqueViolation(violation('ledger_entries_pkey'), 'idempotency_keys_pkey')).toBe(
      false,
    );
    expect(
      isUniqueViolation(violation('idempotency_keys_pkey_extra'), 'idempotency_keys_pkey'),
    ).toBe(false);
    expect(
      isUniqueViolation(
        pgError('23503', { constraint: 'idempotency_keys_pkey' }),
        'idempotency_keys_pkey',
      ),
    ).toBe(false);
  });

  it('reads the constraint from the message when the error has no constraint field (a Citus coordinator relaying a worker)', () => {
    const relayed = Object.assign(
      new Error('duplicate key value violates unique constraint "idempotency_keys_pkey_102198"'),
      { code: '23505' },
    );
    expect(isUniqueViolation(relayed, 'idempotency_keys_pkey')).toBe(true);
    expect(isUniqueViolation(wrapped(relayed), 'idempotency_keys_pkey')).toBe(true);
    expect(isUniqueViolation(relayed, 'ledger_entries_pkey')).toBe(false);
    expect(isUniqueViolation(pgError('23505'), 'idempotency_keys_pkey')).toBe(false);
  });

  it('tells a lock held elsewhere and unstorable text by their codes', () => {
    expect(isLockNotAvailable(pgError('55P03'))).toBe(true);
    expect(isLockNotAvailable(pgError('40P01'))).toBe(false);
    expect(isUnstorableCharacter(wrapped(pgError('22021')))).toBe(true);
    expect(isUnstorableCharacter(pgError('22P02'))).toBe(false);
  });

  it('counts connection failures as the database being unavailable, and nothing else', () => {
    for (const code of ['08006', '08001', '57P01', '57P03', '53300']) {
      expect(isDatabaseUnavailable(pgError(code))).toBe(true);
    }
    // A socket to the database that could not connect, or broke.
    expect(isDatabaseUnavailable(pgError('ECONNREFUSED', { syscall: 'connect' }))).toBe(true);
    expect(isDatabaseUnavailable(pgError('ECONNRESET', { syscall: 'read' }))).toBe(true);
    // The request's own socket: a client that hung up mid-upload (Fastify's error).
    const aborted = Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 });
    expect(isDatabaseUnavailable(aborted)).toBe(false);
    expect(isDatabaseUnavailable(pgError('ECONNRESET'))).toBe(false);
    expect(isDatabaseUnavailable(wrapped(pgError('57P01')))).toBe(true);
    expect(isDatabaseUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isDatabaseUnavailable(new Error('timeout exceeded when trying to connect'))).toBe(true);
    for (const code of ['23505', '22021', '55P03', '42P01']) {
      expect(isDatabaseUnavailable(pgError(code))).toBe(false);
    }
    expect(isDatabaseUnavailable(new Error('boom'))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});
