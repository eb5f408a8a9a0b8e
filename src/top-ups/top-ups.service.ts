import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TransactionHost } from '../database/transaction-host.js';
import {
  IdempotencyService,
  KeyCompleted,
  type KeyedRequest,
  type KeyInProgress,
  KeyInUse,
  type PhasedRequest,
  type StoredKey,
} from '../idempotency/idempotency.service.js';
import { keyInUse, keyReused } from '../idempotency/key-problems.js';
import {
  type RecordedResponse,
  recordJson,
  recordProblem,
} from '../idempotency/recorded-response.js';
import { EventsService } from '../events/events.service.js';
import { BalanceLimitExceeded, LedgerService } from '../ledger/ledger.service.js';
import { CommittedProblem, NotFoundError } from '../problems/problem.js';
import type { CreateTopUpDto } from './dto/create-top-up.dto.js';
import { ProcessorClient, type ProcessorPayment } from './processor.client.js';
import { type TopUp, type TopUpView, toTopUpView } from './top-up.view.js';

const COLUMNS = `merchant_id AS "merchantId", id, account_id AS "accountId", amount, currency, card,
  idempotency_key AS "idempotencyKey", fingerprint, request_path AS "requestPath", status,
  recovery_point AS "recoveryPoint", processor_payment_id AS "processorPaymentId",
  decline_code AS "declineCode", failure_code AS "failureCode", attempts,
  last_error AS "lastError", next_attempt_at AS "nextAttemptAt", created_at AS "createdAt"`;

/** The longest wait between two tries of one top-up. */
const MAX_RETRY_SECONDS = 300;

/** 402: the processor declined the card; the top-up is recorded as declined. Stored with the key. */
export class CardDeclined extends CommittedProblem {
  constructor(topUp: TopUp, declineCode: string | null) {
    super(
      'card-declined',
      `The card was declined (${declineCode ?? 'no reason given'}); nothing was charged or credited.`,
      {
        topUpId: topUp.id,
        declineCode,
      },
    );
  }
}

/** 402: the processor never gave an answer, however often it was asked. Stored with the key. */
export class TopUpFailed extends CommittedProblem {
  constructor(topUp: TopUp, attempts: number) {
    super(
      'top-up-failed',
      `The card processor did not answer after ${attempts} tries; nothing was credited. If the card was charged, reconciliation (npm run audit) names the payment.`,
      { topUpId: topUp.id, failureCode: 'processor_unreachable' },
    );
  }
}

/** The topUps table: its only writer. */
@Injectable()
export class TopUpsService implements OnModuleInit {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
    private readonly keys: IdempotencyService,
    private readonly processor: ProcessorClient,
    private readonly events: EventsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.keys.trackInProgress((merchantId, key) => this.underWay(merchantId, key));
  }

  /**
   * Charges a card at the processor and credits the account. No transaction spans
   * the processor, so the request runs in atomic phases (decision 0012):
   *
   * (a) a transaction records the intent under our key: the top-up, pending, at its
   *     recovery point 'started', leased to this request;
   * (b) the processor call, whose key is the top-up's id: identical on every retry,
   *     so the card is charged at most once however often it is asked;
   * (c) a transaction records the outcome, credits the account and stores the
   *     response under our key: done and remembered, together.
   *
   * A retry with the same key resumes at the recovery point instead of starting
   * over. When the processor's answer is unknown (a timeout, a cut connection, a
   * 5xx), nothing is guessed: the answer is 202, pending, and the same call is made
   * again, by the client's retry or by the completer (TopUpCompleter).
   */
  async create(
    request: PhasedRequest,
    accountId: string,
    dto: CreateTopUpDto,
  ): Promise<RecordedResponse> {
    const started = await this.start(request, accountId, dto);
    if ('response' in started) return started.response;
    return this.drive(started.topUp, request);
  }

  /**
   * Phases (b) and (c), and the compensation when the account refused the money
   * the card gave: for a request, or for the completer, which leased the top-up.
   */
  async drive(topUp: TopUp, request: KeyedRequest): Promise<RecordedResponse> {
    const answer = await this.processor.charge(topUp.id, {
      amount: topUp.amount,
      currency: topUp.currency,
      card: topUp.card,
    });
    if (answer.outcome === 'unknown') return this.postpone(topUp, request, answer.reason);
    const { response, refundDue } = await this.finish(topUp, request, answer.payment);
    if (refundDue) await this.refund(refundDue);
    return response;
  }

  /**
   * Compensation: the card was charged but the account would not take the money
   * (it closed, or would pass its limit, between phases (a) and (c)). The charge is
   * refunded, once, with a key of its own; until the processor confirms it, the
   * top-up stays at its recovery point 'refunding' for the completer.
   */
  async refund(topUp: TopUp): Promise<void> {
    const answer = await this.processor.refund(
      `refund-${topUp.id}`,
      topUp.processorPaymentId!,
      topUp.amount,
    );
    if (answer.outcome === 'known') {
      await this.tx.query(
        `UPDATE top_ups SET recovery_point = 'finished', locked_until = NULL, updated_at = now()
          WHERE merchant_id = $1 AND id = $2 AND recovery_point = 'refunding'`,
        [topUp.merchantId, topUp.id],
      );
      return;
    }
    await this.tx.query(
      `UPDATE top_ups
          SET attempts = attempts + 1, last_error = $3, locked_until = NULL, updated_at = now(),
              next_attempt_at = now() + make_interval(secs => $4)
        WHERE merchant_id = $1 AND id = $2 AND recovery_point = 'refunding'`,
      [topUp.merchantId, topUp.id, answer.reason, this.retryDelay(topUp)],
    );
  }

  async get(merchantId: string, id: string): Promise<TopUpView> {
    const [row] = await this.tx.query<TopUp>(
      `SELECT ${COLUMNS} FROM top_ups WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('top-up', id);
    return toTopUpView(row);
  }

  /**
   * For the completer: leases up to `limit` top-ups left halfway whose next try is
   * due, skipping those another instance or a request holds (their lease), so that
   * many instances can complete at once without meeting. The lease is checked again
   * on each row as it is taken: of two passes that picked the same top-up, the
   * second waits for the first's UPDATE and then leaves it. (Not FOR UPDATE SKIP
   * LOCKED, which Citus refuses in a query across merchants.)
   */
  async leaseDue(limit: number): Promise<TopUp[]> {
    return this.tx.query<TopUp>(
      `UPDATE top_ups SET locked_until = now() + make_interval(secs => $2), updated_at = now()
        WHERE (merchant_id, id) IN (
              SELECT merchant_id, id FROM top_ups
               WHERE recovery_point <> 'finished' AND next_attempt_at <= now()
                 AND (locked_until IS NULL OR locked_until < now())
               ORDER BY next_attempt_at
               LIMIT $1)
          AND recovery_point <> 'finished' AND next_attempt_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
       RETURNING ${COLUMNS}`,
      [limit, this.config.TOP_UP_LEASE_SECONDS],
    );
  }

  /** The request that asked for a top-up, as its key names it. */
  requestOf(topUp: TopUp): KeyedRequest {
    return {
      merchantId: topUp.merchantId,
      key: topUp.idempotencyKey,
      method: 'POST',
      path: topUp.requestPath,
      fingerprint: topUp.fingerprint,
    };
  }

  /**
   * Phase (a): the intent and its recovery point, or the resumption of one. What
   * the account alone decides (unknown, closed, another currency) is answered
   * here, stored with the key, without troubling the processor.
   */
  private start(
    request: PhasedRequest,
    accountId: string,
    dto: CreateTopUpDto,
  ): Promise<{ topUp: TopUp } | { response: RecordedResponse }> {
    return this.tx.run(async () => {
      try {
        await this.keys.claim(request.merchantId, request.key);
      } catch (error) {
        if (error instanceof KeyInUse) throw keyInUse(request.key);
        // A duplicate finished since the interceptor looked: its response stands.
        if (error instanceof KeyCompleted) return { response: replayOf(error.stored, request) };
        throw error;
      }
      const [existing] = await this.tx.query<TopUp & { leased: boolean }>(
        `SELECT ${COLUMNS}, locked_until > now() AS leased FROM top_ups
          WHERE merchant_id = $1 AND idempotency_key = $2 AND recovery_point <> 'finished'
            FOR UPDATE`,
        [request.merchantId, request.key],
      );
      if (existing) {
        if (existing.fingerprint !== request.fingerprint) {
          throw keyReused(request.key, 'POST', existing.requestPath);
        }
        // A request with this key, or the completer, is calling the processor now;
        // or the card is being refunded, which the completer sees through.
        if (existing.leased || existing.recoveryPoint === 'refunding') throw keyInUse(request.key);
        await this.lease(existing);
        return { topUp: existing };
      }
      // None unfinished. A duplicate may have finished since the interceptor looked:
      // its phase (c) held the row just read (the SELECT waited for it), and has
      // committed the response under the key. Asked only now, the key shows it; a
      // second top-up would charge the card twice.
      const done = await this.keys.lookup(request.merchantId, request.key);
      if (done && !done.expired) return { response: replayOf(done, request) };

      try {
        await this.accounts.getMovable(request.merchantId, accountId, dto.currency);
      } catch (error) {
        if (!(error instanceof CommittedProblem)) throw error;
        const response = recordProblem(error);
        this.keys.saveAtCommit(request, response, request.expiredRow);
        return { response };
      }
      const [topUp] = await this.tx.query<TopUp>(
        `INSERT INTO top_ups (merchant_id, id, account_id, amount, currency, card, idempotency_key,
                              fingerprint, request_path, status, recovery_point, locked_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 'started',
                 now() + make_interval(secs => $10))
         RETURNING ${COLUMNS}`,
        [
          request.merchantId,
          newId('topUp'),
          accountId,
          dto.amount,
          dto.currency,
          dto.card,
          request.key,
          request.fingerprint,
          request.path,
          this.config.TOP_UP_LEASE_SECONDS,
        ],
      );
      return { topUp };
    });
  }

  /**
   * Phase (c): the outcome, the money and the stored response, in one transaction,
   * on the top-up's locked row. If someone else finished it meanwhile (the lease
   * ran out and the completer took over), their stored response is the answer.
   */
  private finish(
    topUp: TopUp,
    request: KeyedRequest,
    payment: ProcessorPayment,
  ): Promise<{ response: RecordedResponse; refundDue?: TopUp }> {
    return this.tx.run(async () => {
      const [current] = await this.tx.query<TopUp>(
        `SELECT ${COLUMNS} FROM top_ups WHERE merchant_id = $1 AND id = $2 FOR UPDATE`,
        [topUp.merchantId, topUp.id],
      );
      if (current.recoveryPoint !== 'started') return { response: await this.storedFor(request) };

      if (payment.status === 'declined') {
        const declined = await this.update(current, {
          status: 'declined',
          recoveryPoint: 'finished',
          processorPaymentId: payment.id,
          declineCode: payment.declineCode,
        });
        this.events.recordAtCommit(declined.merchantId, 'top_up.declined', toTopUpView(declined));
        return {
          response: await this.store(
            request,
            recordProblem(new CardDeclined(declined, payment.declineCode)),
          ),
        };
      }

      const credit = await this.ledger.post({
        merchantId: current.merchantId,
        accountId: current.accountId,
        currency: current.currency,
        type: 'top_up',
        amount: current.amount,
        sourceId: current.id,
      });
      if (!credit) {
        // Charged, but the account would not take it: say why, and refund the card.
        const why = await this.whyNotCredited(current);
        const failed = await this.update(current, {
          status: 'failed',
          recoveryPoint: 'refunding',
          processorPaymentId: payment.id,
          failureCode: 'credit_refused',
        });
        const problem = new CommittedProblem(
          why.code,
          `${why.detail} The card charge is refunded.`,
          {
            topUpId: current.id,
          },
        );
        this.events.recordAtCommit(failed.merchantId, 'top_up.failed', toTopUpView(failed));
        return { response: await this.store(request, recordProblem(problem)), refundDue: failed };
      }
      const succeeded = await this.update(current, {
        status: 'succeeded',
        recoveryPoint: 'finished',
        processorPaymentId: payment.id,
      });
      const view = toTopUpView(succeeded);
      this.events.recordAtCommit(succeeded.merchantId, 'top_up.succeeded', view);
      return { response: await this.store(request, recordJson(201, view, `/top-ups/${view.id}`)) };
    });
  }

  /**
   * Seconds until the next try of `topUp`: TOP_UP_RETRY_SECONDS, doubling with each
   * try made, up to MAX_RETRY_SECONDS. Worked out here from the leased row rather
   * than in the UPDATE: Citus refuses \`now() + <a function of a column>\` there.
   */
  private retryDelay(topUp: TopUp): number {
    return Math.min(this.config.TOP_UP_RETRY_SECONDS * 2 ** topUp.attempts, MAX_RETRY_SECONDS);
  }

  /**
   * The processor's answer is unknown: count the try, release the lease, and set
   * the next one; past TOP_UP_MAX_ATTEMPTS, give the top-up up (402 top-up-failed,
   * stored). Until then the answer is 202: pending, try again later.
   */
  private postpone(topUp: TopUp, request: KeyedRequest, reason: string): Promise<RecordedResponse> {
    return this.tx.run(async () => {
      const delay = this.retryDelay(topUp);
      const [tried] = await this.tx.query<TopUp>(
        `UPDATE top_ups
            SET attempts = attempts + 1, last_error = $3, locked_until = NULL, updated_at = now(),
                next_attempt_at = now() + make_interval(secs => $4)
          WHERE merchant_id = $1 AND id = $2 AND recovery_point = 'started'
         RETURNING ${COLUMNS}`,
        [topUp.merchantId, topUp.id, reason, delay],
      );
      // Finished meanwhile by someone holding it after our lease ran out: theirs is the answer.
      if (!tried) return this.storedFor(request);
      if (tried.attempts >= this.config.TOP_UP_MAX_ATTEMPTS) {
        const failed = await this.update(tried, {
          status: 'failed',
          recoveryPoint: 'finished',
          failureCode: 'processor_unreachable',
        });
        this.events.recordAtCommit(failed.merchantId, 'top_up.failed', toTopUpView(failed));
        return this.store(request, recordProblem(new TopUpFailed(failed, tried.attempts)));
      }
      const view = toTopUpView(tried);
      return {
        ...recordJson(202, view, `/top-ups/${view.id}`),
        headers: { 'Retry-After': String(Math.max(1, Math.ceil(delay))) },
      };
    });
  }

  private async lease(topUp: TopUp): Promise<void> {
    await this.tx.query(
      `UPDATE top_ups SET locked_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE merchant_id = $1 AND id = $2`,
      [topUp.merchantId, topUp.id, this.config.TOP_UP_LEASE_SECONDS],
    );
  }

  private async update(
    topUp: TopUp,
    change: Pick<TopUp, 'status' | 'recoveryPoint'> &
      Partial<Pick<TopUp, 'processorPaymentId' | 'declineCode' | 'failureCode'>>,
  ): Promise<TopUp> {
    const [row] = await this.tx.query<TopUp>(
      `UPDATE top_ups
          SET status = $3, recovery_point = $4, processor_payment_id = coalesce($5, processor_payment_id),
              decline_code = $6, failure_code = $7, locked_until = NULL, updated_at = now()
        WHERE merchant_id = $1 AND id = $2
       RETURNING ${COLUMNS}`,
      [
        topUp.merchantId,
        topUp.id,
        change.status,
        change.recoveryPoint,
        change.processorPaymentId ?? null,
        change.declineCode ?? null,
        change.failureCode ?? null,
      ],
    );
    return row;
  }

  /** Stores the response under the request's key, at COMMIT, replacing an expired row. */
  private async store(
    request: KeyedRequest,
    response: RecordedResponse,
  ): Promise<RecordedResponse> {
    const existing = await this.keys.lookup(request.merchantId, request.key);
    this.keys.saveAtCommit(request, response, existing?.expired ? existing : null);
    return response;
  }

  /** The response stored under the key by whoever finished the top-up. */
  private async storedFor(request: KeyedRequest): Promise<RecordedResponse> {
    const stored = await this.keys.lookup(request.merchantId, request.key);
    if (!stored) throw new Error(`top-up finished without a stored response for ${request.key}`);
    return { ...asRecorded(stored), replayed: true };
  }

  private async whyNotCredited(topUp: TopUp): Promise<CommittedProblem> {
    try {
      await this.accounts.getMovable(topUp.merchantId, topUp.accountId, topUp.currency);
    } catch (error) {
      if (error instanceof CommittedProblem) return error;
      throw error;
    }
    return new BalanceLimitExceeded(topUp.accountId, 'top-up');
  }

  /** A top-up not yet finished, for GET /idempotency-keys/{key}. */
  private async underWay(merchantId: string, key: string): Promise<KeyInProgress | null> {
    const [row] = await this.tx.query<KeyInProgress>(
      `SELECT 'POST' AS "requestMethod", request_path AS "requestPath", recovery_point AS phase,
              attempts, next_attempt_at AS "nextAttemptAt", created_at AS "createdAt"
         FROM top_ups
        WHERE merchant_id = $1 AND idempotency_key = $2 AND recovery_point = 'started'`,
      [merchantId, key],
    );
    return row ?? null;
  }
}

/** The response a duplicate stored under the key, replayed (422 if the requests differ). */
function replayOf(stored: StoredKey, request: KeyedRequest): RecordedResponse {
  if (stored.fingerprint !== request.fingerprint) {
    throw keyReused(request.key, stored.requestMethod, stored.requestPath);
  }
  return { ...asRecorded(stored), replayed: true };
}

function asRecorded(stored: StoredKey): RecordedResponse {
  return {
    status: stored.responseStatus,
    contentType: stored.responseContentType,
    body: stored.responseBody,
    location: stored.responseLocation,
  };
}
