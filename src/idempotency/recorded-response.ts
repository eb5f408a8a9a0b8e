import { PROBLEM_CONTENT_TYPE, problemBody, type ProblemError } from '../problems/problem.js';
import type { CompletedRequest } from './completed-responses.js';
import type { KeyedRequest } from './idempotency.service.js';
import { keyReused } from './key-problems.js';

/**
 * A response as it goes over the wire: status, headers that matter and the exact
 * body bytes. Stored with a key and sent again, byte for byte, on a replay.
 */
export interface RecordedResponse {
  status: number;
  contentType: string;
  body: string;
  location: string | null;
  /** The body's `secret` is one (a webhook signing secret): stored sealed (SecretBox), opened to replay. */
  sealed?: boolean;
}

/** What an idempotent request came to: a response, sent the first time or replayed. */
export interface Answer {
  response: RecordedResponse;
  replayed: boolean;
}

/** A JSON body, serialised once: what is sent is what is stored. */
export function recordJson(
  status: number,
  body: unknown,
  location: string | null = null,
): RecordedResponse {
  return { status, contentType: 'application/json', body: JSON.stringify(body), location };
}

/** A business outcome's problem details (402, 404, 409, 422), serialised once. */
export function recordProblem(problem: ProblemError): RecordedResponse {
  return {
    status: problem.status,
    contentType: PROBLEM_CONTENT_TYPE,
    body: problemBody(problem.code, problem.detail, problem.extensions),
    location: null,
  };
}

/**
 * The response of a completed request, replayed to a retry of it: the same
 * status, the same bytes, the same Location. A key sent again with another
 * request (another body or path) is refused with 422 instead: nothing executes.
 */
export function replay(completed: CompletedRequest, request: KeyedRequest): Answer {
  if (completed.fingerprint !== request.fingerprint) {
    throw keyReused(request.key, completed.requestMethod, completed.requestPath);
  }
  return {
    response: {
      status: completed.responseStatus,
      contentType: completed.responseContentType,
      body: completed.responseBody,
      location: completed.responseLocation,
    },
    replayed: true,
  };
}
