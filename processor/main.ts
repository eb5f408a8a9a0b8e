// The card processor on its own: node dist/processor/main.js, with
//   DATABASE_URL          its own PostgreSQL database (required)
//   PORT, HOST            where it listens (4000, 127.0.0.1)
//   PROCESSOR_FAULT_RATE  share of new payments that meet a random fault (0)
//   PROCESSOR_SLOW_MS, PROCESSOR_HOLD_MS  how slow tok_slow is, how long a timed-out answer is held
//   PROCESSOR_API_KEYS    its callers' secret keys, comma-separated: required in production
//                         (NODE_ENV=production); outside it, unset, the API's test key
// npm start runs it as a child process of the API when PROCESSOR_URL is unset.
import pg from 'pg';
import { buildProcessor, TEST_API_KEY } from './app.js';
import { migrate } from './schema.js';

const env = process.env;
const number = (name: string, fallback: number) => {
  const value = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number >= 0`);
  return value;
};

async function main(): Promise<void> {
  if (!env.DATABASE_URL) throw new Error('DATABASE_URL (the processor database) is required');
  const apiKeys = (env.PROCESSOR_API_KEYS ?? '').split(',').filter(Boolean);
  if (apiKeys.length === 0 && env.NODE_ENV === 'production') {
    throw new Error("PROCESSOR_API_KEYS (its callers' keys) is required in production");
  }
  const db = new pg.Pool({ connectionString: env.DATABASE_URL, max: 10 });
  db.on('error', () => undefined);
  await migrate(db);
  const app = await buildProcessor({
    db,
    apiKeys: apiKeys.length > 0 ? apiKeys : [TEST_API_KEY],
    faultRate: number('PROCESSOR_FAULT_RATE', 0),
    slowMs: number('PROCESSOR_SLOW_MS', 1_500),
    holdMs: number('PROCESSOR_HOLD_MS', 10_000),
  });
  await app.listen({ port: number('PORT', 4000), host: env.HOST ?? '127.0.0.1' });
  console.log(
    JSON.stringify({
      msg: 'card processor listening',
      url: `http://127.0.0.1:${number('PORT', 4000)}`,
    }),
  );
  const stop = async () => {
    await app.close();
    await db.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // Run by a parent (npm start's API): go when it goes, even killed with -9, whose
  // end of this pipe then closes.
  if (env.PROCESSOR_EXIT_WITH_PARENT === '1') process.stdin.on('close', () => void stop()).resume();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
