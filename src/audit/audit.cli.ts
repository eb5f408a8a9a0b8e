// npm run audit: checks the books of DATABASE_URL (or of the embedded database in
// DATA_DIR), and reconciles the top-ups with the processor of PROCESSOR_URL (or the
// local one of a running npm start). Exits 0 when every invariant holds, 1 with a
// report when not.
import pg from 'pg';
import { ConfigError, loadConfig } from '../config/config.js';
import { openDatabase } from '../database/open-database.js';
import { findLocalProcessor } from '../top-ups/local-processor.js';
import { AUDIT_CHECKS, auditLedger, formatAudit, type Violation } from './ledger-audit.js';
import { reconcile, RECONCILIATION_RULES } from './reconciliation.js';

async function main(): Promise<number> {
  const config = loadConfig();
  const database = await openDatabase(config);
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const violations: Violation[] = await auditLedger(client);
    let checks = AUDIT_CHECKS.length;
    const processorUrl = config.PROCESSOR_URL ?? (await findLocalProcessor(config.DATA_DIR));
    if (processorUrl) {
      violations.push(
        ...(await reconcile(client, { url: processorUrl, apiKey: config.PROCESSOR_API_KEY })),
      );
      checks += Object.keys(RECONCILIATION_RULES).length;
    } else {
      console.log('No processor (PROCESSOR_URL): the top-ups are not reconciled.');
    }
    console.log(formatAudit(violations, checks));
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
