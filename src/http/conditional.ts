import type { FastifyInstance } from 'fastify';
import { ProblemError } from '../problems/problem.js';

/**
 * Conditional requests (RFC 9110 §13): If-Match makes a write a compare-and-set
 * ("only if it is still what I read"), If-None-Match makes a read cheap ("only if
 * it changed since"). Entity tags are compared as the RFC says: strongly for
 * If-Match (a weak tag never matches), weakly for If-None-Match.
 */

/** `*`, or the entity tags of an If-Match or If-None-Match header. */
export type EntityTags = '*' | Array<{ tag: string; weak: boolean }>;

const ENTITY_TAG = /^(W\/)?("[\x21\x23-\x7e\x80-\xff]*")$/;

/**
 * Reads If-Match or If-None-Match: undefined when absent. A malformed header is a
 * 400, not ignored: a client that sent a precondition meant it, and a write
 * without its check could overwrite someone else's.
 */
export function parseEntityTags(
  header: string | string[] | undefined,
  name: 'If-Match' | 'If-None-Match',
): EntityTags | undefined {
  if (header === undefined) return undefined;
  const value = (Array.isArray(header) ? header.join(',') : header).trim();
  if (value === '*') return '*';
  const tags = value.split(',').map((part) => ENTITY_TAG.exec(part.trim()));
  if (value === '' || tags.some((m) => m === null)) {
    throw new ProblemError(
      'validation-failed',
      `${name} must be * or a list of entity tags such as "3" (quotes included).`,
      { errors: [{ field: name, message: 'must be * or a list of quoted entity tags' }] },
    );
  }
  return tags.map((m) => ({ tag: m![2], weak: m![1] !== undefined }));
}

/** Whether If-None-Match names the current tag (weak comparison): a GET then answers 304. */
export function ifNoneMatchNames(tags: EntityTags, current: string): boolean {
  const opaque = current.replace(/^W\//, '');
  return tags === '*' || tags.some((t) => t.tag === opaque);
}

/**
 * The versions If-Match accepts, for a conditional UPDATE (`version = ANY(...)`):
 * null for `*` or no header (any version), else those of its strong tags of
 * the form "<version>" (others can match nothing this service makes).
 */
export function versionsFrom(tags: EntityTags | undefined): number[] | null {
  if (tags === undefined || tags === '*') return null;
  return tags
    .filter((t) => !t.weak && /^"\d{1,15}"$/.test(t.tag))
    .map((t) => Number(t.tag.slice(1, -1)));
}

/**
 * Conditional GET for every route that sends an ETag: when the request's
 * If-None-Match names it, the answer is 304 Not Modified with the ETag and no
 * body, instead of the 200 the handler produced. A malformed If-None-Match is
 * ignored here (RFC 9110 lets a cache do so; a read changes nothing).
 */
export function installConditionalGet(http: FastifyInstance): void {
  http.addHook('onSend', (req, reply, payload, done) => {
    const etag = reply.getHeader('etag');
    if (req.method !== 'GET' || reply.statusCode !== 200 || typeof etag !== 'string') {
      done(null, payload);
      return;
    }
    let tags: EntityTags | undefined;
    try {
      tags = parseEntityTags(req.headers['if-none-match'], 'If-None-Match');
    } catch {
      tags = undefined;
    }
    if (tags === undefined || !ifNoneMatchNames(tags, etag)) {
      done(null, payload);
      return;
    }
    reply.code(304).removeHeader('content-type').removeHeader('content-length');
    done(null, '');
  });
}
