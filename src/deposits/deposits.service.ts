import { Injectable } from '@nestjs/common';
import { CurrencyMismatchError, AccountsService } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { DomainError } from '../common/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { LedgerService } from '../ledger/ledger.service.js';
import { Deposit } from './deposit.entity.js';
import { type DepositView, toDepositView } from './deposit.view.js';
import type { CreateDepositDto } from './dto/create-deposit.dto.js';

@Injectable()
export class DepositsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
  ) {}

  /** Credits the account and records the deposit and its ledger entry, in the request's transaction. */
  async create(merchantId: string, accountId: string, dto: CreateDepositDto): Promise<DepositView> {
    const account = await this.accounts.get(merchantId, accountId);
    if (account.currency !== dto.currency) throw new CurrencyMismatchError(dto.currency, account);

    const balanceAfter = await this.accounts.credit(merchantId, accountId, dto.amount);
    if (balanceAfter === null) {
      throw new DomainError(
        'balance-limit-exceeded',
        `The deposit would take the balance of ${accountId} above ${Number.MAX_SAFE_INTEGER}.`,
      );
    }
    const deposit: Omit<Deposit, 'createdAt'> = {
      merchantId,
      id: newId('deposit'),
      accountId,
      amount: dto.amount,
      currency: dto.currency,
      description: dto.description ?? null,
    };
    const [row] = await this.tx.query<{ createdAt: Date }>(
      `INSERT INTO deposits (merchant_id, id, account_id, amount, currency, description)
       VALUES ($1, $2, $3, $4, $5, $6)
       RETURNING created_at AS "createdAt"`,
      [merchantId, deposit.id, accountId, deposit.amount, deposit.currency, deposit.description],
    );
    await this.ledger.record({
      merchantId,
      accountId,
      type: 'deposit',
      amount: dto.amount,
      balanceAfter,
      sourceId: deposit.id,
    });
    return toDepositView({ ...deposit, createdAt: row.createdAt });
  }
}
