/**
 * A response that is already serialised (a stored 402, 404 or 422 replayed, or
 * sent the first time), carried to ProblemFilter, which sends it as it is. It is
 * thrown rather than returned because NestJS would overwrite the status of a value
 * that a handler or an interceptor returns with the route's own (201).
 */
export class VerbatimResponse extends Error {
  constructor(
    readonly status: number,
    readonly headers: Record<string, string>,
    readonly body: string,
  ) {
    super(`verbatim response ${status}`);
  }
}
