import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

@Entity({ name: 'accounts' })
export class Account {
  @PrimaryColumn({ name: 'merchant_id', type: 'text' })
  merchantId: string;

  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'text' })
  name: string;

  @Column({ type: 'text' })
  currency: string;

  /**
   * Minor units (bigint; read as a number, see data-source.ts). Changed only by
   * LedgerService.post(), together with the ledger entry that explains it.
   */
  @Column({ type: 'bigint' })
  balance: number;

  /** What the merchant keeps about the account: string keys to string values. */
  @Column({ type: 'jsonb' })
  metadata: Record<string, string>;

  /** +1 on every change of the account (fields, balance, closing): its ETag. */
  @Column({ type: 'bigint' })
  version: number;

  /** When the account was closed (DELETE); a closed account holds nothing and never moves. */
  @Column({ name: 'closed_at', type: 'timestamptz', nullable: true })
  closedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
