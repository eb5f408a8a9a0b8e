import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

export type LedgerEntryType = 'deposit' | 'charge' | 'refund' | 'top_up';

@Entity({ name: 'ledger_entries' })
export class LedgerEntry {
  @PrimaryColumn({ name: 'merchant_id', type: 'text' })
  merchantId: string;

  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ name: 'account_id', type: 'text' })
  accountId: string;

  @Column({ type: 'text' })
  type: LedgerEntryType;

  /** Signed minor units: + credits the account, - debits it. */
  @Column({ type: 'bigint' })
  amount: number;

  @Column({ name: 'balance_after', type: 'bigint' })
  balanceAfter: number;

  /** The deposit, charge or refund this entry records (one entry per source). */
  @Column({ name: 'source_id', type: 'text' })
  sourceId: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
