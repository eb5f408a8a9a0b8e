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
    const charge = await this.tx
      .repository(Charge)
      .createQueryBuilder('charge')
      .setLock('pessimistic_write')
      .where('charge.merchant_id = :merchantId AND charge.id = :chargeId', { merchantId, chargeId })
      .getOne();
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
    const repository = this.tx.repository(Refund);
    const refund = repository.create({
      merchantId,
      id: newId('refund'),
      chargeId,
      accountId: charge.accountId,
      amount,
    });
    await repository.insert(refund);
    await this.ledger.record({
      merchantId,
      accountId: charge.accountId,
      type: 'refund',
      amount,
      balanceAfter,
      sourceId: refund.id,
    });
    return toRefundView(refund);
  }
}
