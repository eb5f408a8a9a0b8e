import type pg from 'pg';

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
  await db.query(`
    CREATE FUNCTION slow_charges() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      ${branches}
      RETURN NEW;
    END $$;
    CREATE TRIGGER slow_charges BEFORE INSERT ON charges FOR EACH ROW EXECUTE FUNCTION slow_charges();`);
}

/** Advisory locks granted in this database: one per request that holds its key. */
export async function advisoryLocks(db: pg.Pool): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND granted
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
