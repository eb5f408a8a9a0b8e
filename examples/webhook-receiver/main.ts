// The reference receiver on its own: node build/examples/webhook-receiver/main.js, with
//   DATABASE_URL      its own database (required)
//   WEBHOOK_SECRETS   the endpoint's signing secrets, comma-separated (whsec_...)
//   PORT              where it listens (4100)
// Register http://127.0.0.1:4100/webhooks with POST /webhook-endpoints, and give it the secret.
import pg from 'pg';
import { buildReceiver, migrateReceiver } from './receiver.js';

async function main(): Promise<void> {
  const { DATABASE_URL, WEBHOOK_SECRETS = '', PORT = '4100' } = process.env;
  if (!DATABASE_URL) throw new Error('DATABASE_URL (the receiver database) is required');
  const db = new pg.Pool({ connectionString: DATABASE_URL });
  await migrateReceiver(db);
  const secrets = WEBHOOK_SECRETS.split(',').filter(Boolean);
  const app = await buildReceiver({ db, secrets: () => secrets });
  await app.listen({ port: Number(PORT), host: '127.0.0.1' });
  console.log(`webhook receiver listening on http://127.0.0.1:${PORT}/webhooks`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
