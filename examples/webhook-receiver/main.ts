// The reference receiver on its own: npm run receiver (beside npm start), with
//   PORT              where it listens (4100)
//   API_URL           the payments API to register with (http://127.0.0.1:3000)
//   API_KEY           the merchant's key there (the demo merchant's, sk_test_demo)
//   WEBHOOK_SECRETS   set: the endpoint's signing secrets (whsec_..., comma-separated), and
//                     it registers nothing; unset: it registers itself with POST
//                     /webhook-endpoints, keeps the secret it is shown, and deletes the
//                     endpoint again when stopped
//   DATABASE_URL      its own database; unset: <database>_receiver beside the API's
//                     embedded PostgreSQL (DATA_DIR, .data)
//   RECEIVER_FAIL_RATE  share of events answered 503 before anything is applied (0)
//   RECEIVER_DROP_RATE  share applied and committed whose answer is then cut (0): the
//                       API sends them again, and the receiver ignores the duplicate
// It prints one line per event: applied, or a duplicate ignored.
import pg from 'pg';
import { openDatabase } from '../../src/database/open-database.js';
import { buildReceiver, migrateReceiver } from './receiver.js';

const env = process.env;
const port = Number(env.PORT ?? 4100);
const apiUrl = env.API_URL ?? 'http://127.0.0.1:3000';
const apiKey = env.API_KEY ?? 'sk_test_demo';
const rate = (name: string) => {
  const value = Number(env[name] ?? 0);
  if (!(value >= 0 && value <= 1)) throw new Error(`${name} must be a number from 0 to 1`);
  return value;
};

async function main(): Promise<void> {
  const database = await receiverDatabase();
  const db = new pg.Pool({ connectionString: database.url });
  await migrateReceiver(db);

  const secrets = (env.WEBHOOK_SECRETS ?? '').split(',').filter(Boolean);
  const app = await buildReceiver({
    db,
    secrets: () => secrets,
    faults: {
      failRate: rate('RECEIVER_FAIL_RATE'),
      dropAfterApplyRate: rate('RECEIVER_DROP_RATE'),
    },
    onEvent: ({ webhookId, type, outcome }) => {
      if (outcome !== 'received') console.log(JSON.stringify({ msg: outcome, type, webhookId }));
    },
  });
  await app.listen({ port, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${port}/webhooks`;

  let endpointId: string | undefined;
  if (secrets.length === 0) {
    const endpoint = await api<{ id: string; secret: string }>('POST', '/webhook-endpoints', {
      url,
      description: 'examples/webhook-receiver',
    });
    endpointId = endpoint.id;
    secrets.push(endpoint.secret);
  }
  console.log(JSON.stringify({ msg: 'webhook receiver listening', url, endpoint: endpointId }));

  const stop = async () => {
    await app.close();
    if (endpointId) await api('DELETE', `/webhook-endpoints/${endpointId}`).catch(() => undefined);
    await db.end();
    await database.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

/** DATABASE_URL, or a database of its own on the server npm start uses. */
async function receiverDatabase(): Promise<{ url: string; close(): Promise<void> }> {
  if (env.DATABASE_URL) return { url: env.DATABASE_URL, close: () => Promise.resolve() };
  const server = await openDatabase({ DATABASE_URL: undefined, DATA_DIR: env.DATA_DIR ?? '.data' });
  const url = new URL(server.url);
  url.pathname = `/${url.pathname.slice(1)}_receiver`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    const name = url.pathname.slice(1);
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  return { url: url.toString(), close: () => server.close() };
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`${method} ${apiUrl}${path}: ${response.status} ${await response.text()}`);
  }
  return (response.status === 204 ? undefined : await response.json()) as T;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
