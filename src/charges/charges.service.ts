import { Injectable } from '@nestjs/common';
import { AccountsService, CurrencyMismatchError } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { type List, page } from '../common/list.js';
import { DomainError, NotFoundError } from '../common/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { Charge } from './charge.entity.js';
import { type ChargeView, toChargeView } from './charge.view.js';
import type { CreateChargeDto } from './dto/create-charge.dto.js';
import type { ListChargesQuery } from './dto/list-charges.query.js';

/** 402: the charge was recorded as failed; `chargeId` lets the client find it. */
export class InsufficientFundsError extends DomainError {
  constructor(charge: Charge) {
    super(
      'insufficient-funds',
      `Account ${charge.accountId} does not hold ${charge.amount} ${charge.currency}; charge ${charge.id} was recorded as failed.`,
      { chargeId: charge.id },
    );
  }
}

@Injectable()
export class ChargesService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
  ) {}

  /**
   * Debits the account and records the charge and its ledger entry, in the
   * request's transaction. Without the funds, the charge is recorded as failed
   * (no ledger entry, balance untouched) and a 402 domain error is raised.
   *
   * One statement when it succeeds: every round trip costs latency and CPU, and
   * while the account's row is locked by the debit it holds up other charges on it.
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
    const succeeded = await this.debitAndRecord({
      ...charge,
      status: 'succeeded',
      failureCode: null,
    });
    if (succeeded) return toChargeView(succeeded);

    // No debit: find out why (unknown account, other currency, or not enough money).
    const account = await this.accounts.get(merchantId, dto.accountId);
    if (account.currency !== dto.currency) throw new CurrencyMismatchError(dto.currency, account);
    const failed = await this.insertFailed({
      ...charge,
      status: 'failed',
      failureCode: 'insufficient_funds',
    });
    throw new InsufficientFundsError(failed);
  }

  async get(merchantId: string, id: string): Promise<ChargeView> {
    const [row] = await this.tx.query<Charge & { amount: string; amountRefunded: string }>(
      `SELECT merchant_id AS "merchantId", id, account_id AS "accountId", amount, currency,
              description, metadata, status, failure_code AS "failureCode",
              amount_refunded AS "amountRefunded", created_at AS "createdAt"
         FROM charges WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('charge', id);
    return toChargeView({
      ...row,
      amount: Number(row.amount),
      amountRefunded: Number(row.amountRefunded),
    });
  }

  async list(merchantId: string, query: ListChargesQuery): Promise<List<ChargeView>> {
    const qb = this.tx
      .repository(Charge)
      .createQueryBuilder('charge')
      .where('charge.merchant_id = :merchantId', { merchantId });
    if (query.accountId)
      qb.andWhere('charge.account_id = :accountId', { accountId: query.accountId });
    return page(qb, query, toChargeView);
  }

  /**
   * The debit, the charge and its ledger entry, in one statement. The debit is
   * the one conditional UPDATE that takes money out of an account: its row lock
   * serialises concurrent charges on the account, and its WHERE clause re-checks
   * currency and balance after the lock, so two charges can never spend the same
   * money. When it matches no row, nothing is written and the result is null.
   */
  private async debitAndRecord(charge: Omit<Charge, 'createdAt'>): Promise<Charge | null> {
    const [row] = await this.tx.query<{ createdAt: Date }>(
      `WITH debit AS (
         UPDATE accounts SET balance = balance - $4::bigint, updated_at = now()
          WHERE merchant_id = $1 AND id = $3 AND currency = $5 AND balance >= $4::bigint
         RETURNING balance),
       charge AS (
         INSERT INTO charges (merchant_id, id, account_id, amount, currency, description, metadata,
                              status, failure_code)
         SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9 FROM debit
         RETURNING merchant_id, id, account_id, amount)
       INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       SELECT charge.merchant_id, $10, charge.account_id, 'charge', -charge.amount, debit.balance,
              charge.id
         FROM charge, debit
       RETURNING created_at AS "createdAt"`,
      [...chargeValues(charge), newId('ledgerEntry')],
    );
    return row ? { ...charge, createdAt: row.createdAt } : null;
  }

  private async insertFailed(charge: Omit<Charge, 'createdAt'>): Promise<Charge> {
    const [row] = await this.tx.query<{ createdAt: Date }>(
      `INSERT INTO charges (merchant_id, id, account_id, amount, currency, description, metadata,
                            status, failure_code)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       RETURNING created_at AS "createdAt"`,
      chargeValues(charge),
    );
    return { ...charge, createdAt: row.createdAt };
  }
}

function chargeValues(charge: Omit<Charge, 'createdAt'>): unknown[] {
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
  ];
}
