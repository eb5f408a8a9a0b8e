import type { LedgerEntry, LedgerEntryType } from './ledger-entry.entity.js';

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
