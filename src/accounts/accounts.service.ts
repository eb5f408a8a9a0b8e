import { Injectable } from '@nestjs/common';
import { CommittedProblem, NotFoundError } from '../problems/problem.js';
import { newId } from '../common/ids.js';
import { type List, page } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { Account } from './account.entity.js';
import { type AccountView, toAccountView } from './account.view.js';
import type { CreateAccountDto } from './dto/create-account.dto.js';
import type { ListAccountsQuery } from './dto/list-accounts.query.js';

/**
 * Accounts: opens them and reads them. The balance is not changed here: it moves
 * only with a ledger entry, through LedgerService.post().
 */
@Injectable()
export class AccountsService {
  constructor(private readonly tx: TransactionHost) {}

  /** Opens an account with a zero balance. */
  async create(merchantId: string, dto: CreateAccountDto): Promise<AccountView> {
    const id = newId('account');
    const [row] = await this.tx.query<Pick<Account, 'createdAt' | 'updatedAt'>>(
      `INSERT INTO accounts (merchant_id, id, name, currency, balance) VALUES ($1, $2, $3, $4, 0)
       RETURNING created_at AS "createdAt", updated_at AS "updatedAt"`,
      [merchantId, id, dto.name, dto.currency],
    );
    return toAccountView({ merchantId, id, ...dto, balance: 0, ...row });
  }

  /** The merchant's account, or a 404 (NotFoundError, also for another merchant's id). */
  async get(merchantId: string, id: string): Promise<Account> {
    const [row] = await this.tx.query<Account>(
      `SELECT merchant_id AS "merchantId", id, name, currency, balance,
              created_at AS "createdAt", updated_at AS "updatedAt"
         FROM accounts WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('account', id);
    return row;
  }

  /**
   * The merchant's account, checked to hold `currency`: 404 or 422
   * (CurrencyMismatchError) otherwise. How a movement that did not post finds out
   * why, when the reason is not the balance.
   */
  async getInCurrency(merchantId: string, id: string, currency: string): Promise<Account> {
    const account = await this.get(merchantId, id);
    if (account.currency !== currency) throw new CurrencyMismatchError(currency, account);
    return account;
  }

  async list(merchantId: string, query: ListAccountsQuery): Promise<List<AccountView>> {
    const qb = this.tx
      .repository(Account)
      .createQueryBuilder('account')
      .where('account.merchant_id = :merchantId', { merchantId });
    return page(qb, query, toAccountView);
  }
}

export class CurrencyMismatchError extends CommittedProblem {
  constructor(requested: string, account: Account) {
    super(
      'currency-mismatch',
      `The amount is in ${requested} but account ${account.id} holds ${account.currency}.`,
    );
  }
}
