import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import type { Response } from 'express';
import { RecordedResponseException } from '../idempotency/recorded-response.js';
import type { ApiRequest } from './api-request.js';
import { PROBLEM_CONTENT_TYPE, problemBody, ProblemError } from './problem.js';

/**
 * The one place where errors become HTTP (RFC 9457 problem details, contract §5).
 * Nothing a client sends reaches the 500 branch; what does is a bug or an outage,
 * and is logged here with the request id, never sent to the client.
 */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<ApiRequest>();
    const res = http.getResponse<Response>();
    if (res.headersSent) return;

    if (exception instanceof RecordedResponseException) {
      const { response, headers } = exception;
      res.status(response.status).type(response.contentType);
      if (response.location) res.location(response.location);
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      res.send(response.body);
      return;
    }

    const problem = toProblem(exception);
    if (problem.code === 'internal-error') {
      this.logger.error({
        msg: 'unexpected error',
        requestId: req.requestId,
        route: `${req.method} ${req.path}`,
        error: exception instanceof Error ? exception.stack : String(exception),
      });
    } else if (problem.code === 'service-unavailable') {
      this.logger.warn({
        msg: 'database unavailable',
        requestId: req.requestId,
        error: String(exception),
      });
    }
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE);
    for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value);
    res.send(problemBody(problem.code, problem.detail, problem.extensions));
  }
}

/** Maps anything thrown to a problem: ours as they are, framework and driver errors by kind. */
export function toProblem(exception: unknown): ProblemError {
  if (exception instanceof ProblemError) return exception;
  // Express's errors (body parser, bad percent-encoding) reach us wrapped by NestJS.
  const cause = exception instanceof HttpException ? exception.cause : undefined;
  const parserProblem = bodyParserProblem(cause ?? exception);
  if (parserProblem) return parserProblem;
  if (databaseCode(exception) === CHARACTER_NOT_IN_REPERTOIRE) {
    // Text PostgreSQL cannot store (a NUL that slipped past the input checks).
    return new ProblemError(
      'validation-failed',
      'The request contains characters that cannot be stored.',
      {
        errors: [{ field: 'request', message: 'contains characters that cannot be stored' }],
      },
    );
  }
  if (isDatabaseUnavailable(exception)) {
    return new ProblemError(
      'service-unavailable',
      'The database cannot be reached. Nothing was done; retry the request later with the same Idempotency-Key.',
      {},
      { 'Retry-After': '1' },
    );
  }
  if (exception instanceof HttpException && exception.getStatus() < 500) {
    switch (exception.getStatus()) {
      case 404:
        return new ProblemError('not-found', 'No such route.');
      case 413:
        return new ProblemError('payload-too-large', 'The request body is larger than 100 kB.');
      case 415:
        return new ProblemError('unsupported-media-type', 'Send the request body as JSON.');
      default: {
        const field = cause instanceof URIError ? 'path' : 'request';
        return new ProblemError('validation-failed', exception.message, {
          errors: [{ field, message: exception.message }],
        });
      }
    }
  }
  return new ProblemError(
    'internal-error',
    'Something went wrong on our side. Nothing was done; it is safe to retry.',
  );
}

/** Errors raised by express's body parser carry a `type` (https://github.com/expressjs/body-parser#errors). */
function bodyParserProblem(exception: unknown): ProblemError | undefined {
  const type = (exception as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.parse.failed':
      return new ProblemError('malformed-json', 'The request body is not valid JSON.');
    case 'entity.too.large':
      return new ProblemError('payload-too-large', 'The request body is larger than 100 kB.');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ProblemError('unsupported-media-type', 'Send the body as UTF-8 JSON.');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'stream.not.readable':
      return new ProblemError('malformed-json', 'The request body could not be read.');
    default:
      return undefined;
  }
}

const CHARACTER_NOT_IN_REPERTOIRE = '22021';

function databaseCode(exception: unknown): string | undefined {
  const error = exception as { code?: unknown; driverError?: { code?: unknown } } | null;
  const code = error?.driverError?.code ?? error?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Connection-level failures: the database is down, restarting, full or unreachable. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

export function isDatabaseUnavailable(exception: unknown): boolean {
  const error = exception as { code?: unknown; message?: unknown; driverError?: unknown } | null;
  if (!error || typeof error !== 'object') return false;
  if (error.driverError && isDatabaseUnavailable(error.driverError)) return true;
  const code = typeof error.code === 'string' ? error.code : '';
  // SQLSTATE class 08: connection exception; 57P01-03: shutting down or starting
  // up; 53300: too many connections.
  if (code.startsWith('08') || /^57P0[123]$/.test(code) || code === '53300') return true;
  if (UNAVAILABLE_CODES.has(code)) return true;
  const message = typeof error.message === 'string' ? error.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused/i.test(
    message,
  );
}
