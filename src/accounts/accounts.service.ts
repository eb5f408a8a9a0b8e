import { Injectable } from '@nestjs/common';
import { DomainError, NotFoundError } from '../common/problem.js';
import { newId } from '../common/ids.js';
import { type List, page } from '../common/list.js';
import { MAX_BALANCE } from '../common/money.js';
import { TransactionHost } from '../database/transaction-host.js';
import { Account } from './account.entity.js';
import { type AccountView, toAccountView } from './account.view.js';
import type { CreateAccountDto } from './dto/create-account.dto.js';
import type { ListAccountsQuery } from './dto/list-accounts.query.js';

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

  /** The merchant's account, or a 404 domain error (also for another merchant's id). */
  async get(merchantId: string, id: string): Promise<Account> {
    const [row] = await this.tx.query<Account & { balance: string }>(
      `SELECT merchant_id AS "merchantId", id, name, currency, balance,
              created_at AS "createdAt", updated_at AS "updatedAt"
         FROM accounts WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('account', id);
    return { ...row, balance: Number(row.balance) };
  }

  async list(merchantId: string, query: ListAccountsQuery): Promise<List<AccountView>> {
    const qb = this.tx
      .repository(Account)
      .createQueryBuilder('account')
      .where('account.merchant_id = :merchantId', { merchantId });
    return page(qb, query, toAccountView);
  }

  /** Adds `amount` unless the balance would pass MAX_BALANCE. Returns the new balance, or null. */
  async credit(merchantId: string, id: string, amount: number): Promise<number | null> {
    const [row] = await this.tx.query<{ balance: string }>(
      `UPDATE accounts SET balance = balance + $3::bigint, updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND balance <= $4::bigint - $3::bigint
       RETURNING balance`,
      [merchantId, id, amount, MAX_BALANCE],
    );
    return row ? Number(row.balance) : null;
  }
}

export class CurrencyMismatchError extends DomainError {
  constructor(requested: string, account: Account) {
    super(
      'currency-mismatch',
      `The amount is in ${requested} but account ${account.id} holds ${account.currency}.`,
    );
  }
}
