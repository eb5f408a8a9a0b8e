import { Injectable } from '@nestjs/common';
import { AccountsService, CurrencyMismatchError } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { type List, page } from '../common/list.js';
import { DomainError, NotFoundError } from '../common/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { LedgerService } from '../ledger/ledger.service.js';
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
    private readonly ledger: LedgerService,
  ) {}

  /**
   * Debits the account and records the charge and its ledger entry, in the
   * request's transaction. Without the funds, the charge is recorded as failed
   * (no ledger entry, balance untouched) and a 402 domain error is raised.
   */
  async create(merchantId: string, dto: CreateChargeDto): Promise<ChargeView> {
    const account = await this.accounts.get(merchantId, dto.accountId);
    if (account.currency !== dto.currency) throw new CurrencyMismatchError(dto.currency, account);

    // The debit takes the account's row lock, so it comes as late as it can:
    // everything after it, up to COMMIT, holds up other charges on this account.
    const balanceAfter = await this.accounts.debit(merchantId, dto.accountId, dto.amount);
    const repository = this.tx.repository(Charge);
    const charge = repository.create({
      merchantId,
      id: newId('charge'),
      accountId: dto.accountId,
      amount: dto.amount,
      currency: dto.currency,
      description: dto.description ?? null,
      metadata: dto.metadata ?? {},
      status: balanceAfter === null ? 'failed' : 'succeeded',
      failureCode: balanceAfter === null ? 'insufficient_funds' : null,
      amountRefunded: 0,
    });
    await repository.insert(charge);
    if (balanceAfter === null) throw new InsufficientFundsError(charge);

    await this.ledger.record({
      merchantId,
      accountId: dto.accountId,
      type: 'charge',
      amount: -dto.amount,
      balanceAfter,
      sourceId: charge.id,
    });
    return toChargeView(charge);
  }

  async get(merchantId: string, id: string): Promise<ChargeView> {
    const charge = await this.tx.repository(Charge).findOneBy({ merchantId, id });
    if (!charge) throw new NotFoundError('charge', id);
    return toChargeView(charge);
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
}
