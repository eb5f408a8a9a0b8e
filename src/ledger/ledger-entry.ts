export type LedgerEntryType = 'deposit' | 'charge' | 'refund' | 'top_up';

/** A ledger entry as stored in `ledger_entries` (LedgerService owns the table). */
export interface LedgerEntry {
  merchantId: string;
  id: string;
  accountId: string;
  type: LedgerEntryType;
  /** Signed minor units: + credits the account, - debits it. */
  amount: number;
  balanceAfter: number;
  /** The deposit, charge, refund or top-up this entry records (one entry per source). */
  sourceId: string;
  createdAt: Date;
}

/** A ledger entry as the API shows it. */
export interface LedgerEntryView {
  id: string;
  object: 'ledger_entry';
  type: LedgerEntryType;
  amount: number;
  balanceAfter: number;
  sourceId: string;
  createdAt: string;
}

export function toLedgerEntryView(entry: LedgerEntry): LedgerEntryView {
  return {
    id: entry.id,
    object: 'ledger_entry',
    type: entry.type,
    amount: entry.amount,
    balanceAfter: entry.balanceAfter,
    sourceId: entry.sourceId,
    createdAt: entry.createdAt.toISOString(),
  };
}
