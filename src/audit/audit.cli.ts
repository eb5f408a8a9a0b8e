// npm run audit: checks the books of DATABASE_URL (or of the embedded database in
// DATA_DIR). Exits 0 when every invariant holds, 1 with a report when not.
import pg from 'pg';
import { ConfigError, loadConfig } from '../config/config.js';
import { openDatabase } from '../database/open-database.js';
import { auditLedger, formatAudit } from './ledger-audit.js';

async function main(): Promise<number> {
  const database = await openDatabase(loadConfig());
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const violations = await auditLedger(client);
    console.log(formatAudit(violations));
    return violations.length === 0 ? 0 : 1;
  } finally {
    await client.end();
    await database.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(2);
  },
);
