import { Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { ChargesService } from '../charges/charges.service.js';
import { newId } from '../common/ids.js';
import { TransactionHost } from '../database/transaction-host.js';
import { EventsService } from '../events/events.service.js';
import { BalanceLimitExceeded, LedgerService } from '../ledger/ledger.service.js';
import { CommittedProblem } from '../problems/problem.js';
import type { CreateRefundDto } from './dto/create-refund.dto.js';
import { type Refund, type RefundView, toRefundView } from './refund.js';

/** The refunds table: its only writer. */
@Injectable()
export class RefundsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly charges: ChargesService,
    private readonly ledger: LedgerService,
    private readonly events: EventsService,
  ) {}

  /**
   * Refunds all or part of a succeeded charge: credits its account and records the
   * refund, in the request's transaction. The charge's row lock serialises refunds
   * of one charge, so concurrent partial refunds can never add up to more than it.
   * Nothing is written until the credit has posted: a refused credit (422) commits
   * no change to the charge.
   */
  async create(merchantId: string, chargeId: string, dto: CreateRefundDto): Promise<RefundView> {
    const charge = await this.charges.getForRefund(merchantId, chargeId);
    const refundable = charge.status === 'succeeded' ? charge.amount - charge.amountRefunded : 0;
    const amount = dto.amount ?? refundable;
    if (charge.status !== 'succeeded' || amount > refundable || amount === 0) {
      throw new CommittedProblem(
        'refund-exceeds-charge',
        charge.status !== 'succeeded'
          ? `Charge ${chargeId} failed; there is nothing to refund.`
          : `Charge ${chargeId} has ${refundable} ${charge.currency} left to refund; ${amount} was asked.`,
        { refundable },
      );
    }

    const refund = {
      merchantId,
      id: newId('refund'),
      chargeId,
      accountId: charge.accountId,
      amount,
    };
    const credit = await this.ledger.post({
      merchantId,
      accountId: charge.accountId,
      currency: charge.currency,
      type: 'refund',
      amount,
      sourceId: refund.id,
    });
    if (!credit) {
      // A closed account (409), or too much money.
      await this.accounts.getMovable(merchantId, charge.accountId, charge.currency);
      throw new BalanceLimitExceeded(charge.accountId, 'refund');
    }

    const recorded: Refund = { ...refund, createdAt: credit.createdAt };
    this.tx.atCommit(
      `INSERT INTO refunds (merchant_id, id, charge_id, account_id, amount, created_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [merchantId, refund.id, chargeId, charge.accountId, amount, credit.createdAt],
    );
    this.charges.addRefundedAtCommit(merchantId, chargeId, amount);
    const view = toRefundView(recorded);
    this.events.recordAtCommit(merchantId, 'refund.succeeded', view);
    return view;
  }
}
