import type pg from 'pg';

/**
 * The money invariants of contract §3, checked straight in the database. Returns
 * a list of violations (empty when all hold), so a failing test shows all of them.
 */
export async function ledgerViolations(db: pg.Pool): Promise<string[]> {
  const checks: Array<[string, string]> = [
    [
      'balance differs from its ledger sum',
      `SELECT a.id FROM accounts a
         LEFT JOIN ledger_entries l ON l.merchant_id = a.merchant_id AND l.account_id = a.id
        GROUP BY a.merchant_id, a.id, a.balance
       HAVING a.balance <> COALESCE(SUM(l.amount), 0)`,
    ],
    [
      'succeeded charge without exactly one ledger entry',
      `SELECT c.id FROM charges c
        WHERE c.status = 'succeeded'
          AND (SELECT count(*) FROM ledger_entries l
                WHERE l.merchant_id = c.merchant_id AND l.source_id = c.id AND l.amount = -c.amount) <> 1`,
    ],
    [
      'failed charge with a ledger entry',
      `SELECT c.id FROM charges c
         JOIN ledger_entries l ON l.merchant_id = c.merchant_id AND l.source_id = c.id
        WHERE c.status = 'failed'`,
    ],
    [
      'deposit without exactly one ledger entry',
      `SELECT d.id FROM deposits d
        WHERE (SELECT count(*) FROM ledger_entries l
                WHERE l.merchant_id = d.merchant_id AND l.source_id = d.id AND l.amount = d.amount) <> 1`,
    ],
    [
      'refund without exactly one ledger entry',
      `SELECT r.id FROM refunds r
        WHERE (SELECT count(*) FROM ledger_entries l
                WHERE l.merchant_id = r.merchant_id AND l.source_id = r.id AND l.amount = r.amount) <> 1`,
    ],
    [
      'charge whose refunds do not add up to amountRefunded, or exceed it',
      `SELECT c.id FROM charges c
         LEFT JOIN refunds r ON r.merchant_id = c.merchant_id AND r.charge_id = c.id
        GROUP BY c.merchant_id, c.id, c.amount, c.amount_refunded
       HAVING COALESCE(SUM(r.amount), 0) <> c.amount_refunded OR c.amount_refunded > c.amount`,
    ],
  ];
  const violations: string[] = [];
  for (const [what, sql] of checks) {
    const { rows } = await db.query<{ id: string }>(sql);
    violations.push(...rows.map((r) => `${what}: ${r.id}`));
  }
  return violations;
}
