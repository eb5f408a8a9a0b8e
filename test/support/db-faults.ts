import type pg from 'pg';

/**
 * The tests inject faults with triggers in their own database: no test code in the
 * app. Written so that they hold on a Citus cluster too, where a distributed table's
 * rows, and so its triggers, run on the worker that holds the merchant's shard.
 */

/**
 * Runs each statement on its own. (Citus forwards a DDL statement's text to its
 * workers as a prepared statement, which may hold one command only.)
 */
export async function inject(db: pg.Pool, ...statements: string[]): Promise<void> {
  for (const sql of statements) await db.query(sql);
}

/** Whether `db` is a database of a Citus cluster. */
export async function isCitus(db: pg.Pool): Promise<boolean> {
  const { rows } = await db.query<{ citus: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`,
  );
  return rows[0].citus;
}

/**
 * A sequence for a trigger to count with (nextval is not undone by a rollback, so a
 * fault can fire once). Citus propagates functions, not sequences: on a cluster each
 * worker gets its own, and a trigger counts the rows of the shards on its node.
 */
export async function createSequence(db: pg.Pool, name: string): Promise<void> {
  await db.query(`CREATE SEQUENCE ${name}`);
  if (await isCitus(db)) {
    await db.query('SELECT run_command_on_workers($1)', [`CREATE SEQUENCE ${name}`]);
  }
}

/**
 * A table a trigger can read wherever it runs: on Citus a reference table, with a
 * copy on every node.
 */
export async function createLookupTable(db: pg.Pool, name: string, columns: string): Promise<void> {
  await db.query(`CREATE TABLE ${name} (${columns})`);
  if (await isCitus(db)) await db.query('SELECT create_reference_table($1)', [name]);
}

/**
 * The URL of the node where `table`'s rows of `merchantId` live, and so where its
 * triggers run and take their locks: `url` itself on one PostgreSQL, the worker
 * that holds the shard on Citus.
 */
export async function nodeOf(
  db: pg.Pool,
  url: string,
  table: string,
  merchantId: string,
): Promise<string> {
  if (!(await isCitus(db))) return url;
  const { rows } = await db.query<{ host: string; port: number }>(
    `SELECT nodename AS host, nodeport AS port FROM citus_shards
      WHERE shardid = get_shard_id_for_distribution_column($1::regclass, $2::text)`,
    [table, merchantId],
  );
  const node = new URL(url);
  node.hostname = rows[0].host;
  node.port = String(rows[0].port);
  return node.toString();
}

/**
 * Backends of this database asleep in pg_sleep (a trigger's fault at work): on
 * Citus, on every node.
 */
export async function sleepingBackends(db: pg.Pool): Promise<number> {
  const view = (await isCitus(db)) ? 'citus_stat_activity' : 'pg_stat_activity';
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${view}
      WHERE datname = current_database() AND wait_event = 'PgSleep'`,
  );
  return rows[0].n;
}

/**
 * Makes charges of the given amounts sleep inside their transaction, after the
 * debit: a slow original, made in the test database without any test code in the app.
 * `seconds` maps an amount to its sleep.
 */
export async function slowCharges(db: pg.Pool, seconds: Record<number, number>): Promise<void> {
  const branches = Object.entries(seconds)
    .map(
      ([amount, s]) =>
        `IF NEW.amount = ${Number(amount)} THEN PERFORM pg_sleep(${Number(s)}); END IF;`,
    )
    .join('\n      ');
  await inject(
    db,
    `CREATE FUNCTION slow_charges() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      ${branches}
      RETURN NEW;
    END $$`,
    'CREATE TRIGGER slow_charges BEFORE INSERT ON charges FOR EACH ROW EXECUTE FUNCTION slow_charges()',
  );
}

/**
 * Advisory locks granted in this database: one per request that holds its key (the
 * app's are taken with one bigint, objsubid 1; Citus takes its own with other kinds).
 */
export async function advisoryLocks(db: pg.Pool): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND objsubid = 1 AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return rows[0].n;
}

/** Polls advisoryLocks every 10 ms until `done` holds or `tries` run out; returns the last count. */
export async function untilAdvisoryLocks(
  db: pg.Pool,
  done: (count: number) => boolean,
  tries = 500,
): Promise<number> {
  let count = await advisoryLocks(db);
  for (let i = 0; i < tries && !done(count); i++) {
    await new Promise((r) => setTimeout(r, 10));
    count = await advisoryLocks(db);
  }
  return count;
}
