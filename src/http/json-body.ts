import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
} from 'fastify';
import { ProblemError } from '../problems/problem.js';

/** Contract §5: bodies over 100 kB are refused with 413. */
export const BODY_LIMIT_BYTES = 100 * 1024;

/**
 * `application/json` and the structured-syntax suffix types (`application/problem+json`,
 * ...), with any parameters: Fastify matches it against the normalised Content-Type.
 */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.-]+\+)?json(?:;|$)/;

/**
 * The only request bodies this API reads are JSON, in UTF-8, of at most
 * BODY_LIMIT_BYTES (Fastify answers 413 beyond). A body of any other type is
 * refused with 415 before it is read; a POST without a body is fine.
 */
export function installJsonBodyParser(http: FastifyInstance): void {
  http.removeAllContentTypeParsers();
  http.addContentTypeParser(
    JSON_MEDIA_TYPE,
    { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES },
    (req, text, done) => {
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '');
      if (charset && !/^utf-?8$/i.test(charset[1])) {
        done(new ProblemError('unsupported-media-type', 'Send the body as UTF-8 JSON.'));
        return;
      }
      if (text === '') {
        done(null, undefined);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(text as string);
      } catch {
        done(new ProblemError('malformed-json', 'The request body is not valid JSON.'));
        return;
      }
      const problem = hostileJsonProblem(body);
      if (problem) done(problem);
      else done(null, body);
    },
  );
  http.addContentTypeParser('*', (req, _payload, done) => {
    const hasBody =
      req.headers['transfer-encoding'] !== undefined ||
      Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) {
      done(null, undefined);
      return;
    }
    done(
      new ProblemError(
        'unsupported-media-type',
        'Send the request body as JSON, with "Content-Type: application/json".',
      ),
    );
  });
}

/** PostgreSQL text cannot hold NUL: refused (400) in the URL here, in bodies by the parser. */
export function rejectNulInUrl(
  req: FastifyRequest,
  _reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  if (req.url.includes('%00')) done(invalidInput('url', 'the URL must not contain NUL characters'));
  else done();
}

/** Deeper than any body of this API needs; recursion on hostile depth would overflow the stack. */
export const MAX_JSON_DEPTH = 32;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * What JSON allows but this service must not process (400): nesting deeper than
 * MAX_JSON_DEPTH, NUL characters (PostgreSQL text cannot hold them) and keys that
 * would reach object prototypes. Iterative, so hostile input cannot exhaust the
 * stack here either.
 */
export function hostileJsonProblem(body: unknown): ProblemError | undefined {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value: body, path: '', depth: 0 },
  ];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    const field = path || 'body';
    if (typeof value === 'string') {
      if (value.includes('\u0000')) return invalidInput(field, 'must not contain NUL characters');
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      return invalidInput(field, `nesting deeper than ${MAX_JSON_DEPTH} levels`);
    }
    for (const [key, child] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(key) || key.includes('\u0000')) {
        return invalidInput(path ? `${path}.${key}` : key, 'this property name is not allowed');
      }
      stack.push({ value: child, path: path ? `${path}.${key}` : key, depth: depth + 1 });
    }
  }
  return undefined;
}

function invalidInput(field: string, message: string): ProblemError {
  return new ProblemError('validation-failed', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}
