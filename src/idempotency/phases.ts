import type { KeyedRequest } from './idempotency.service.js';

/**
 * The vocabulary of a request run in atomic phases (decision 0012), in the shape
 * of Stripe's rocket-rides-atomic. A feature describes its phases with it;
 * AtomicPhases runs them under the request's key.
 *
 * Between two phases the request rests at a **recovery point**: a name, kept in
 * PostgreSQL with the key, that says which phase comes next. Each phase's work in
 * the database runs in an **atomic phase**: one transaction that also moves the
 * recovery point on, or stores the request's response. A crash anywhere leaves
 * the request at its last recovery point, and whoever comes next (the client's
 * retry, or the feature's completer) resumes it there.
 */

/** What an atomic phase comes to. */
export type PhaseResult<T> =
  /** Done with this phase: the request rests here, and the phase named so goes on. */
  | { recoveryPoint: string }
  /**
   * Done with the request: this is its answer, stored under the key (201, with
   * `location`). A business outcome that ends it otherwise (a decline) is thrown
   * as a CommittedProblem, as on any idempotent route, and stored the same way.
   */
  | { response: T };

export const recoveryPoint = (name: string) => ({ recoveryPoint: name });
export const response = <T>(value: T) => ({ response: value });

/** An atomic phase has committed: its result is kept, and the run goes on from it. */
export interface Committed {
  readonly committed: true;
}

/**
 * A phase whose outcome outside the database is unknown (a timeout, a cut
 * connection, a 5xx): nothing is guessed. The try is counted, the request rests
 * at its recovery point until the next try is due, and the client is answered
 * `meanwhile` (202, not stored).
 */
export interface TryAgainLater<T> {
  tryAgainLater: string;
  meanwhile: T;
}

export const tryAgainLater = <T>(reason: string, meanwhile: T): TryAgainLater<T> => ({
  tryAgainLater: reason,
  meanwhile,
});

/** A request run in phases, as a phase sees it. */
export interface PhaseRun<T> {
  readonly request: KeyedRequest;
  /** Where the request rests: the phase being run resumes from here. */
  readonly recoveryPoint: string;
  /** Tries of this phase so far whose outcome stayed unknown. */
  readonly attempts: number;
  /**
   * Runs `work` in one transaction together with what it comes to: the move to
   * the recovery point it returns, or the storing of its response. Both, or
   * neither. If someone else moved the request on meanwhile (a lease that ran out,
   * the completer), this run stops, and the answer is theirs.
   */
  atomicPhase(work: () => Promise<PhaseResult<T>>): Promise<Committed>;
}

/** How often a phase with an unknown outcome is tried, and how long apart. */
export interface RetryPolicy {
  /** Tries before the feature gives the request up (giveUp). */
  maxAttempts: number;
  /** The first wait; it doubles with each try... */
  firstDelaySeconds: number;
  /** ...up to this. */
  maxDelaySeconds: number;
  /** How long a run holds the request it is driving (its lease). */
  leaseSeconds: number;
}

/** The phases that resume a request from its recovery points: what a retry and the completer run. */
export interface ResumablePhases<T> {
  /** Names the operation in its recovery point's row: its completer takes only its own. */
  readonly operation: string;
  /** Each phase, by the recovery point it resumes from. */
  readonly resume: Readonly<
    Record<string, (run: PhaseRun<T>) => Promise<Committed | TryAgainLater<T>>>
  >;
  /**
   * After retry.maxAttempts tries left unknown, in a transaction: the request's
   * final answer (usually a CommittedProblem, thrown).
   */
  giveUp(run: PhaseRun<T>): Promise<T>;
  readonly retry: RetryPolicy;
  /** The Location of the resource the request made: its answers, final or not, name it. */
  location(value: T): string;
}

/** A new request's phases: the first, then the rest. */
export interface Phases<T> extends ResumablePhases<T> {
  /**
   * Phase (a), run in the transaction that claims the key: a crash leaves either
   * nothing at all, or the request at the recovery point this returns.
   */
  start(request: KeyedRequest): Promise<PhaseResult<T>>;
}
