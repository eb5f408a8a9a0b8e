import Fastify, { type FastifyInstance } from 'fastify';
import type pg from 'pg';
import { Webhook } from 'standardwebhooks';

/**
 * A reference webhook receiver: what a merchant writes to take this API's events.
 *
 * 1. Verify before anything: the signature (HMAC-SHA256 over id.timestamp.body, with
 *    any of the endpoint's current secrets, so that a rotation needs no downtime)
 *    and the timestamp (within five minutes: an old message replayed is refused).
 *    The standardwebhooks package does both.
 * 2. Apply each event exactly once: its webhook-id goes into an inbox table under a
 *    unique constraint, in the same transaction as its effect. A duplicate (every
 *    delivery system delivers some twice) finds its id there and changes nothing:
 *    the idempotent consumer, the twin of the API's own key table.
 * 3. Answer 2xx only once the effect is committed, so that the sender tries again
 *    otherwise. Two other answers the sender reads: 429 or 503 with Retry-After
 *    (seconds) asks it to wait at least that long before the next try, and 410 Gone
 *    unsubscribes, disabling the endpoint (docs/webhooks.md#webhook-security).
 *
 * Events are not promised in order; this receiver's effect (running totals per
 * account) does not depend on it. One that does keeps the newest state it has seen
 * (an account's version) and ignores older ones.
 *
 * The faults are for the tests: answer 5xx before applying, be slow, or apply and
 * commit, then cut the connection before answering (the sender must send again).
 */
export interface ReceiverOptions {
  db: pg.Pool;
  /** The endpoint's signing secrets (whsec_...) the receiver accepts. */
  secrets: () => string[];
  /** Read on every request, so that a test can change them while it runs. */
  faults?: ReceiverFaults;
  rng?: () => number;
  /** Told of each verified event as it arrives, and once it is applied or found a duplicate. */
  onEvent?: (seen: { webhookId: string; type: string; outcome: EventOutcome }) => void;
}

export interface ReceiverFaults {
  /** Share of requests answered 503 before anything is applied. */
  failRate?: number;
  /** Share of requests applied and committed, whose answer is then cut. */
  dropAfterApplyRate?: number;
  /** Wait before applying. */
  slowMs?: number;
}

export type EventOutcome = 'received' | 'applied' | 'duplicate ignored';

/** The Server header of the receiver's answers (it is not the payments API). */
export const RECEIVER_SERVER = 'webhook-receiver';

export async function migrateReceiver(db: pg.Pool): Promise<void> {
  await db.query(`
    -- Every event applied, by its webhook-id: the unique key makes "once" a fact.
    CREATE TABLE IF NOT EXISTS inbox (
      webhook_id  text PRIMARY KEY,
      type        text NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now()
    );
    -- The effect: what the merchant's own books say moved on each account.
    CREATE TABLE IF NOT EXISTS account_totals (
      account_id text PRIMARY KEY,
      credited   bigint NOT NULL DEFAULT 0,
      debited    bigint NOT NULL DEFAULT 0,
      events     int NOT NULL DEFAULT 0
    );`);
}

/** How an event moves money on its account: + credited, - debited, or nothing. */
function movementOf(type: string, object: Record<string, unknown>) {
  const amount = Number(object.amount ?? 0);
  switch (type) {
    case 'deposit.succeeded':
    case 'top_up.succeeded':
    case 'refund.succeeded':
      return { accountId: object.accountId as string, credited: amount, debited: 0 };
    case 'charge.succeeded':
      return { accountId: object.accountId as string, credited: 0, debited: amount };
    default:
      return undefined;
  }
}

export async function buildReceiver(options: ReceiverOptions): Promise<FastifyInstance> {
  const { db, faults = {}, rng = Math.random } = options;
  // return503OnClosing: while closing, Fastify would answer 503 by itself, past the
  // onSend hook below; a delivery that still arrives is handled like any other (the
  // database is closed only after the server).
  const app = Fastify({ logger: false, return503OnClosing: false });
  app.addHook('onSend', (_req, reply, payload, done) => {
    reply.header('Server', RECEIVER_SERVER);
    done(null, payload);
  });
  // The signature is over the exact bytes: keep the body as it came.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.post('/webhooks', async (req, reply) => {
    const body = req.body as string;
    const headers = {
      'webhook-id': String(req.headers['webhook-id'] ?? ''),
      'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
      'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
    };
    let event: { type: string; data: { object: Record<string, unknown> } } | undefined;
    for (const secret of options.secrets()) {
      try {
        event = new Webhook(secret).verify(body, headers) as typeof event;
        break;
      } catch {
        // not this secret (or not a valid message at all): try the next
      }
    }
    if (!event) return reply.code(401).send({ error: 'signature or timestamp not valid' });
    options.onEvent?.({ webhookId: headers['webhook-id'], type: event.type, outcome: 'received' });

    if (rng() < (faults.failRate ?? 0)) return reply.code(503).send({ error: 'try again' });
    if (faults.slowMs) await new Promise((r) => setTimeout(r, faults.slowMs));

    const client = await db.connect();
    let applied: boolean;
    try {
      await client.query('BEGIN');
      const fresh = await client.query(
        `INSERT INTO inbox (webhook_id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`,
        [headers['webhook-id'], event.type],
      );
      const movement = movementOf(event.type, event.data.object);
      if (fresh.rowCount && movement) {
        await client.query(
          `INSERT INTO account_totals (account_id, credited, debited, events) VALUES ($1, $2, $3, 1)
           ON CONFLICT (account_id) DO UPDATE
             SET credited = account_totals.credited + $2, debited = account_totals.debited + $3,
                 events = account_totals.events + 1`,
          [movement.accountId, movement.credited, movement.debited],
        );
      }
      await client.query('COMMIT');
      applied = Boolean(fresh.rowCount);
      options.onEvent?.({
        webhookId: headers['webhook-id'],
        type: event.type,
        outcome: applied ? 'applied' : 'duplicate ignored',
      });
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
    if (rng() < (faults.dropAfterApplyRate ?? 0)) {
      // Applied and committed; the answer is lost on the way back.
      reply.hijack();
      req.raw.socket.destroy();
      return;
    }
    return reply
      .code(204)
      .header('x-duplicate', applied ? 'false' : 'true')
      .send();
  });
  return app;
}
