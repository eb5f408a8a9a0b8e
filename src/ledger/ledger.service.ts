import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { type List, type ListQuery, page } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { LedgerEntry, type LedgerEntryType } from './ledger-entry.entity.js';
import { type LedgerEntryView, toLedgerEntryView } from './ledger-entry.view.js';

export interface NewLedgerEntry {
  merchantId: string;
  accountId: string;
  type: LedgerEntryType;
  /** Signed: + credits, - debits. */
  amount: number;
  balanceAfter: number;
  sourceId: string;
}

/** The append-only record of every balance change. */
@Injectable()
export class LedgerService {
  constructor(private readonly tx: TransactionHost) {}

  /** Appends an entry in the current transaction (one per source, enforced by the schema). */
  async record(entry: NewLedgerEntry): Promise<void> {
    await this.tx.query(
      `INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        entry.merchantId,
        newId('ledgerEntry'),
        entry.accountId,
        entry.type,
        entry.amount,
        entry.balanceAfter,
        entry.sourceId,
      ],
    );
  }

  async list(
    merchantId: string,
    accountId: string,
    query: ListQuery,
  ): Promise<List<LedgerEntryView>> {
    const qb = this.tx
      .repository(LedgerEntry)
      .createQueryBuilder('entry')
      .where('entry.merchant_id = :merchantId AND entry.account_id = :accountId', {
        merchantId,
        accountId,
      });
    return page(qb, query, toLedgerEntryView);
  }
}
