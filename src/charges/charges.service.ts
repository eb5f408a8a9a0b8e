import { Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { type List, pageAfter, pageParams, toList } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { EventsService } from '../events/events.service.js';
import { LedgerService } from '../ledger/ledger.service.js';
import { CommittedProblem, NotFoundError } from '../problems/problem.js';
import { type Charge, CHARGE_COLUMNS, type ChargeView, toChargeView } from './charge.js';
import type { CreateChargeDto } from './dto/create-charge.dto.js';
import type { ListChargesQuery } from './dto/list-charges.query.js';

/** 402: the charge was recorded as failed; `chargeId` lets the client find it. */
export class InsufficientFundsError extends CommittedProblem {
  constructor(charge: Charge) {
    super(
      'insufficient-funds',
      `Account ${charge.accountId} does not hold ${charge.amount} ${charge.currency}; charge ${charge.id} was recorded as failed.`,
      { chargeId: charge.id },
    );
  }
}

/** The charges table: its only writer. */
@Injectable()
export class ChargesService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
    private readonly events: EventsService,
  ) {}

  /**
   * Debits the account and records the charge, in the request's transaction.
   * Without the funds, the charge is recorded as failed (no ledger entry, balance
   * untouched) and a 402 is raised, committed and replayed like a success.
   *
   * A successful charge costs one statement and no wait of its own: the debit
   * (LedgerService.post), whose answer decides everything, and the charge's row,
   * whose answer nobody needs, sent with COMMIT.
   */
  async create(merchantId: string, dto: CreateChargeDto): Promise<ChargeView> {
    const charge = {
      merchantId,
      id: newId('charge'),
      accountId: dto.accountId,
      amount: dto.amount,
      currency: dto.currency,
      description: dto.description ?? null,
      metadata: dto.metadata ?? {},
      amountRefunded: 0,
    };
    const debit = await this.ledger.post({
      merchantId,
      accountId: dto.accountId,
      currency: dto.currency,
      type: 'charge',
      amount: -dto.amount,
      sourceId: charge.id,
    });
    if (debit) {
      const succeeded: Charge = {
        ...charge,
        status: 'succeeded',
        failureCode: null,
        createdAt: debit.createdAt,
      };
      this.tx.atCommit(INSERT_CHARGE, chargeValues(succeeded));
      const view = toChargeView(succeeded);
      this.events.recordAtCommit(merchantId, 'charge.succeeded', view);
      return view;
    }

    // No debit: find out why (unknown or closed account, other currency, or not enough money).
    await this.accounts.getMovable(merchantId, dto.accountId, dto.currency);
    const failed = { ...charge, status: 'failed', failureCode: 'insufficient_funds' } as const;
    const [{ createdAt }] = await this.tx.query<{ createdAt: Date }>(
      `${INSERT_CHARGE} RETURNING created_at AS "createdAt"`,
      chargeValues(failed),
    );
    this.events.recordAtCommit(merchantId, 'charge.failed', toChargeView({ ...failed, createdAt }));
    throw new InsufficientFundsError({ ...failed, createdAt });
  }

  async get(merchantId: string, id: string): Promise<ChargeView> {
    const [row] = await this.tx.query<Charge>(
      `SELECT ${CHARGE_COLUMNS} FROM charges WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('charge', id);
    return toChargeView(row);
  }

  async list(merchantId: string, query: ListChargesQuery): Promise<List<ChargeView>> {
    const rows = await this.tx.query<Charge>(
      `SELECT ${CHARGE_COLUMNS} FROM charges
        WHERE merchant_id = $1 AND ($2::text IS NULL OR account_id = $2) ${pageAfter(3)}`,
      [merchantId, query.accountId ?? null, ...pageParams(query)],
    );
    return toList(rows, query, toChargeView);
  }

  /**
   * The charge, its row locked until the transaction ends (FOR UPDATE), or a 404:
   * refunds of one charge take turns, so together they can never exceed it.
   */
  async getForRefund(merchantId: string, id: string): Promise<Charge> {
    const [row] = await this.tx.query<Charge>(
      `SELECT ${CHARGE_COLUMNS} FROM charges WHERE merchant_id = $1 AND id = $2 FOR UPDATE`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('charge', id);
    return row;
  }

  /**
   * Adds a refund to the charge's running total, sent with COMMIT. The caller
   * holds the row lock (getForRefund) and has checked the amount; the CHECK
   * amount_refunded <= amount is the database's own guard.
   */
  addRefundedAtCommit(merchantId: string, id: string, amount: number): void {
    this.tx.atCommit(
      `UPDATE charges SET amount_refunded = amount_refunded + $3::bigint
        WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id, amount],
    );
  }
}

/** $10, created_at: the debit's time when there was one (the transaction's now()), else now(). */
const INSERT_CHARGE = `INSERT INTO charges (merchant_id, id, account_id, amount, currency, description,
                     metadata, status, failure_code, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now()))`;

function chargeValues(charge: Omit<Charge, 'createdAt'> & { createdAt?: Date }): unknown[] {
  return [
    charge.merchantId,
    charge.id,
    charge.accountId,
    charge.amount,
    charge.currency,
    charge.description,
    JSON.stringify(charge.metadata),
    charge.status,
    charge.failureCode,
    charge.createdAt ?? null,
  ];
}
