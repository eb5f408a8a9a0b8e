import type pg from 'pg';

export interface AuditCheck {
  /** What must hold. */
  rule: string;
  /** Returns one row per violation, with `id` naming the offending record. */
  sql: string;
}

/**
 * The money invariants, checked straight in SQL so they can be run against any
 * database: by operators (npm run audit) and after every test and chaos scenario.
 */
export const AUDIT_CHECKS: AuditCheck[] = [
  {
    rule: 'every balance equals the sum of its ledger entries',
    sql: `SELECT a.id, a.balance::text || ' <> ' || COALESCE(SUM(l.amount), 0)::text AS detail
            FROM accounts a
            LEFT JOIN ledger_entries l ON l.merchant_id = a.merchant_id AND l.account_id = a.id
           GROUP BY a.merchant_id, a.id, a.balance
          HAVING a.balance <> COALESCE(SUM(l.amount), 0)`,
  },
  {
    rule: 'every succeeded charge has exactly one ledger entry, of -amount',
    sql: `SELECT c.id, count(l.id)::text || ' entries' AS detail
            FROM charges c
            LEFT JOIN ledger_entries l
              ON l.merchant_id = c.merchant_id AND l.source_id = c.id AND l.amount = -c.amount
           WHERE c.status = 'succeeded'
           GROUP BY c.merchant_id, c.id
          HAVING count(l.id) <> 1`,
  },
  {
    rule: 'a failed charge has no ledger entry',
    sql: `SELECT c.id, 'ledger entry ' || l.id AS detail
            FROM charges c
            JOIN ledger_entries l ON l.merchant_id = c.merchant_id AND l.source_id = c.id
           WHERE c.status = 'failed'`,
  },
  {
    rule: 'every deposit has exactly one ledger entry, of +amount',
    sql: `SELECT d.id, count(l.id)::text || ' entries' AS detail
            FROM deposits d
            LEFT JOIN ledger_entries l
              ON l.merchant_id = d.merchant_id AND l.source_id = d.id AND l.amount = d.amount
           GROUP BY d.merchant_id, d.id
          HAVING count(l.id) <> 1`,
  },
  {
    rule: 'every refund has exactly one ledger entry, of +amount',
    sql: `SELECT r.id, count(l.id)::text || ' entries' AS detail
            FROM refunds r
            LEFT JOIN ledger_entries l
              ON l.merchant_id = r.merchant_id AND l.source_id = r.id AND l.amount = r.amount
           GROUP BY r.merchant_id, r.id
          HAVING count(l.id) <> 1`,
  },
  {
    rule: 'every succeeded top-up has exactly one ledger entry, of +amount',
    sql: `SELECT t.id, count(l.id)::text || ' entries' AS detail
            FROM top_ups t
            LEFT JOIN ledger_entries l
              ON l.merchant_id = t.merchant_id AND l.source_id = t.id AND l.amount = t.amount
           WHERE t.status = 'succeeded'
           GROUP BY t.merchant_id, t.id
          HAVING count(l.id) <> 1`,
  },
  {
    rule: 'a top-up that did not succeed has no ledger entry',
    sql: `SELECT t.id, t.status || ', ledger entry ' || l.id AS detail
            FROM top_ups t
            JOIN ledger_entries l ON l.merchant_id = t.merchant_id AND l.source_id = t.id
           WHERE t.status <> 'succeeded'`,
  },
  {
    rule: 'every ledger entry records an existing deposit, charge, refund or top-up',
    sql: `SELECT l.id, l.type || ' ' || l.source_id AS detail
            FROM ledger_entries l
           WHERE NOT EXISTS (SELECT 1 FROM deposits d WHERE d.merchant_id = l.merchant_id AND d.id = l.source_id)
             AND NOT EXISTS (SELECT 1 FROM charges c WHERE c.merchant_id = l.merchant_id AND c.id = l.source_id)
             AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.merchant_id = l.merchant_id AND r.id = l.source_id)
             AND NOT EXISTS (SELECT 1 FROM top_ups t WHERE t.merchant_id = l.merchant_id AND t.id = l.source_id)`,
  },
  {
    rule: 'a closed account holds nothing, and no money moved after it closed',
    sql: `SELECT a.id, CASE WHEN a.balance <> 0 THEN 'balance ' || a.balance::text
                            ELSE 'ledger entry ' || l.id || ' after closing' END AS detail
            FROM accounts a
            LEFT JOIN ledger_entries l
              ON l.merchant_id = a.merchant_id AND l.account_id = a.id AND l.created_at > a.closed_at
           WHERE a.closed_at IS NOT NULL AND (a.balance <> 0 OR l.id IS NOT NULL)`,
  },
  {
    rule: 'refunds never exceed their charge, and add up to its amountRefunded',
    sql: `SELECT c.id, c.amount::text || ' charged, ' || COALESCE(SUM(r.amount), 0)::text || ' refunded, '
                 || c.amount_refunded::text || ' recorded' AS detail
            FROM charges c
            LEFT JOIN refunds r ON r.merchant_id = c.merchant_id AND r.charge_id = c.id
           GROUP BY c.merchant_id, c.id
          HAVING COALESCE(SUM(r.amount), 0) <> c.amount_refunded OR c.amount_refunded > c.amount`,
  },
  {
    // Events are purged after their retention, movements are kept: a movement without
    // its event is not a violation here (the webhook tests check that one exists).
    rule: 'every movement event tells of a record that exists, in the state it names',
    sql: `SELECT e.id, e.type || ' ' || coalesce(e.data -> 'object' ->> 'id', '?') AS detail
            FROM events e
           WHERE e.type NOT LIKE 'account.%' AND e.type NOT LIKE 'webhook_endpoint.%'
             AND NOT EXISTS (
                   SELECT 1 FROM charges x WHERE e.type IN ('charge.succeeded', 'charge.failed')
                      AND x.merchant_id = e.merchant_id AND x.id = e.data -> 'object' ->> 'id'
                      AND x.status = split_part(e.type, '.', 2)
                   UNION ALL SELECT 1 FROM deposits x WHERE e.type = 'deposit.succeeded'
                      AND x.merchant_id = e.merchant_id AND x.id = e.data -> 'object' ->> 'id'
                   UNION ALL SELECT 1 FROM refunds x WHERE e.type = 'refund.succeeded'
                      AND x.merchant_id = e.merchant_id AND x.id = e.data -> 'object' ->> 'id'
                   UNION ALL SELECT 1 FROM top_ups x WHERE e.type LIKE 'top_up.%'
                      AND x.merchant_id = e.merchant_id AND x.id = e.data -> 'object' ->> 'id'
                      AND x.status = split_part(e.type, '.', 2))`,
  },
  {
    rule: 'no movement, account creation or closing is told twice',
    sql: `SELECT e.data -> 'object' ->> 'id' AS id, e.type || ' told ' || count(*)::text || ' times' AS detail
            FROM events e
           WHERE e.type <> 'account.updated' AND e.type NOT LIKE 'webhook_endpoint.%'
           GROUP BY e.merchant_id, e.type, e.data -> 'object' ->> 'id'
          HAVING count(*) > 1`,
  },
  {
    rule: 'every stored 2xx response points at a record that exists',
    sql: `SELECT k.key AS id, k.request_method || ' ' || k.request_path || ' -> ' || (k.response_body::jsonb ->> 'id') AS detail
            FROM idempotency_keys k
           WHERE k.response_status BETWEEN 200 AND 299
             AND NOT EXISTS (
                   SELECT 1 FROM accounts  x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id'
                   UNION ALL SELECT 1 FROM charges  x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id'
                   UNION ALL SELECT 1 FROM deposits x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id'
                   UNION ALL SELECT 1 FROM refunds  x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id'
                   UNION ALL SELECT 1 FROM top_ups  x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id'
                   UNION ALL SELECT 1 FROM webhook_endpoints x WHERE x.merchant_id = k.merchant_id AND x.id = k.response_body::jsonb ->> 'id')`,
  },
  {
    rule: 'every stored 402 points at a failed charge, or a top-up that did not succeed, that exists',
    sql: `SELECT k.key AS id, coalesce(k.response_body::jsonb ->> 'chargeId', k.response_body::jsonb ->> 'topUpId') AS detail
            FROM idempotency_keys k
           WHERE k.response_status = 402
             AND NOT EXISTS (SELECT 1 FROM charges c
                              WHERE c.merchant_id = k.merchant_id AND c.status = 'failed'
                                AND c.id = k.response_body::jsonb ->> 'chargeId')
             AND NOT EXISTS (SELECT 1 FROM top_ups t
                              WHERE t.merchant_id = k.merchant_id AND t.status IN ('declined', 'failed')
                                AND t.id = k.response_body::jsonb ->> 'topUpId')`,
  },
];

export interface Violation {
  rule: string;
  id: string;
  detail: string;
}

/** Runs every check; returns the violations (none when the books are sound). */
export async function auditLedger(db: pg.Pool | pg.Client): Promise<Violation[]> {
  const violations: Violation[] = [];
  for (const check of AUDIT_CHECKS) {
    const { rows } = await db.query<{ id: string; detail: string }>(check.sql);
    violations.push(...rows.map((row) => ({ rule: check.rule, id: row.id, detail: row.detail })));
  }
  return violations;
}

/** A readable report: one line per violation, grouped by rule (`checks` of them were run). */
export function formatAudit(violations: Violation[], checks = AUDIT_CHECKS.length): string {
  if (violations.length === 0) return `OK: all ${checks} checks hold.`;
  const lines = [`${violations.length} violation(s):`];
  for (const rule of new Set(violations.map((v) => v.rule))) {
    const found = violations.filter((v) => v.rule === rule);
    lines.push(`- ${rule}: ${found.length}`);
    for (const v of found.slice(0, 20)) lines.push(`    ${v.id}: ${v.detail}`);
    if (found.length > 20) lines.push(`    ... and ${found.length - 20} more`);
  }
  return lines.join('\n');
}
