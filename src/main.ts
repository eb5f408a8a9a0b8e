import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { configureApp } from './app.setup.js';
import { createLogger } from './common/logger.js';
import { ConfigError, loadConfig } from './config/config.js';
import { migrate } from './database/data-source.js';
import { openDatabase } from './database/open-database.js';
import { MerchantsService } from './merchants/merchants.service.js';

async function bootstrap(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  Logger.overrideLogger(logger);
  const log = new Logger('Bootstrap');

  const database = await openDatabase(config);
  const databaseUrl = database.url;
  if (database.startedEmbedded) {
    log.log({
      msg: 'embedded PostgreSQL started',
      dataDir: config.DATA_DIR,
      url: redact(databaseUrl),
    });
  }
  const applied = await migrate(databaseUrl);
  if (applied.length > 0) log.log({ msg: 'migrations applied', migrations: applied });

  const app = await NestFactory.create(AppModule.forRoot(config, databaseUrl), {
    bodyParser: false,
    logger,
  });
  configureApp(app);
  if (config.NODE_ENV !== 'production') {
    await app.get(MerchantsService).ensureWithApiKey('Demo merchant', config.DEMO_API_KEY);
  }
  await app.listen(config.PORT);
  const url = `http://localhost:${config.PORT}`;
  log.log({
    msg: `payments API listening on ${url}`,
    health: `${url}/health`,
    ...(config.NODE_ENV !== 'production' ? { demoApiKey: config.DEMO_API_KEY } : {}),
  });

  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.log({ msg: `${signal}: shutting down` });
    await app.close(); // stops accepting, lets in-flight requests finish, closes the pool
    await database.close();
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

bootstrap().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
