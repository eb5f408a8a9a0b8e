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
    { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES },
    (req, bytes, done) => {
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '');
      if (charset && !/^utf-?8$/i.test(charset[1])) {
        done(new ProblemError('unsupported-media-type', 'Send the body as UTF-8 JSON.'));
        return;
      }
      if (bytes.length === 0) {
        done(null, undefined);
        return;
      }
      // Before anything is built of it: a body with more separators than values allowed
      // is refused unparsed (parsing 11,200 properties costs the event loop ~4 ms).
      if (separators(bytes as Buffer, MAX_JSON_VALUES) > MAX_JSON_VALUES) {
        done(tooManyValues());
        return;
      }
      let text: string;
      try {
        // Strict: bytes that are not UTF-8 are refused, not read as U+FFFD and stored.
        text = UTF8.decode(bytes as Buffer);
      } catch {
        done(new ProblemError('malformed-json', 'The request body is not valid UTF-8.'));
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
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

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Deeper than any body of this API needs; recursion on hostile depth would overflow the stack. */
export const MAX_JSON_DEPTH = 32;
/**
 * Values in one body, at any depth (each object member and array item counts):
 * the largest body of this API has about 35 (a charge with 20 metadata pairs).
 * Checked before validation, whose cost grows with them: 100 kB of unknown
 * properties took class-validator 386 ms to list, one by one.
 */
export const MAX_JSON_VALUES = 256;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * What JSON allows but this service must not process (400): more than
 * MAX_JSON_VALUES values, nesting deeper than MAX_JSON_DEPTH, NUL characters
 * (PostgreSQL text cannot hold them), text that is not well-formed Unicode (an
 * unpaired surrogate, `"\ud800"`, which would be stored as U+FFFD), and keys that
 * would reach object prototypes. Iterative, so hostile input cannot exhaust the
 * stack here either.
 */
export function hostileJsonProblem(body: unknown): ProblemError | undefined {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value: body, path: '', depth: 0 },
  ];
  let values = 0;
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    const field = path || 'body';
    if (typeof value === 'string') {
      const problem = textProblem(value);
      if (problem) return invalidInput(field, problem);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      return invalidInput(field, `nesting deeper than ${MAX_JSON_DEPTH} levels`);
    }
    const entries = Object.entries(value);
    values += entries.length;
    if (values > MAX_JSON_VALUES) return tooManyValues();
    for (const [key, child] of entries) {
      const name = path ? `${path}.${key}` : key;
      if (FORBIDDEN_KEYS.has(key) || textProblem(key)) {
        return invalidInput(name, 'this property name is not allowed');
      }
      stack.push({ value: child, path: name, depth: depth + 1 });
    }
  }
  return undefined;
}

function tooManyValues(): ProblemError {
  return invalidInput('body', `more than ${MAX_JSON_VALUES} values (members and items)`);
}

/**
 * The commas of a JSON text outside its strings, counted up to `limit` + 1: each
 * separates two values of one object or array, so a text with more than `limit`
 * of them holds more than `limit` values. On the bytes: in UTF-8 no byte of a
 * multi-byte character is a quote, a backslash or a comma.
 */
function separators(bytes: Buffer, limit: number): number {
  let count = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) {
      inString = true;
    } else if (byte === COMMA && ++count > limit) {
      return count;
    }
  }
  return count;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

/** With the u flag, a pair of surrogates is one code point: only a lone one matches. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

function textProblem(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain NUL characters';
  if (UNPAIRED_SURROGATE.test(text)) return 'must be well-formed Unicode (an unpaired surrogate)';
  return undefined;
}

function invalidInput(field: string, message: string): ProblemError {
  return new ProblemError('validation-failed', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}
