import type pg from 'pg';
import type { Violation } from './ledger-audit.js';

/** A payment as the processor lists it. */
interface ProcessorPayment {
  id: string;
  idempotencyKey: string;
  amount: number;
  currency: string;
  status: 'succeeded' | 'declined';
  amountRefunded: number;
}

interface LocalTopUp {
  id: string;
  amount: number;
  currency: string;
  status: 'pending' | 'succeeded' | 'declined' | 'failed';
  processorPaymentId: string | null;
  failureCode: string | null;
}

export const RECONCILIATION_RULES = {
  knownHere: 'every processor payment is one top-up here, of the same amount',
  keptOnlyIfCredited: 'what the processor kept of a card charge is what was credited here',
  knownThere: 'every finished top-up is one payment at the processor, as recorded here',
} as const;

/**
 * Reconciliation: our books against the processor's, which only its API shows.
 * Every payment the processor made for us must be exactly one top-up here (its key
 * is the top-up's id), of the same amount and currency; what it kept of the charge
 * (its amount less its refunds) must be what was credited here, to the cent; every finished
 * top-up must name the payment the processor has. Top-ups still pending are in
 * flight and not judged.
 */
export async function reconcile(
  db: pg.Pool | pg.Client,
  processor: { url: string; apiKey: string },
): Promise<Violation[]> {
  const payments = await allPayments(processor);
  const { rows } = await db.query<LocalTopUp & { amount: string }>(
    `SELECT id, amount, currency, status, processor_payment_id AS "processorPaymentId",
            failure_code AS "failureCode"
       FROM top_ups`,
  );
  const topUps = new Map(rows.map((r) => [r.id, { ...r, amount: Number(r.amount) }]));
  const violations: Violation[] = [];
  const flag = (rule: string, id: string, detail: string) => violations.push({ rule, id, detail });

  const byKey = new Map<string, ProcessorPayment[]>();
  for (const p of payments)
    byKey.set(p.idempotencyKey, [...(byKey.get(p.idempotencyKey) ?? []), p]);
  for (const [key, made] of byKey) {
    const topUp = topUps.get(key);
    const p = made[0];
    if (!topUp) flag(RECONCILIATION_RULES.knownHere, p.id, `no top-up ${key} here`);
    else if (made.length > 1) flag(RECONCILIATION_RULES.knownHere, key, `${made.length} payments`);
    else if (p.amount !== topUp.amount || p.currency !== topUp.currency) {
      flag(
        RECONCILIATION_RULES.knownHere,
        p.id,
        `${p.amount} ${p.currency} there, ${topUp.amount} ${topUp.currency} here`,
      );
    } else if (topUp.status !== 'pending') {
      // What the processor kept of the card charge (less what it refunded, in whole
      // or in part), against what was credited here.
      const kept = p.status === 'succeeded' ? p.amount - p.amountRefunded : 0;
      const credited = topUp.status === 'succeeded' ? topUp.amount : 0;
      if (kept !== credited) {
        flag(
          RECONCILIATION_RULES.keptOnlyIfCredited,
          p.id,
          `${p.status}, ${kept} kept (${p.amountRefunded} refunded) there; ${topUp.status}, ${credited} credited here`,
        );
      }
    }
  }

  const byId = new Map(payments.map((p) => [p.id, p]));
  for (const topUp of topUps.values()) {
    const answered =
      topUp.status === 'succeeded' ||
      topUp.status === 'declined' ||
      topUp.failureCode === 'credit_refused';
    if (!answered) continue;
    const p = topUp.processorPaymentId ? byId.get(topUp.processorPaymentId) : undefined;
    if (!p || p.idempotencyKey !== topUp.id) {
      flag(
        RECONCILIATION_RULES.knownThere,
        topUp.id,
        `payment ${topUp.processorPaymentId ?? '(none)'} not found there`,
      );
    }
  }
  return violations;
}

async function allPayments({
  url,
  apiKey,
}: {
  url: string;
  apiKey: string;
}): Promise<ProcessorPayment[]> {
  const all: ProcessorPayment[] = [];
  let after = '';
  for (;;) {
    const res = await fetch(
      `${url}/payments?limit=1000&startingAfter=${encodeURIComponent(after)}`,
      {
        headers: { Authorization: `Bearer ${apiKey}` },
      },
    );
    if (!res.ok) throw new Error(`the processor's payments: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { data: ProcessorPayment[]; hasMore: boolean };
    all.push(...page.data);
    if (!page.hasMore || page.data.length === 0) return all;
    after = page.data[page.data.length - 1].id;
  }
}
