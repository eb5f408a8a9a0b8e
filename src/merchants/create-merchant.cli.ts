// npm run merchant:create -- --name "Acme": creates a merchant and prints its new
// API key alone on the last line of stdout. The key is shown this once only.
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { ConfigError, connectionSettings, loadConfig } from '../config/config.js';
import { createPool } from '../database/connection.js';
import { migrate } from '../database/data-source.js';
import { openDatabase } from '../database/open-database.js';
import { TransactionHost } from '../database/transaction-host.js';
import { MerchantsService } from './merchants.service.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { name: { type: 'string' } } });
  const name = values.name?.trim();
  if (!name || name.length > 100) {
    throw new ConfigError('Usage: npm run merchant:create -- --name <name (1..100 characters)>');
  }
  const config = loadConfig();
  const connection = connectionSettings(config);
  const database = await openDatabase(config);
  const pool = createPool(database.url, 1, connection);
  try {
    await migrate(database.url, connection);
    const merchants = new MerchantsService(new TransactionHost(pool, connection));
    const { merchant, apiKey } = await merchants.create(name);
    console.log(`Created merchant ${merchant.id} (${merchant.name}). Its API key, shown once:`);
    console.log(apiKey);
  } finally {
    await pool.end();
    await database.close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
