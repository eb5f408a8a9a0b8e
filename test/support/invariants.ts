import type pg from 'pg';
import { auditLedger } from '../../src/audit/ledger-audit.js';

/**
 * The money invariants (the same checks as npm run audit), as a list of readable
 * violations: empty when all hold, so a failing test shows every one of them.
 */
export async function ledgerViolations(db: pg.Pool): Promise<string[]> {
  return (await auditLedger(db)).map((v) => `${v.rule}: ${v.id} (${v.detail})`);
}
