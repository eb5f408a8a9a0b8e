import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import {
  isDatabaseUnavailable,
  isUnstorableCharacter,
  refusedByRule,
} from '../database/database-errors.js';
import { PROBLEM_CONTENT_TYPE, problemBody, ProblemError } from '../problems/problem.js';
import type { ApiRequest } from './api-request.js';
import { pathOf } from './request-context.js';
import { VerbatimResponse } from './verbatim-response.js';

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
    const reply = http.getResponse<FastifyReply>();
    if (reply.sent) return;

    if (exception instanceof VerbatimResponse) {
      reply.code(exception.status).headers(exception.headers).send(exception.body);
      return;
    }

    const problem = toProblem(exception);
    if (problem.code === 'internal-error') {
      this.logger.error({
        msg: 'unexpected error',
        requestId: req.requestId,
        route: `${req.method} ${pathOf(req)}`,
        error: exception instanceof Error ? exception.stack : String(exception),
      });
    } else if (refusedByRule(exception)) {
      // The input checks let through what the schema refuses: the client's fault, but
      // a check is missing.
      this.logger.warn({
        msg: 'a value reached the database that its rules refuse',
        requestId: req.requestId,
        route: `${req.method} ${pathOf(req)}`,
        error: String(exception),
      });
    } else if (problem.code === 'service-unavailable') {
      this.logger.warn({
        msg: 'database unavailable',
        requestId: req.requestId,
        error: String(exception),
      });
    }
    sendProblem(reply, problem);
  }
}

export function sendProblem(reply: FastifyReply, problem: ProblemError): void {
  reply
    .code(problem.status)
    .header('Content-Type', PROBLEM_CONTENT_TYPE)
    .headers(problem.headers)
    .send(problemBody(problem.code, problem.detail, problem.extensions));
}

/** Maps anything thrown to a problem: ours as they are, framework and driver errors by kind. */
export function toProblem(exception: unknown): ProblemError {
  if (exception instanceof ProblemError) return exception;
  if (isUnstorableCharacter(exception)) {
    // Text PostgreSQL cannot store (a NUL that slipped past the input checks).
    return new ProblemError(
      'validation-failed',
      'The request contains characters that cannot be stored.',
      {
        errors: [{ field: 'request', message: 'contains characters that cannot be stored' }],
      },
    );
  }
  const rule = refusedByRule(exception);
  if (rule) {
    return new ProblemError(
      'validation-failed',
      `A value of the request is outside what the service stores (${rule}).`,
      { errors: [{ field: 'request', message: `refused by ${rule}` }] },
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
  const status = clientErrorStatus(exception);
  switch (status) {
    case undefined:
      return new ProblemError(
        'internal-error',
        'Something went wrong on our side. Nothing was done; it is safe to retry.',
      );
    case 404:
      return new ProblemError('not-found', 'No such route.');
    case 413:
      return new ProblemError('payload-too-large', 'The request body is larger than 100 kB.');
    case 415:
      return new ProblemError('unsupported-media-type', 'Send the request body as JSON.');
    default: {
      const message = (exception as Error).message;
      if (isFastifyError(exception, 'FST_ERR_BAD_URL')) {
        return new ProblemError('validation-failed', 'The URL is not validly percent-encoded.', {
          errors: [{ field: 'path', message: 'is not validly percent-encoded' }],
        });
      }
      if (isFastifyError(exception, 'FST_ERR_CTP_')) {
        // The body could not be read: a Content-Length that does not match it, a
        // client that hung up halfway, ...
        return new ProblemError('malformed-json', `The request body could not be read: ${message}`);
      }
      return new ProblemError('validation-failed', message, {
        errors: [{ field: 'request', message }],
      });
    }
  }
}

/**
 * The status of a client error raised by NestJS (HttpException) or by Fastify (its
 * errors carry a `statusCode`: unreadable bodies, malformed URLs); undefined for
 * anything else, which is our fault.
 */
function clientErrorStatus(exception: unknown): number | undefined {
  const status =
    exception instanceof HttpException
      ? exception.getStatus()
      : isFastifyError(exception, 'FST_')
        ? (exception as { statusCode?: unknown }).statusCode
        : undefined;
  return typeof status === 'number' && status >= 400 && status < 500 ? status : undefined;
}

function isFastifyError(exception: unknown, codePrefix: string): boolean {
  const code = (exception as { code?: unknown } | null)?.code;
  return exception instanceof Error && typeof code === 'string' && code.startsWith(codePrefix);
}
