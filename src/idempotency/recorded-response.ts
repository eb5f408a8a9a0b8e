/**
 * A response as it goes over the wire: status, headers that matter and the exact
 * body bytes. Stored with a key and sent again, byte for byte, on a replay.
 */
export interface RecordedResponse {
  status: number;
  contentType: string;
  body: string;
  location: string | null;
}

/**
 * Carries a recorded response whose status is not the route's own (a stored 402,
 * 404 or 422) to the exception filter, which sends it verbatim: NestJS would
 * otherwise overwrite the status of a value returned from an interceptor.
 */
export class RecordedResponseException extends Error {
  constructor(
    readonly response: RecordedResponse,
    /** Headers about how it was answered (Idempotent-Replayed, Preference-Applied). */
    readonly headers: Record<string, string>,
  ) {
    super(`recorded response ${response.status}`);
  }
}
