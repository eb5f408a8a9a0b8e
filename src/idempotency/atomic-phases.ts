import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host.js';
import { CommittedProblem, ProblemError } from '../problems/problem.js';
import { IdempotencyService, type KeyedRequest } from './idempotency.service.js';
import { keyInUse, keyReused } from './key-problems.js';
import type {
  Committed,
  PhaseResult,
  PhaseRun,
  Phases,
  ResumablePhases,
  TryAgainLater,
} from './phases.js';
import {
  type Answer,
  type RecordedResponse,
  recordJson,
  recordProblem,
  replay,
} from './recorded-response.js';
import { RecoveryPoints, type UnderWay } from './recovery-points.js';

/** How a request run in phases was answered: its response (the first time, or replayed), or not yet. */
export type PhasedOutcome<T> = Answer | { pending: { value: T; retryAfterSeconds: number } };

/** Requests resumed per batch of a completer's pass: a pass stays short, other instances take the rest. */
export const RESUME_BATCH = 10;

/** Someone else moved the request on while this run drove it: the answer is theirs. */
class MovedOn extends Error {}

/**
 * Runs requests in atomic phases (decision 0012) under their Idempotency-Key, with
 * the protocol of every idempotent route: a completed request is replayed, a key
 * reused for another request gets 422, a request that someone else is running
 * gets 409. What a request in phases adds is its recovery point, and a lease on
 * it while a run drives it outside any transaction (RecoveryPoints keeps both).
 * The interceptor runs a client's request; a feature's completer resumes the
 * requests left halfway, through the same drive().
 */
@Injectable()
export class AtomicPhases {
  constructor(
    private readonly tx: TransactionHost,
    private readonly keys: IdempotencyService,
    private readonly points: RecoveryPoints,
  ) {}

  /**
   * A client's request: replay it if it completed; otherwise claim its key in a
   * transaction that also starts the request (phase (a)) or, for a retry, takes
   * the lease of the request under way with this key; then drive it.
   */
  async run<T>(request: KeyedRequest, phases: Phases<T>): Promise<PhasedOutcome<T>> {
    const remembered = this.keys.recall(request);
    if (remembered) return replay(remembered, request);
    let claimed: Run<T> | Answer;
    try {
      claimed = await this.tx.run(async () => {
        this.keys.claim(request, { inPhases: true });
        const underWay = await this.points.lock(request);
        if (underWay) return this.resume(underWay, request, phases);
        // Nothing under way. A run that was finishing the request held its row, and
        // the lock waited for it: its answer is stored now, and the key shows it.
        const finished = await this.keys.findCompleted(request);
        return finished ? replay(finished, request) : this.start(request, phases);
      });
    } catch (error) {
      const refusal = this.keys.refusalOf(error);
      if (refusal === 'completed') return this.answerOf(request);
      if (refusal === 'in-use') throw keyInUse(request.key);
      throw error;
    }
    return claimed instanceof Run ? this.drive(claimed, phases) : claimed;
  }

  /**
   * A completer's pass: leases the requests of these phases whose next try is
   * due and that nobody holds, batch after batch, and drives each as a retry
   * would. Returns how many it took.
   */
  async resumeDue<T>(phases: ResumablePhases<T>): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.points.leaseDue(
        phases.operation,
        RESUME_BATCH,
        phases.retry.leaseSeconds,
      );
      for (const underWay of due) {
        try {
          await this.drive(this.runFrom(underWay, phases), phases);
        } catch (error) {
          if (!(error instanceof ProblemError)) throw error; // someone else holds it now
        }
      }
      total += due.length;
      if (due.length < RESUME_BATCH) return total;
    }
  }

  /** Phase (a), in the claim's transaction: the request rests at its first recovery point, or is answered. */
  private async start<T>(request: KeyedRequest, phases: Phases<T>): Promise<Run<T>> {
    const result = await settle(() => phases.start(request));
    if ('recoveryPoint' in result) {
      const { leaseSeconds } = phases.retry;
      const createdAt = await this.points.insert(
        request,
        phases.operation,
        result.recoveryPoint,
        leaseSeconds,
      );
      return this.runFrom(
        { request, recoveryPoint: result.recoveryPoint, attempts: 0, createdAt },
        phases,
      );
    }
    const run = this.runFrom({ request, recoveryPoint: '', attempts: 0 }, phases);
    run.answer = { response: this.record(result, phases), replayed: false };
    this.keys.storeAtCommit(request, run.answer.response);
    return run;
  }

  /** A retry of a request under way: 422 if the key now names another request, 409 while a run holds it. */
  private async resume<T>(
    underWay: UnderWay,
    request: KeyedRequest,
    phases: Phases<T>,
  ): Promise<Run<T>> {
    if (underWay.request.fingerprint !== request.fingerprint) {
      throw keyReused(request.key, underWay.request.method, underWay.request.path);
    }
    if (underWay.leased) throw keyInUse(request.key);
    await this.points.lease(request, phases.retry.leaseSeconds);
    return this.runFrom(underWay, phases);
  }

  /**
   * Runs the request's phases, each from the recovery point the last one left,
   * until one answers it, or one's outcome stays unknown (then it waits for its
   * next try, and the answer is: not yet).
   */
  private async drive<T>(run: Run<T>, phases: ResumablePhases<T>): Promise<PhasedOutcome<T>> {
    try {
      while (!run.answer) {
        const phase = phases.resume[run.recoveryPoint];
        if (!phase) throw new Error(`${phases.operation}: no phase resumes '${run.recoveryPoint}'`);
        const result = await phase(run);
        if ('tryAgainLater' in result) return await this.postpone(run, phases, result);
      }
      return run.answer;
    } catch (error) {
      if (error instanceof MovedOn) return this.answerOf(run.request);
      throw error;
    }
  }

  /** PhaseRun.atomicPhase: `work` and what it comes to, in one transaction, on the request's locked row. */
  private async atomicPhase<T>(
    run: Run<T>,
    phases: ResumablePhases<T>,
    work: () => Promise<PhaseResult<T>>,
  ): Promise<Committed> {
    const result = await this.tx.run(async () => {
      if (!(await this.points.lockAt(run.request, run.recoveryPoint))) throw new MovedOn();
      const result = await settle(work);
      if ('recoveryPoint' in result) {
        this.points.moveAtCommit(run.request, result.recoveryPoint);
        return result;
      }
      return this.answerAtCommit(run, this.record(result, phases));
    });
    if ('recoveryPoint' in result) {
      run.recoveryPoint = result.recoveryPoint;
      run.attempts = 0;
    } else {
      run.answer = { response: result, replayed: false };
    }
    return { committed: true };
  }

  /**
   * A phase's outcome stayed unknown: count the try and set the next one (the
   * retry policy's wait, doubling); past retry.maxAttempts, the feature gives the
   * request up, and that is its answer.
   */
  private async postpone<T>(
    run: Run<T>,
    phases: ResumablePhases<T>,
    later: TryAgainLater<T>,
  ): Promise<PhasedOutcome<T>> {
    const { firstDelaySeconds, maxDelaySeconds, maxAttempts } = phases.retry;
    const delay = Math.min(firstDelaySeconds * 2 ** run.attempts, maxDelaySeconds);
    const given = await this.tx.run(async () => {
      const attempts = await this.points.countTry(
        run.request,
        run.recoveryPoint,
        later.tryAgainLater,
        delay,
      );
      if (attempts === null) throw new MovedOn();
      run.attempts = attempts;
      if (attempts < maxAttempts) return null;
      const givenUp = await settle(async () => ({ response: await phases.giveUp(run) }));
      return this.answerAtCommit(run, this.record(givenUp, phases));
    });
    if (given) return { response: given, replayed: false };
    return {
      pending: { value: later.meanwhile, retryAfterSeconds: Math.max(1, Math.ceil(delay)) },
    };
  }

  /** The request is answered, at COMMIT: its response stored under the key, its recovery point gone. */
  private answerAtCommit<T>(run: Run<T>, response: RecordedResponse): RecordedResponse {
    this.points.deleteAtCommit(run.request);
    this.keys.storeAtCommit(run.request, response, run.firstUsedAt);
    return response;
  }

  /** After a refused claim, or once someone else moved the request on: their stored answer, or 409. */
  private async answerOf(request: KeyedRequest): Promise<Answer> {
    const stored = await this.keys.findCompleted(request);
    if (stored) return replay(stored, request);
    throw keyInUse(request.key);
  }

  /** A final outcome as it is stored: 201 with the resource's Location, or the problem. */
  private record<T>(
    outcome: { response: T } | { problem: CommittedProblem },
    phases: ResumablePhases<T>,
  ): RecordedResponse {
    if ('problem' in outcome) return recordProblem(outcome.problem);
    return recordJson(201, outcome.response, phases.location(outcome.response));
  }

  private runFrom<T>(
    underWay: Omit<UnderWay, 'leased' | 'createdAt'> & { createdAt?: Date },
    phases: ResumablePhases<T>,
  ): Run<T> {
    return new Run(underWay, (run, work) => this.atomicPhase(run, phases, work));
  }
}

/** One run of a request's phases: where it rests, and its answer once it has one. */
class Run<T> implements PhaseRun<T> {
  readonly request: KeyedRequest;
  recoveryPoint: string;
  attempts: number;
  /** When the key was first used; undefined for a request answered in its first phase. */
  readonly firstUsedAt?: Date;
  answer?: Answer;

  constructor(
    from: Omit<UnderWay, 'leased' | 'createdAt'> & { createdAt?: Date },
    private readonly commit: (
      run: Run<T>,
      work: () => Promise<PhaseResult<T>>,
    ) => Promise<Committed>,
  ) {
    this.request = from.request;
    this.recoveryPoint = from.recoveryPoint;
    this.attempts = from.attempts;
    this.firstUsedAt = from.createdAt;
  }

  atomicPhase(work: () => Promise<PhaseResult<T>>): Promise<Committed> {
    return this.commit(this, work);
  }
}

/** A phase's result, or the business outcome it threw: both are committed and stored. */
async function settle<R>(work: () => Promise<R>): Promise<R | { problem: CommittedProblem }> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof CommittedProblem) return { problem: error };
    throw error;
  }
}
