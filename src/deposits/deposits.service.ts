import { Injectable } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { newId } from '../common/ids.js';
import { TransactionHost } from '../database/transaction-host.js';
import { EventsService } from '../events/events.service.js';
import { BalanceLimitExceeded, LedgerService } from '../ledger/ledger.service.js';
import { type Deposit, type DepositView, toDepositView } from './deposit.js';
import type { CreateDepositDto } from './dto/create-deposit.dto.js';

/** The deposits table: its only writer. */
@Injectable()
export class DepositsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
    private readonly events: EventsService,
  ) {}

  /**
   * Credits the account and records the deposit, in the request's transaction:
   * the credit (LedgerService.post) first, whose answer decides, then the
   * deposit's row, sent with COMMIT.
   */
  async create(merchantId: string, accountId: string, dto: CreateDepositDto): Promise<DepositView> {
    const deposit = {
      merchantId,
      id: newId('deposit'),
      accountId,
      amount: dto.amount,
      currency: dto.currency,
      description: dto.description ?? null,
    };
    const credit = await this.ledger.post({
      merchantId,
      accountId,
      currency: dto.currency,
      type: 'deposit',
      amount: dto.amount,
      sourceId: deposit.id,
    });
    if (!credit) {
      // Unknown account (404), a closed one (409), another currency (422), or too much money.
      await this.accounts.getMovable(merchantId, accountId, dto.currency);
      throw new BalanceLimitExceeded(accountId, 'deposit');
    }
    const recorded: Deposit = { ...deposit, createdAt: credit.createdAt };
    this.tx.atCommit(
      `INSERT INTO deposits (merchant_id, id, account_id, amount, currency, description, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        merchantId,
        deposit.id,
        accountId,
        dto.amount,
        dto.currency,
        deposit.description,
        credit.createdAt,
      ],
    );
    const view = toDepositView(recorded);
    this.events.recordAtCommit(merchantId, 'deposit.succeeded', view);
    return view;
  }
}
