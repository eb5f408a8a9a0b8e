import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';

/**
 * A card processor, as a payment service provider offers one: it charges test cards
 * and refunds payments, honours its own Idempotency-Key (the same key from the same
 * caller gets the same answer, and moves money once), and keeps its records in a
 * database of its own. It knows nothing of the payments API that calls it.
 *
 * Only callers with one of its API keys are served (401 otherwise). Test cards
 * decide what happens, as with real providers:
 *   tok_visa, tok_mastercard     succeeds
 *   tok_declined                 declined, card_declined
 *   tok_insufficient_funds       declined, insufficient_funds
 *   tok_slow                     succeeds after `slowMs`
 *   tok_error                    answers 500 every time, charges nothing
 *   tok_timeout_after_charge     charges, then holds the first answer for `holdMs`
 *   tok_drop_after_charge        charges, then cuts the connection (first answer only)
 *   any other tok_...            declined, unknown_card (a token it never issued)
 * With `faultRate` > 0, that share of new payments also meets one of the last three,
 * at random: the chaos tests' processor.
 */
export interface ProcessorOptions {
  db: pg.Pool;
  /** The secret keys of its callers (default: the API's test key, TEST_API_KEY). */
  apiKeys?: string[];
  faultRate?: number;
  rng?: () => number;
  slowMs?: number;
  holdMs?: number;
}

type Fault = 'error' | 'timeout-after-charge' | 'drop-after-charge';
const RANDOM_FAULTS: Fault[] = ['error', 'timeout-after-charge', 'drop-after-charge'];

interface PaymentRow {
  id: string;
  idempotency_key: string;
  fingerprint: string;
  amount: string;
  currency: string;
  card: string;
  status: 'succeeded' | 'declined';
  decline_code: string | null;
  amount_refunded: string;
  created_at: Date;
}

/** The key the payments API uses outside production (its PROCESSOR_API_KEY default). */
export const TEST_API_KEY = 'sk_processor_test_payments_api';

/** The test cards it knows; any other token is declined, as an unknown card is. */
const KNOWN_CARDS = new Set([
  'tok_visa',
  'tok_mastercard',
  'tok_declined',
  'tok_insufficient_funds',
  'tok_slow',
  'tok_error',
  'tok_timeout_after_charge',
  'tok_drop_after_charge',
]);

/** The Server header of every response of the processor. */
export const PROCESSOR_SERVER = 'card-processor';
const KEY = /^[\x21-\x7e]{1,255}$/;
const CURRENCY = /^[A-Z]{3}$/;
const MAX_AMOUNT = 1_000_000_000_000;

export async function buildProcessor(options: ProcessorOptions): Promise<FastifyInstance> {
  const { db, faultRate = 0, rng = Math.random, slowMs = 1_500, holdMs = 10_000 } = options;
  const callers = new Set((options.apiKeys ?? [TEST_API_KEY]).map((key) => sha256(key)));
  const app = Fastify({ logger: false });
  // Who answered: the payments API's tests check every local response against the
  // API's contract, and this one is not the API.
  app.addHook('onSend', (_req, reply, payload, done) => {
    reply.header('Server', PROCESSOR_SERVER);
    done(null, payload);
  });
  const faultOf = (card: string): Fault | undefined => {
    if (card === 'tok_error') return 'error';
    if (card === 'tok_timeout_after_charge') return 'timeout-after-charge';
    if (card === 'tok_drop_after_charge') return 'drop-after-charge';
    if (faultRate > 0 && rng() < faultRate) return RANDOM_FAULTS[Math.floor(rng() * 3)];
    return undefined;
  };

  app.get('/health', () => Promise.resolve({ status: 'ok' }));

  app.post('/payments', async (req, reply) => {
    const caller = callerOf(req, callers);
    const key = keyOf(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const { amount, currency, card } = body;
    if (!isAmount(amount) || typeof currency !== 'string' || !CURRENCY.test(currency)) {
      throw new ProcessorError(400, 'invalid_request', 'amount (integer minor units) and currency');
    }
    if (typeof card !== 'string' || !/^tok_\w{1,40}$/.test(card)) {
      throw new ProcessorError(400, 'invalid_request', 'card must be a test card token (tok_...)');
    }
    const fingerprint = sha256(`${amount} ${currency} ${card}`);
    const existing = await findByKey(db, 'payments', caller, key);
    if (existing) return replay(reply, existing as unknown as PaymentRow, fingerprint, payment);

    const fault = faultOf(card);
    if (fault === 'error') throw new ProcessorError(500, 'processor_error', 'try again later');
    if (card === 'tok_slow') await sleep(slowMs);
    const declineCode = !KNOWN_CARDS.has(card)
      ? 'unknown_card'
      : card === 'tok_declined'
        ? 'card_declined'
        : card === 'tok_insufficient_funds'
          ? 'insufficient_funds'
          : null;
    const { rows } = await db.query<PaymentRow>(
      `INSERT INTO payments (caller, idempotency_key, fingerprint, id, amount, currency, card, status, decline_code)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (caller, idempotency_key) DO NOTHING
       RETURNING *`,
      [
        caller,
        key,
        fingerprint,
        newId('pay'),
        amount,
        currency,
        card,
        declineCode ? 'declined' : 'succeeded',
        declineCode,
      ],
    );
    // A concurrent request with the key got there first: this is its payment.
    if (!rows[0]) {
      const winner = (await findByKey(db, 'payments', caller, key)) as unknown as PaymentRow;
      return replay(reply, winner, fingerprint, payment);
    }
    // The payment is made and committed. What follows is the network failing.
    if (fault === 'drop-after-charge') return drop(req, reply);
    if (fault === 'timeout-after-charge') await sleep(holdMs);
    return reply.code(201).send(payment(rows[0]));
  });

  app.get('/payments', async (req) => {
    const caller = callerOf(req, callers);
    const query = req.query as { limit?: string; startingAfter?: string };
    const limit = Math.min(Math.max(Number(query.limit ?? 100) || 100, 1), 1_000);
    const { rows } = await db.query<PaymentRow>(
      `SELECT * FROM payments WHERE caller = $1 AND id > $2 ORDER BY id LIMIT $3`,
      [caller, query.startingAfter ?? '', limit + 1],
    );
    return { data: rows.slice(0, limit).map(payment), hasMore: rows.length > limit };
  });

  app.get('/payments/:id', async (req) => {
    const { rows } = await db.query<PaymentRow>(
      'SELECT * FROM payments WHERE caller = $1 AND id = $2',
      [callerOf(req, callers), (req.params as { id: string }).id],
    );
    if (!rows[0]) throw new ProcessorError(404, 'not_found', 'no such payment');
    return payment(rows[0]);
  });

  app.post('/payments/:id/refunds', async (req, reply) => {
    const caller = callerOf(req, callers);
    const key = keyOf(req);
    const paymentId = (req.params as { id: string }).id;
    const { amount } = (req.body ?? {}) as { amount?: unknown };
    if (!isAmount(amount)) throw new ProcessorError(400, 'invalid_request', 'amount');
    const fingerprint = sha256(`${paymentId} ${amount}`);
    const existing = await findByKey(db, 'refunds', caller, key);
    if (existing) return replay(reply, existing as unknown as RefundRow, fingerprint, refund);

    const client = await db.connect();
    try {
      await client.query('BEGIN');
      const updated = await client.query(
        `UPDATE payments SET amount_refunded = amount_refunded + $3
          WHERE caller = $1 AND id = $2 AND status = 'succeeded' AND amount_refunded + $3 <= amount
         RETURNING id`,
        [caller, paymentId, amount],
      );
      if (updated.rowCount === 0) {
        throw new ProcessorError(
          422,
          'refund_exceeds_payment',
          'no such payment, or not that much left',
        );
      }
      const { rows } = await client.query<RefundRow>(
        `INSERT INTO refunds (caller, idempotency_key, fingerprint, id, payment_id, amount)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [caller, key, fingerprint, newId('rf'), paymentId, amount],
      );
      await client.query('COMMIT');
      return reply.code(201).send(refund(rows[0]));
    } catch (error) {
      await client.query('ROLLBACK');
      if ((error as { code?: string }).code === '23505') {
        const winner = (await findByKey(db, 'refunds', caller, key)) as unknown as RefundRow;
        return replay(reply, winner, fingerprint, refund);
      }
      throw error;
    } finally {
      client.release();
    }
  });

  app.setErrorHandler((error, _req, reply) => {
    if (error instanceof ProcessorError) {
      return reply.code(error.status).send({ error: error.code, message: error.message });
    }
    const { statusCode, message } = error as { statusCode?: number; message?: string };
    if (statusCode && statusCode < 500) {
      return reply.code(statusCode).send({ error: 'invalid_request', message });
    }
    return reply.code(500).send({ error: 'processor_error', message: 'try again later' });
  });
  return app;
}

interface RefundRow {
  id: string;
  fingerprint: string;
  payment_id: string;
  amount: string;
  created_at: Date;
}

class ProcessorError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The caller, from its secret key, one of `callers` (their SHA-256): idempotency
 * keys and payments are scoped to it.
 */
function callerOf(req: FastifyRequest, callers: Set<string>): string {
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token) throw new ProcessorError(401, 'unauthorized', 'send Authorization: Bearer <key>');
  const hashed = sha256(token);
  if (!callers.has(hashed)) throw new ProcessorError(401, 'unauthorized', 'unknown API key');
  return hashed.slice(0, 32);
}

function keyOf(req: FastifyRequest): string {
  const key = req.headers['idempotency-key'];
  if (typeof key !== 'string' || !KEY.test(key)) {
    throw new ProcessorError(
      400,
      'invalid_request',
      'send an Idempotency-Key (1..255 visible ASCII)',
    );
  }
  return key;
}

async function findByKey(db: pg.Pool, table: 'payments' | 'refunds', caller: string, key: string) {
  const { rows } = await db.query<Record<string, unknown>>(
    `SELECT * FROM ${table} WHERE caller = $1 AND idempotency_key = $2`,
    [caller, key],
  );
  return rows[0];
}

/** The stored answer for a key, or 422 when the key was used for another request. */
function replay<T extends { fingerprint: string }>(
  reply: FastifyReply,
  row: T,
  fingerprint: string,
  view: (row: T) => object,
) {
  if (row.fingerprint !== fingerprint) {
    throw new ProcessorError(
      422,
      'idempotency_key_reused',
      'this key was used for another request',
    );
  }
  return reply.code(201).header('Idempotent-Replayed', 'true').send(view(row));
}

/** The response never arrives: the connection is cut after the work is done. */
function drop(req: FastifyRequest, reply: FastifyReply) {
  reply.hijack();
  req.raw.socket.destroy();
}

function payment(row: PaymentRow) {
  return {
    id: row.id,
    object: 'payment',
    /** The key the caller made it under: its reference for reconciling. */
    idempotencyKey: row.idempotency_key,
    amount: Number(row.amount),
    currency: row.currency,
    card: row.card,
    status: row.status,
    declineCode: row.decline_code,
    amountRefunded: Number(row.amount_refunded),
    createdAt: row.created_at.toISOString(),
  };
}

function refund(row: RefundRow) {
  return {
    id: row.id,
    object: 'refund',
    payment: row.payment_id,
    amount: Number(row.amount),
    createdAt: row.created_at.toISOString(),
  };
}

function isAmount(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_AMOUNT;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
