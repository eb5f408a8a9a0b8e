/**
 * What the errors of PostgreSQL and node-postgres mean to this service, in one
 * place. PostgreSQL names each error with a SQLSTATE code
 * (https://www.postgresql.org/docs/current/errcodes-appendix.html); TypeORM wraps
 * the driver's error in a QueryFailedError that keeps it as `driverError`.
 */
const SQLSTATE = {
  uniqueViolation: '23505',
  checkViolation: '23514',
  characterNotInRepertoire: '22021',
  lockNotAvailable: '55P03',
  tooManyConnections: '53300',
} as const;

interface DriverError {
  code?: unknown;
  constraint?: unknown;
  message?: unknown;
  driverError?: unknown;
}

/** The SQLSTATE (or Node.js error code) of an error, wrapped by TypeORM or not. */
export function errorCode(error: unknown): string | undefined {
  const e = error as DriverError | null;
  const code = (e?.driverError as DriverError | undefined)?.code ?? e?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A unique violation of `constraint`. A sharded PostgreSQL (Citus) reports the
 * shard's copy of the constraint, named after it with the shard's id appended
 * (`idempotency_keys_pkey_102191`): that is the same constraint.
 */
export function isUniqueViolation(error: unknown, constraint: string): boolean {
  if (errorCode(error) !== SQLSTATE.uniqueViolation) return false;
  const name = constraintOf(error as DriverError);
  if (name === undefined) return false;
  return name === constraint || new RegExp(`^${constraint}_\\d+$`).test(name);
}

/**
 * The constraint an error names. A Citus coordinator passes on a worker's error
 * without its constraint field, so the name is then read from the message
 * (`duplicate key value violates unique constraint "idempotency_keys_pkey_102198"`).
 */
function constraintOf(error: DriverError): string | undefined {
  const driver = (error.driverError as DriverError | undefined) ?? error;
  if (typeof driver.constraint === 'string') return driver.constraint;
  if (typeof driver.message !== 'string') return undefined;
  return /violates unique constraint "([^"]+)"/.exec(driver.message)?.[1];
}

/** A lock taken with NOWAIT or a try-function was held by someone else (claim_idempotency_key). */
export function isLockNotAvailable(error: unknown): boolean {
  return errorCode(error) === SQLSTATE.lockNotAvailable;
}

/** Text PostgreSQL cannot store in the database's encoding (a NUL, for one). */
export function isUnstorableCharacter(error: unknown): boolean {
  return errorCode(error) === SQLSTATE.characterNotInRepertoire;
}

/**
 * A value the schema's rules refuse (a domain's CHECK, or a table's): the input
 * checks should have caught it first, but where they did not, it is still the
 * request's fault (400), never the service's (500). The constraint it names.
 */
export function refusedByRule(error: unknown): string | undefined {
  if (errorCode(error) !== SQLSTATE.checkViolation) return undefined;
  const driver = ((error as DriverError).driverError as DriverError | undefined) ?? error;
  const named = (driver as DriverError).constraint;
  if (typeof named === 'string') return named.replace(/_\d+$/, '');
  const message = (driver as DriverError).message;
  return (
    (typeof message === 'string' ? /constraint "([^"]+)"/.exec(message)?.[1] : undefined) ??
    'a rule'
  );
}

/** Node.js's codes for a connection that could not be made or was cut. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

/**
 * The database is down, restarting, full or unreachable: not the request's fault,
 * and nothing was done (503, retry later). Only the database's own errors: a
 * SQLSTATE of class 08 or 57P01-03, or 53300; a socket error of a connection to it
 * (a Node.js network code on a system call: connect, read, write, getaddrinfo); or
 * node-postgres's own words. Not the request's socket: a client that hangs up
 * mid-upload also ends in ECONNRESET, which Fastify marks as the client's (a 4xx
 * statusCode, and no system call).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const e = error as DriverError & { syscall?: unknown; statusCode?: unknown };
  if (e.driverError && isDatabaseUnavailable(e.driverError)) return true;
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return false;
  const code = typeof e.code === 'string' ? e.code : '';
  // Class 08: connection exception; 57P01-03: shutting down or starting up.
  if (code.startsWith('08') || /^57P0[123]$/.test(code)) return true;
  if (code === SQLSTATE.tooManyConnections) return true;
  if (NETWORK_CODES.has(code)) return typeof e.syscall === 'string';
  // node-postgres's own errors carry no code, only a message.
  const message = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused/i.test(
    message,
  );
}
