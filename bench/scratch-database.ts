import pg from 'pg';
import { openDatabase } from '../src/database/open-database.js';

/**
 * A fresh database called `name` for one bench run: on DATABASE_URL's server, or
 * on the embedded PostgreSQL (DATA_DIR, .data), which close() then stops.
 */
export async function scratchDatabase(
  name: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const embedded = process.env.DATABASE_URL
    ? null
    : await openDatabase({ DATA_DIR: process.env.DATA_DIR ?? '.data' });
  const base = process.env.DATABASE_URL ?? embedded!.url;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), close: () => embedded?.close() ?? Promise.resolve() };
}
