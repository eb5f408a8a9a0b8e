// The bare anchor: POST /charges as this service serves it, without NestJS.
//
// Plain Fastify (the server the service runs on) and node-postgres with the service's
// own pool settings, sending the same statements in the same two round trips:
//   1. BEGIN, the claim of the key, the debit (ledger entry and conditional UPDATE);
//   2. the charge's row, the event with its deliveries, the stored response, COMMIT;
// and answering the same 201 body with the same Location. A completed key is
// replayed from memory first, as the service's instances do. What it leaves out is
// what the framework and the service's edge add: modules and DI, guards, pipes and
// interceptors, rxjs, class-validator and class-transformer, the rate limiter, the
// access log and the metrics. So `npm run bench` puts its figures beside the
// service's, and their ratio is the price of all that (issue 34).
//
// A measuring instrument, never served by the app: it handles the bench's charges
// (funded accounts, valid bodies) and answers anything else with a bare status code.
// It is started by bench/run.ts and bench/instructions.ts, in a child process:
//   node build/bench/bare-api.js   with DATABASE_URL, PORT, DB_POOL_SIZE, and DB_POOLER
//   and DB_PREPARED_STATEMENTS as the API's (behind PgBouncer: BEGIN with the
//   timeouts, unnamed statements)
import Fastify from 'fastify';
import { hash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { newId } from '../src/common/ids.js';
import type { ConnectionSettings } from '../src/config/config.js';
import { beginStatement, createPool, DIRECT } from '../src/database/connection.js';
import { socketOf } from '../src/database/pg-internals.js';
import { requestFingerprint } from '../src/idempotency/fingerprint.js';
import { hashApiKey } from '../src/merchants/api-key.js';

const MAX_BALANCE = Number.MAX_SAFE_INTEGER;
const TTL_SECONDS = 86_400;
/** Completed responses remembered, as the service's IDEMPOTENCY_CACHE_SIZE. */
const REMEMBERED = 10_000;

// The service's statements, as its services write them (ledger, charges, events with
// the webhooks' subscriber, idempotency). bench:instructions counts both sides, so a
// drift between them shows there.
const CLAIM = 'SELECT claim_idempotency_key($1, $2, $3, $4)';
const DEBIT = `WITH moved AS (
         UPDATE accounts SET balance = balance + $5::bigint, version = version + 1, updated_at = now()
          WHERE merchant_id = $1 AND id = $2 AND currency = $3 AND closed_at IS NULL
            AND balance + $5::bigint BETWEEN 0 AND $8::bigint
         RETURNING balance)
       INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       SELECT $1, $6, $2, $4, $5, moved.balance, $7 FROM moved
       RETURNING balance_after AS "balanceAfter", created_at AS "createdAt"`;
const INSERT_CHARGE = `INSERT INTO charges (merchant_id, id, account_id, amount, currency, description,
                     metadata, status, failure_code, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now()))`;
const RECORD_EVENT = `WITH event AS (INSERT INTO events (merchant_id, id, type, data) VALUES ($1, $2, $3, $4)) INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id)
    SELECT $1, $2, endpoint.id FROM webhook_endpoints endpoint
     WHERE endpoint.merchant_id = $1 AND endpoint.enabled AND endpoint.deleted_at IS NULL`;
const STORE_RESPONSE = `INSERT INTO idempotency_keys
         (merchant_id, key, request_method, request_path, fingerprint, response_status,
          response_content_type, response_body, response_location, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()),
               coalesce($10, now()) + make_interval(secs => $11))`;

interface ChargeBody {
  accountId: string;
  amount: number;
  currency: string;
}

interface Completed {
  fingerprint: string;
  body: string;
  location: string;
}

/** Named statements, as the service prepares them: one name per text. */
const names = new Map<string, string>();
function named(text: string, values: unknown[]): pg.QueryConfig {
  let name = names.get(text);
  if (!name) names.set(text, (name = `s${hash('sha1', text, 'hex').slice(0, 16)}`));
  return { name, text, values };
}

/** Sends what is queried in this turn of the event loop in one write, as TransactionHost does. */
function together(client: pg.PoolClient): void {
  const socket = socketOf(client);
  if (!socket || socket.writableCorked > 0) return;
  socket.cork();
  setImmediate(() => socket.uncork());
}

export async function startBareApi(
  databaseUrl: string,
  port: number,
  poolSize: number,
  connection: ConnectionSettings = DIRECT,
) {
  const pool = createPool(databaseUrl, poolSize, connection);
  const begin = beginStatement(connection);
  const statement =
    connection.preparedStatements === 'named'
      ? named
      : (text: string, values: unknown[]): pg.QueryConfig => ({ text, values });
  const merchants = new Map<string, string>();
  const completed = new Map<string, Completed>();
  const app = Fastify({ logger: false });

  app.post<{ Body: ChargeBody }>('/charges', async (req, reply) => {
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const key = req.headers['idempotency-key'];
    const body = req.body;
    if (!token || typeof key !== 'string') return reply.code(400).send();
    if (
      typeof body?.accountId !== 'string' ||
      !Number.isSafeInteger(body.amount) ||
      body.amount <= 0 ||
      !/^[A-Z]{3}$/.test(body.currency)
    ) {
      return reply.code(400).send();
    }
    let merchantId = merchants.get(token);
    if (!merchantId) {
      const { rows } = await pool.query<{ id: string }>(
        statement('SELECT id, name FROM merchants WHERE api_key_hash = $1', [hashApiKey(token)]),
      );
      if (!rows[0]) return reply.code(401).send();
      merchants.set(token, (merchantId = rows[0].id));
    }
    const fingerprint = requestFingerprint('POST', '/charges', body);
    const done = completed.get(`${merchantId}:${key}`);
    if (done) {
      if (done.fingerprint !== fingerprint) return reply.code(422).send();
      return reply
        .code(201)
        .headers({
          'content-type': 'application/json',
          location: done.location,
          'idempotent-replayed': 'true',
        })
        .send(done.body);
    }

    const client = await pool.connect();
    try {
      const chargeId = newId('charge');
      together(client);
      const opening = [
        client.query(begin),
        client.query(
          statement(CLAIM, [
            hash('sha256', `${merchantId}:${key}`, 'buffer').readBigInt64BE(0),
            merchantId,
            key,
            false,
          ]),
        ),
      ];
      const debit = client.query<{ createdAt: Date }>(
        statement(DEBIT, [
          merchantId,
          body.accountId,
          body.currency,
          'charge',
          -body.amount,
          newId('ledgerEntry'),
          chargeId,
          MAX_BALANCE,
        ]),
      );
      try {
        await Promise.all(opening);
      } catch {
        debit.catch(() => undefined);
        await client.query('ROLLBACK');
        return reply.code(409).send(); // completed elsewhere, or in use: the service tells which
      }
      const [posted] = (await debit).rows;
      if (!posted) {
        await client.query('ROLLBACK');
        return reply.code(402).send(); // the bench's accounts never run dry
      }
      const view = {
        id: chargeId,
        object: 'charge',
        accountId: body.accountId,
        amount: body.amount,
        currency: body.currency,
        description: null,
        metadata: {},
        status: 'succeeded',
        amountRefunded: 0,
        createdAt: posted.createdAt.toISOString(),
      };
      const json = JSON.stringify(view);
      const location = `/charges/${chargeId}`;
      together(client);
      await Promise.all([
        client.query(
          statement(INSERT_CHARGE, [
            merchantId,
            chargeId,
            body.accountId,
            body.amount,
            body.currency,
            null,
            '{}',
            'succeeded',
            null,
            posted.createdAt,
          ]),
        ),
        client.query(
          statement(RECORD_EVENT, [
            merchantId,
            newId('event'),
            'charge.succeeded',
            JSON.stringify({ object: view }),
          ]),
        ),
        client.query(
          statement(STORE_RESPONSE, [
            merchantId,
            key,
            'POST',
            '/charges',
            fingerprint,
            201,
            'application/json',
            json,
            location,
            null,
            TTL_SECONDS,
          ]),
        ),
        client.query('COMMIT'),
      ]);
      completed.set(`${merchantId}:${key}`, { fingerprint, body: json, location });
      if (completed.size > REMEMBERED) completed.delete(completed.keys().next().value!);
      return reply.code(201).headers({ 'content-type': 'application/json', location }).send(json);
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  });
  app.get('/health', (_req, reply) => reply.send({ status: 'ok' }));

  await app.listen({ host: '127.0.0.1', port });
  return {
    close: async () => {
      await app.close();
      await pool.end();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { DATABASE_URL, PORT, DB_POOL_SIZE, DB_POOLER, DB_PREPARED_STATEMENTS } = process.env;
  if (!DATABASE_URL || !PORT) throw new Error('bare-api: DATABASE_URL and PORT, please');
  const server = await startBareApi(DATABASE_URL, Number(PORT), Number(DB_POOL_SIZE ?? 10), {
    pooler: (DB_POOLER ?? DIRECT.pooler) as ConnectionSettings['pooler'],
    preparedStatements: (DB_PREPARED_STATEMENTS ??
      DIRECT.preparedStatements) as ConnectionSettings['preparedStatements'],
  });
  process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
}
