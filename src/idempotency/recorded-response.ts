import { PROBLEM_CONTENT_TYPE, problemBody, type ProblemError } from '../problems/problem.js';

/**
 * A response as it goes over the wire: status, headers that matter and the exact
 * body bytes. Stored with a key and sent again, byte for byte, on a replay.
 */
export interface RecordedResponse {
  status: number;
  contentType: string;
  body: string;
  location: string | null;
  /** Sent with it and never stored: only on a response that is not stored (a 202). */
  headers?: Record<string, string>;
  /**
   * Not stored either: a handler run in phases sets it when the response it returns
   * was stored by another (a duplicate that finished first), so it goes out marked
   * Idempotent-Replayed.
   */
  replayed?: boolean;
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
