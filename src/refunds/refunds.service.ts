import { Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { Charge } from '../charges/charge.entity.js';
import { newId } from '../common/ids.js';
import { DomainError, NotFoundError } from '../common/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { LedgerService } from '../ledger/ledger.service.js';
import type { CreateRefundDto } from './dto/create-refund.dto.js';
import { Refund } from './refund.entity.js';
import { type RefundView, toRefundView } from './refund.view.js';

@Injectable()
export class RefundsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
  ) {}

  /**
   * Refunds all or part of a succeeded charge: credits its account and records the
   * refund and its ledger entry, in the request's transaction. The charge's row
   * lock (FOR UPDATE) serialises refunds of one charge, so concurrent partial
   * refunds can never add up to more than the charge.
   */
  async create(merchantId: string, chargeId: string, dto: CreateRefundDto): Promise<RefundView> {
    const [row] = await this.tx.query<Charge & { amount: string; amountRefunded: string }>(
      `SELECT account_id AS "accountId", amount, currency, status, amount_refunded AS "amountRefunded"
         FROM charges WHERE merchant_id = $1 AND id = $2
          FOR UPDATE`,
      [merchantId, chargeId],
    );
    const charge = row && {
      ...row,
      amount: Number(row.amount),
      amountRefunded: Number(row.amountRefunded),
    };
    if (!charge) throw new NotFoundError('charge', chargeId);

    const refundable = charge.status === 'succeeded' ? charge.amount - charge.amountRefunded : 0;
    const amount = dto.amount ?? refundable;
    if (charge.status !== 'succeeded' || amount > refundable || amount === 0) {
      throw new DomainError(
        'refund-exceeds-charge',
        charge.status !== 'succeeded'
          ? `Charge ${chargeId} failed; there is nothing to refund.`
          : `Charge ${chargeId} has ${refundable} ${charge.currency} left to refund; ${amount} was asked.`,
        { refundable },
      );
    }

    await this.tx.query(
      `UPDATE charges SET amount_refunded = amount_refunded + $3::bigint
        WHERE merchant_id = $1 AND id = $2`,
      [merchantId, chargeId, amount],
    );
    const balanceAfter = await this.accounts.credit(merchantId, charge.accountId, amount);
    if (balanceAfter === null) {
      throw new DomainError(
        'balance-limit-exceeded',
        `The refund would take the balance of ${charge.accountId} above ${Number.MAX_SAFE_INTEGER}.`,
      );
    }
    const refund: Omit<Refund, 'createdAt'> = {
      merchantId,
      id: newId('refund'),
      chargeId,
      accountId: charge.accountId,
      amount,
    };
    const [inserted] = await this.tx.query<{ createdAt: Date }>(
      `INSERT INTO refunds (merchant_id, id, charge_id, account_id, amount)
       VALUES ($1, $2, $3, $4, $5)
       RETURNING created_at AS "createdAt"`,
      [merchantId, refund.id, chargeId, charge.accountId, amount],
    );
    await this.ledger.record({
      merchantId,
      accountId: charge.accountId,
      type: 'refund',
      amount,
      balanceAfter,
      sourceId: refund.id,
    });
    return toRefundView({ ...refund, createdAt: inserted.createdAt });
  }
}
