import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { ProblemError } from '../problems/problem.js';

/**
 * Headers a request may carry once: two of them are ambiguous, and Node.js would
 * settle it silently (the first Authorization wins; two Idempotency-Keys are
 * joined as `a, b`, a key no client chose). Counted in the raw headers.
 */
const ONCE = new Set(['authorization', 'idempotency-key', 'if-match', 'content-type']);

/** 400 for a request that repeats a header it may carry once. */
export function rejectDuplicateHeaders(
  req: FastifyRequest,
  _reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  const raw = req.raw.rawHeaders;
  const seen = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!ONCE.has(name)) continue;
    if (seen.has(name)) {
      const message = `the ${raw[i]} header must be sent once`;
      done(
        new ProblemError('validation-failed', message, {
          errors: [{ field: raw[i], message }],
        }),
      );
      return;
    }
    seen.add(name);
  }
  done();
}
