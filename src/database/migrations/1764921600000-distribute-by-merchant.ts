import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Shards the tables by merchant when the database is a Citus coordinator (the
 * `citus` extension is installed in it); on plain PostgreSQL it changes one
 * primary key and nothing else. docs/scaling-out.md tells how to set up the
 * cluster before the first start; docs/decisions/0014 why each table is what it is.
 *
 * - `merchants` is a reference table, copied to every node: each request reads its
 *   merchant (the API key), and every table's foreign key points at it.
 * - Every other table is distributed on `merchant_id`, co-located with `accounts`:
 *   a merchant's rows of every table live on one node, so a request, which touches
 *   one merchant only, is a single-node transaction there (its lock, debit, records
 *   and stored key commit together) and the foreign keys between the tables hold.
 *
 * Citus distributes a table only when no local table references it and it
 * references no local table, so the foreign keys between the tables are set
 * aside, every table distributed, and the keys put back as they were.
 */
export class DistributeByMerchant1764921600000 implements MigrationInterface {
  name = 'DistributeByMerchant1764921600000';

  async up(db: QueryRunner): Promise<void> {
    // A distributed table's primary key must contain the distribution column.
    await db.query(`
      ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey,
                                   ADD PRIMARY KEY (merchant_id, id)`);

    const [{ citus }] = (await db.query(
      `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`,
    )) as Array<{ citus: boolean }>;
    if (!citus) return;

    // The tables were created in this very transaction when the database is new:
    // Citus must then create the shards over one connection per node.
    await db.query(`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`);
    const foreignKeys = (await db.query(
      `SELECT conrelid::regclass::text AS "table", conname AS name,
              pg_get_constraintdef(oid) AS definition
         FROM pg_constraint
        WHERE contype = 'f' AND connamespace = 'public'::regnamespace
          AND conrelid::regclass::text = ANY ($1)`,
      [[...DISTRIBUTED, 'merchants']],
    )) as Array<{ table: string; name: string; definition: string }>;
    for (const fk of foreignKeys) {
      await db.query(`ALTER TABLE ${fk.table} DROP CONSTRAINT ${fk.name}`);
    }
    await db.query(`SELECT create_reference_table('merchants')`);
    for (const [i, table] of DISTRIBUTED.entries()) {
      await db.query(`SELECT create_distributed_table($1, 'merchant_id', colocate_with => $2)`, [
        table,
        i === 0 ? 'none' : DISTRIBUTED[0],
      ]);
    }
    for (const fk of foreignKeys) {
      await db.query(`ALTER TABLE ${fk.table} ADD CONSTRAINT ${fk.name} ${fk.definition}`);
    }
  }

  async down(db: QueryRunner): Promise<void> {
    const [{ citus }] = (await db.query(
      `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`,
    )) as Array<{ citus: boolean }>;
    if (citus) {
      for (const table of [...DISTRIBUTED].reverse()) {
        await db.query(`SELECT undistribute_table($1, cascade_via_foreign_keys => true)`, [table]);
      }
    }
    await db.query(`
      ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey,
                                   ADD PRIMARY KEY (id)`);
  }
}

/** Every table distributed on merchant_id, the first being the one the rest co-locate with. */
const DISTRIBUTED = [
  'accounts',
  'deposits',
  'charges',
  'refunds',
  'ledger_entries',
  'idempotency_keys',
  'top_ups',
  'events',
  'webhook_endpoints',
  'webhook_deliveries',
  'webhook_attempts',
];
