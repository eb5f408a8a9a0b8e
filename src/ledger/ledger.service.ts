import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { type List, type ListQuery, pageAfter, pageParams, toList } from '../common/list.js';
import { MAX_BALANCE } from '../common/money.js';
import { TransactionHost } from '../database/transaction-host.js';
import { CommittedProblem } from '../problems/problem.js';
import {
  type LedgerEntry,
  type LedgerEntryType,
  type LedgerEntryView,
  toLedgerEntryView,
} from './ledger-entry.js';

/** A change of one account's balance, and what caused it. */
export interface Movement {
  merchantId: string;
  accountId: string;
  /** The currency of the amount: an account in another currency is not moved. */
  currency: string;
  type: LedgerEntryType;
  /** Signed minor units: + credits the account, - debits it. */
  amount: number;
  /** The deposit, charge or refund that this movement records (one entry per source). */
  sourceId: string;
}

/** A movement that was posted: the account's balance after it, and when. */
export interface Posted {
  balanceAfter: number;
  createdAt: Date;
}

/**
 * The books: account balances and the append-only ledger that explains them.
 * This service is the only code that writes either, so that "balance == sum of
 * its ledger entries" can only be broken in one place.
 */
@Injectable()
export class LedgerService {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Posts a movement in the request's transaction: the one conditional UPDATE of
   * the balance and the ledger entry that records it, in one statement. Its WHERE
   * clause is the check that makes adding safe: the row lock the UPDATE takes
   * serialises movements of the account, and the balance is tested after the lock,
   * so two charges can never spend the same money. Null when nothing moved: no such
   * account (or another merchant's), a closed one, another currency, or a balance
   * that would leave [0, MAX_BALANCE]. The caller tells which, off the hot path.
   * Every movement is a change of the account: its version (the ETag) grows.
   */
  async post(movement: Movement): Promise<Posted | null> {
    const [row] = await this.tx.query<Posted>(
      `WITH moved AS (
         UPDATE accounts SET balance = balance + $5::bigint, version = version + 1, updated_at = now()
          WHERE merchant_id = $1 AND id = $2 AND currency = $3 AND closed_at IS NULL
            AND balance + $5::bigint BETWEEN 0 AND $8::bigint
         RETURNING balance)
       INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       SELECT $1, $6, $2, $4, $5, moved.balance, $7 FROM moved
       RETURNING balance_after AS "balanceAfter", created_at AS "createdAt"`,
      [
        movement.merchantId,
        movement.accountId,
        movement.currency,
        movement.type,
        movement.amount,
        newId('ledgerEntry'),
        movement.sourceId,
        MAX_BALANCE,
      ],
    );
    return row ?? null;
  }

  async list(
    merchantId: string,
    accountId: string,
    query: ListQuery,
  ): Promise<List<LedgerEntryView>> {
    const rows = await this.tx.query<LedgerEntry>(
      `SELECT merchant_id AS "merchantId", id, account_id AS "accountId", type, amount,
              balance_after AS "balanceAfter", source_id AS "sourceId", created_at AS "createdAt"
         FROM ledger_entries
        WHERE merchant_id = $1 AND account_id = $2 ${pageAfter(3)}`,
      [merchantId, accountId, ...pageParams(query)],
    );
    return toList(rows, query, toLedgerEntryView);
  }
}

/** 422: a credit would take the balance past what a JSON number holds exactly. */
export class BalanceLimitExceeded extends CommittedProblem {
  constructor(accountId: string, movement: 'deposit' | 'refund' | 'top-up') {
    super(
      'balance-limit-exceeded',
      `The ${movement} would take the balance of ${accountId} above ${MAX_BALANCE}.`,
    );
  }
}
