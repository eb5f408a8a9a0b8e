import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import { bigint } from '../database/bigint.transformer.js';

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

  /** Minor units. Changed only by the conditional UPDATEs in AccountsService. */
  @Column({ type: 'bigint', transformer: bigint })
  balance: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
