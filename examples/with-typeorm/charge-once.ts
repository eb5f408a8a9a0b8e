import { createHash } from 'node:crypto';
import {
  Column,
  CreateDateColumn,
  type DataSource,
  Entity,
  type MigrationInterface,
  PrimaryColumn,
  type QueryRunner,
} from 'typeorm';

@Entity('accounts')
export class Account {
  @PrimaryColumn('text')
  id: string;

  /** Minor units (cents). Changed only by a conditional UPDATE, never read-modify-write. */
  @Column('bigint', { transformer: { to: (n: number) => n, from: (s: string) => Number(s) } })
  balance: number;
}

/** A request's key, and the response its work produced: stored in the work's transaction. */
@Entity('idempotency_keys')
export class IdempotencyKey {
  @PrimaryColumn('text')
  key: string;

  /** What the key is bound to: a retry must send the same request. */
  @Column('text')
  fingerprint: string;

  @Column('int', { nullable: true })
  responseStatus: number | null;

  @Column('jsonb', { nullable: true })
  responseBody: object | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;
}

export class ChargeOnceTables1700000000000 implements MigrationInterface {
  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE accounts (
      id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))`);
    await db.query(`CREATE TABLE idempotency_keys (
      key text PRIMARY KEY, fingerprint text NOT NULL,
      "responseStatus" int, "responseBody" jsonb, "createdAt" timestamptz NOT NULL DEFAULT now())`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query('DROP TABLE idempotency_keys, accounts');
  }
}

export interface Answer {
  status: number;
  body: object;
  /** True when this is the stored response of an earlier request with the key. */
  replayed: boolean;
}

/**
 * Charges `amount` to an account, once per idempotency key, however often it is
 * retried: the key, the debit and the response commit in one transaction.
 */
export function chargeOnce(
  dataSource: DataSource,
  key: string,
  charge: { accountId: string; amount: number },
): Promise<Answer> {
  const fingerprint = createHash('sha256').update(JSON.stringify(charge)).digest('hex');
  return dataSource.transaction(async (manager) => {
    // 1. Claim the key under its unique constraint. A duplicate running at the same
    //    time waits here until this transaction ends: if it commits, the duplicate
    //    finds the key taken and replays; if it rolls back, the duplicate claims it.
    const claimed = await manager
      .createQueryBuilder()
      .insert()
      .into(IdempotencyKey)
      .values({ key, fingerprint })
      .orIgnore()
      .returning('key')
      .execute();

    // 2. Taken: an earlier request with this key committed. Replay its response.
    if (claimed.raw.length === 0) {
      const stored = await manager.findOneByOrFail(IdempotencyKey, { key });
      if (stored.fingerprint !== fingerprint) {
        return { status: 422, body: { error: 'key reused for another request' }, replayed: false };
      }
      return { status: stored.responseStatus!, body: stored.responseBody!, replayed: true };
    }

    // 3. The work: one conditional UPDATE, which refuses to overdraw.
    const debit = await manager
      .createQueryBuilder()
      .update(Account)
      .set({ balance: () => 'balance - :amount' })
      .where('id = :id AND balance >= :amount', { id: charge.accountId, amount: charge.amount })
      .execute();
    const status = debit.affected === 1 ? 201 : 402;
    const body = status === 201 ? { charged: charge.amount } : { error: 'insufficient funds' };

    // 4. Remember the response under the key. It commits with the debit, or neither does.
    await manager.update(IdempotencyKey, { key }, { responseStatus: status, responseBody: body });
    return { status, body, replayed: false };
  });
}
