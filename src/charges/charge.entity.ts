import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

export type ChargeStatus = 'succeeded' | 'failed';

@Entity({ name: 'charges' })
export class Charge {
  @PrimaryColumn({ name: 'merchant_id', type: 'text' })
  merchantId: string;

  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ name: 'account_id', type: 'text' })
  accountId: string;

  @Column({ type: 'bigint' })
  amount: number;

  @Column({ type: 'text' })
  currency: string;

  @Column({ type: 'text', nullable: true })
  description: string | null;

  @Column({ type: 'jsonb' })
  metadata: Record<string, string>;

  @Column({ type: 'text' })
  status: ChargeStatus;

  @Column({ name: 'failure_code', type: 'text', nullable: true })
  failureCode: string | null;

  @Column({ name: 'amount_refunded', type: 'bigint' })
  amountRefunded: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
