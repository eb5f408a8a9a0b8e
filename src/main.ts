import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { AppModule } from './app.module.js';
import { createApp } from './app.setup.js';
import { InFlightRequests } from './http/in-flight.js';
import { createLogger } from './common/logger.js';
import { ConfigError, connectionSettings, loadConfig } from './config/config.js';
import { migrate } from './database/data-source.js';
import { openDatabase } from './database/open-database.js';
import { MerchantsService } from './merchants/merchants.service.js';
import { type LocalProcessor, startLocalProcessor } from './top-ups/local-processor.js';

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
  const applied = await migrate(databaseUrl, connectionSettings(config));
  if (applied.length > 0) log.log({ msg: 'migrations applied', migrations: applied });

  // Card top-ups call a processor. None named: the stand-in of processor/, outside
  // production, as a process of its own on a database of its own.
  let processor: LocalProcessor | undefined;
  if (!config.PROCESSOR_URL && config.NODE_ENV !== 'production') {
    processor = await startLocalProcessor(databaseUrl, config.DATA_DIR, config.PROCESSOR_API_KEY);
    log.log({ msg: 'local card processor started', url: processor.url });
  } else if (!config.PROCESSOR_URL) {
    log.warn({ msg: 'no PROCESSOR_URL: card top-ups will stay pending until one is set' });
  }
  const processorUrl = config.PROCESSOR_URL ?? processor?.url;

  const inFlight = new InFlightRequests();
  const app = await createApp(AppModule.forRoot(config, databaseUrl, processorUrl), {
    config,
    logger,
    inFlight,
  });
  if (config.NODE_ENV !== 'production') {
    await app.get(MerchantsService).ensureWithApiKey('Demo merchant', config.DEMO_API_KEY);
  }
  await app.listen(config.PORT, config.HOST);
  const url = `http://localhost:${config.PORT}`;
  log.log({
    msg: `payments API listening on ${url}`,
    health: `${url}/health`,
    docs: `${url}/docs`,
    ...(config.NODE_ENV !== 'production'
      ? { retryLab: `${url}/lab`, demoApiKey: config.DEMO_API_KEY }
      : {}),
  });

  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.log({ msg: `${signal}: finishing in-flight requests, then shutting down` });
    const force = setTimeout(() => {
      log.error({ msg: `still busy after ${SHUTDOWN_TIMEOUT_MS} ms; exiting anyway` });
      process.exit(1); // open transactions roll back: nothing is half-applied
    }, SHUTDOWN_TIMEOUT_MS).unref();

    // 1. Stop accepting connections and let in-flight requests finish and commit.
    //    Keep-alive connections waiting for their next request are closed as they
    //    go idle, so the drain does not wait for clients to hang up.
    const server = app.getHttpServer();
    //    A request whose client hung up has no connection left but may still be
    //    running: wait for the handlers too, not only for the connections.
    const reaper = setInterval(() => server.closeIdleConnections(), 100);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await inFlight.idle();
    clearInterval(reaper);
    //    No request is being handled now. A connection still open has sent no
    //    request, or part of one: a client or load balancer that connected ahead
    //    of time. Node counts it as busy until its headers timeout (a minute), so
    //    close it: nothing was received on it, nothing is lost.
    server.closeAllConnections();
    await closed;
    // 2. Then stop background work and close the pool, 3. then the local processor
    //    and the embedded database.
    await app.close();
    await processor?.stop();
    await database.close();
    clearTimeout(force);
    log.log({ msg: 'stopped' });
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));
}

/** In-flight requests get this long to finish after SIGTERM (Prefer: wait is at most 10 s). */
const SHUTDOWN_TIMEOUT_MS = 25_000;

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

bootstrap().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
