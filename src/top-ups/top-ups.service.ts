import { Inject, Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TransactionHost } from '../database/transaction-host.js';
import type { KeyedRequest } from '../idempotency/idempotency.service.js';
import {
  type Committed,
  type PhaseResult,
  type PhaseRun,
  type Phases,
  recoveryPoint,
  type ResumablePhases,
  response,
  tryAgainLater,
  type TryAgainLater,
} from '../idempotency/phases.js';
import { EventsService } from '../events/events.service.js';
import { BalanceLimitExceeded, LedgerService } from '../ledger/ledger.service.js';
import { CommittedProblem, NotFoundError } from '../problems/problem.js';
import type { CreateTopUpDto } from './dto/create-top-up.dto.js';
import { ProcessorClient, type ProcessorPayment } from './processor.client.js';
import { type TopUp, TOP_UP_COLUMNS, type TopUpView, toTopUpView } from './top-up.js';

/** Where a top-up rests between its phases. */
const STARTED = 'started'; // (a) is done: the intent is recorded; (b) charges the card
const REFUNDING = 'refunding'; // charged, but the account refused the money: the card is refunded

/** The longest wait between two tries of one top-up. */
const MAX_RETRY_SECONDS = 300;

/** 402: the processor declined the card; the top-up is recorded as declined. Stored with the key. */
export class CardDeclined extends CommittedProblem {
  constructor(topUp: TopUp, declineCode: string | null) {
    super(
      'card-declined',
      `The card was declined (${declineCode ?? 'no reason given'}); nothing was charged or credited.`,
      { topUpId: topUp.id, declineCode },
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

/** The top_ups table: its only writer. Card top-ups, in atomic phases. */
@Injectable()
export class TopUpsService {
  /** How a top-up resumes from where it rests: what a retry and the completer run. */
  readonly phases: ResumablePhases<TopUpView>;

  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
    private readonly processor: ProcessorClient,
    private readonly events: EventsService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.phases = {
      operation: 'top-up',
      resume: { [STARTED]: (run) => this.charge(run), [REFUNDING]: (run) => this.refund(run) },
      giveUp: (run) => this.giveUp(run),
      retry: {
        maxAttempts: config.TOP_UP_MAX_ATTEMPTS,
        firstDelaySeconds: config.TOP_UP_RETRY_SECONDS,
        maxDelaySeconds: MAX_RETRY_SECONDS,
        leaseSeconds: config.TOP_UP_LEASE_SECONDS,
      },
      location: (topUp) => `/top-ups/${topUp.id}`,
    };
  }

  /**
   * A card top-up: charged at the processor, credited here. No transaction spans
   * the processor, so it runs in atomic phases (decision 0012), which the
   * idempotency module runs under the request's key:
   *
   * (a) the intent: the top-up, pending, in the transaction that claims the key;
   * (b) the processor call, keyed by the top-up's id, the same on every retry, so
   *     the card is charged at most once however often it is asked;
   * (c) the outcome and the credit, in one transaction with the stored answer.
   *
   * When the processor's answer is unknown (a timeout, a cut connection, a 5xx),
   * nothing is guessed: the answer is 202, pending, and (b) is made again, by the
   * client's retry or by the completer (TopUpCompleter).
   */
  create(accountId: string, dto: CreateTopUpDto): Phases<TopUpView> {
    return { ...this.phases, start: (request) => this.recordIntent(request, accountId, dto) };
  }

  async get(merchantId: string, id: string): Promise<TopUpView> {
    const [row] = await this.tx.query<TopUp>(
      `SELECT ${TOP_UP_COLUMNS} FROM top_ups WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('top-up', id);
    return toTopUpView(row);
  }

  /**
   * Phase (a). What the account alone decides (unknown, closed, another
   * currency) is the answer, without troubling the processor.
   */
  private async recordIntent(
    request: KeyedRequest,
    accountId: string,
    dto: CreateTopUpDto,
  ): Promise<PhaseResult<TopUpView>> {
    await this.accounts.getMovable(request.merchantId, accountId, dto.currency);
    await this.tx.query(
      `INSERT INTO top_ups (merchant_id, id, account_id, amount, currency, card, idempotency_key, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')`,
      [
        request.merchantId,
        newId('topUp'),
        accountId,
        dto.amount,
        dto.currency,
        dto.card,
        request.key,
      ],
    );
    return recoveryPoint(STARTED);
  }

  /** Phases (b) and (c): the processor's answer, then what it means here. */
  private async charge(run: PhaseRun<TopUpView>): Promise<Committed | TryAgainLater<TopUpView>> {
    const topUp = await this.pendingOf(run.request);
    const { amount, currency, card } = topUp;
    const answer = await this.processor.charge(topUp.id, { amount, currency, card });
    if (answer.outcome === 'unknown') return tryAgainLater(answer.reason, toTopUpView(topUp));
    return run.atomicPhase(() => this.recordOutcome(topUp, answer.payment));
  }

  /** Phase (c): the outcome, and the credit that a successful charge brings. */
  private async recordOutcome(
    topUp: TopUp,
    payment: ProcessorPayment,
  ): Promise<PhaseResult<TopUpView>> {
    if (payment.status === 'declined') {
      const declined = await this.update(topUp, 'declined', payment.id, {
        declineCode: payment.declineCode,
      });
      this.events.recordAtCommit(declined.merchantId, 'top_up.declined', toTopUpView(declined));
      throw new CardDeclined(declined, payment.declineCode);
    }
    const credit = await this.ledger.post({
      merchantId: topUp.merchantId,
      accountId: topUp.accountId,
      currency: topUp.currency,
      type: 'top_up',
      amount: topUp.amount,
      sourceId: topUp.id,
    });
    if (!credit) {
      // Charged, but the account would not take the money: it closed, or would
      // pass its limit, since (a). The card is refunded before anything is answered.
      await this.update(topUp, 'pending', payment.id);
      return recoveryPoint(REFUNDING);
    }
    const succeeded = await this.update(topUp, 'succeeded', payment.id);
    const view = toTopUpView(succeeded);
    this.events.recordAtCommit(succeeded.merchantId, 'top_up.succeeded', view);
    return response(view);
  }

  /**
   * Compensation: the card charge is refunded, once (the refund has a key of its
   * own), and then the account's refusal is the answer.
   */
  private async refund(run: PhaseRun<TopUpView>): Promise<Committed | TryAgainLater<TopUpView>> {
    const topUp = await this.pendingOf(run.request);
    const answer = await this.processor.refund(
      `refund-${topUp.id}`,
      topUp.processorPaymentId!,
      topUp.amount,
    );
    if (answer.outcome === 'unknown') return tryAgainLater(answer.reason, toTopUpView(topUp));
    return run.atomicPhase(async () => {
      throw await this.refused(topUp, 'The card charge is refunded.');
    });
  }

  /** TOP_UP_MAX_ATTEMPTS tries, and the processor's answer still unknown. */
  private async giveUp(run: PhaseRun<TopUpView>): Promise<never> {
    const topUp = await this.pendingOf(run.request);
    if (run.recoveryPoint === REFUNDING) {
      throw await this.refused(
        topUp,
        `The card was charged, and its refund not confirmed after ${run.attempts} tries: reconciliation (npm run audit) names the payment.`,
      );
    }
    const failed = await this.update(topUp, 'failed', null, {
      failureCode: 'processor_unreachable',
    });
    this.events.recordAtCommit(failed.merchantId, 'top_up.failed', toTopUpView(failed));
    throw new TopUpFailed(failed, run.attempts);
  }

  /** The top-up failed because the account refused the money: why, as the answer (409 or 422). */
  private async refused(topUp: TopUp, what: string): Promise<CommittedProblem> {
    const why = await this.whyNotCredited(topUp);
    const failed = await this.update(topUp, 'failed', null, { failureCode: 'credit_refused' });
    this.events.recordAtCommit(failed.merchantId, 'top_up.failed', toTopUpView(failed));
    return new CommittedProblem(why.code, `${why.detail} ${what}`, { topUpId: topUp.id });
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

  /** The top-up a request in phases made, still pending (top_ups_pending_key: one per key). */
  private async pendingOf(request: KeyedRequest): Promise<TopUp> {
    const [row] = await this.tx.query<TopUp>(
      `SELECT ${TOP_UP_COLUMNS} FROM top_ups
        WHERE merchant_id = $1 AND idempotency_key = $2 AND status = 'pending'`,
      [request.merchantId, request.key],
    );
    if (!row) throw new Error(`no pending top-up for key ${request.key}`);
    return row;
  }

  private async update(
    topUp: TopUp,
    status: TopUp['status'],
    processorPaymentId: string | null,
    codes: Partial<Pick<TopUp, 'declineCode' | 'failureCode'>> = {},
  ): Promise<TopUp> {
    const [row] = await this.tx.query<TopUp>(
      `UPDATE top_ups
          SET status = $3, processor_payment_id = coalesce($4, processor_payment_id),
              decline_code = $5, failure_code = $6, updated_at = now()
        WHERE merchant_id = $1 AND id = $2
       RETURNING ${TOP_UP_COLUMNS}`,
      [
        topUp.merchantId,
        topUp.id,
        status,
        processorPaymentId,
        codes.declineCode ?? null,
        codes.failureCode ?? null,
      ],
    );
    return row;
  }
}
