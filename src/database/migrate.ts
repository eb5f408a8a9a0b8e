// npm run migration:run: applies pending migrations to DATABASE_URL, or to the
// embedded PostgreSQL in DATA_DIR when it is unset.
import 'reflect-metadata';
import { ConfigError, connectionSettings, loadConfig } from '../config/config.js';
import { migrate } from './data-source.js';
import { openDatabase } from './open-database.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const database = await openDatabase(config);
  try {
    const applied = await migrate(database.url, connectionSettings(config));
    console.log(applied.length ? `Applied: ${applied.join(', ')}` : 'No pending migrations.');
  } finally {
    await database.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
