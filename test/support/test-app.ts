import 'reflect-metadata';
import { afterAll, afterEach, beforeAll, expect } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import request from 'supertest';
import { AppModule } from '../../src/app.module.js';
import { createApp } from '../../src/app.setup.js';
import { loadConfig } from '../../src/config/config.js';
import { MerchantsService } from '../../src/merchants/merchants.service.js';
import { connectionEnv, createTestDatabase, testPool } from './databases.js';
import { ledgerViolations } from './invariants.js';
import { ContractChecker } from './openapi.js';

export interface TestApp {
  app: INestApplication;
  /** http://127.0.0.1:<port> of the listening app. */
  baseUrl: string;
  /** Direct access to this file's database, for assertions and fault injection. */
  db: pg.Pool;
  databaseUrl: string;
  /** Creates a merchant and returns an API client authenticated as it. */
  merchant(name?: string): Promise<ApiClient>;
  close(): Promise<void>;
}

/**
 * What every app under test starts with: quiet, no limit on a merchant's rate
 * (tests drive one merchant far past 100 requests a second; the hostile-client
 * tests set one), and one sealing key for every instance on a database.
 */
export const TEST_SETTINGS = {
  NODE_ENV: 'test',
  LOG_LEVEL: 'fatal',
  RATE_LIMIT_PER_SECOND: '0',
  SECRETS_KEY: 'dGVzdC1vbmx5IHNlYWxpbmcga2V5LCAzMiBieXRlcyE=',
};

export interface TestAppOptions {
  /** Settings; a function when they are known only once beforeAll ran (a processor's URL). */
  env?: Record<string, string> | (() => Record<string, string>);
  /** Connect the app to this URL instead of its own database (e.g. through a proxy). */
  appDatabaseUrl?: (ownUrl: string) => string;
}

/**
 * Starts the real application (same module, same createApp as main.ts) on a
 * fresh database copied from the migrated template, listening on a free port.
 */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = await createTestDatabase();
  const env = typeof options.env === 'function' ? options.env() : options.env;
  const config = loadConfig({ ...TEST_SETTINGS, ...connectionEnv(), ...env });
  const appUrl = options.appDatabaseUrl?.(database.url) ?? database.url;
  let app: INestApplication;
  try {
    app = await createApp(AppModule.forRoot(config, appUrl), { config, logger: false });
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await database.drop(); // leave nothing behind on a shared server
    throw error;
  }
  const baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const db = testPool(database.url);

  return {
    app,
    baseUrl,
    db,
    databaseUrl: database.url,
    async merchant(merchantName = 'Test merchant') {
      const { apiKey, merchant } = await app.get(MerchantsService).create(merchantName);
      return new ApiClient(baseUrl, apiKey, merchant.id);
    },
    async close() {
      await app.close();
      await db.end();
      await database.drop();
    },
  };
}

/**
 * Another instance of the app on an existing database, as a second API behind a
 * load balancer: its own process state (the memory of completed responses, the
 * merchant cache), the same rows. `client` acts as a merchant of the first one.
 */
export async function startInstance(databaseUrl: string, env: Record<string, string> = {}) {
  const config = loadConfig({ ...TEST_SETTINGS, ...connectionEnv(), ...env });
  const app = await createApp(AppModule.forRoot(config, databaseUrl), {
    config,
    logger: false,
  });
  await app.listen(0, '127.0.0.1');
  const baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    app,
    baseUrl,
    client: (of: ApiClient) => new ApiClient(baseUrl, of.apiKey, of.merchantId),
    close: () => app.close(),
  };
}

export interface UsedTestApp extends TestApp {
  /** A merchant of its own, to act as. */
  api: ApiClient;
}

/**
 * The set-up e2e test files share: the app on a fresh database and a merchant to
 * act as (beforeAll), the books audited after every test unless `audit` is false
 * (the same checks as npm run audit), and everything closed (afterAll). The
 * object is filled in beforeAll: use it inside tests and hooks.
 */
export function useTestApp(options: TestAppOptions & { audit?: boolean } = {}): UsedTestApp {
  const used = {} as UsedTestApp;
  beforeAll(async () => {
    const started = await startTestApp(options);
    Object.assign(used, started, { api: await started.merchant() });
  });
  if (options.audit ?? true) {
    afterEach(async () => expect(await ledgerViolations(used.db)).toEqual([]));
  }
  afterAll(() => used.close?.());
  return used;
}

const contract = new ContractChecker();

/** A supertest assertion: the response agrees with openapi.yaml (contract tests on every call). */
function conformsTo(method: string, path: string) {
  return (res: request.Response) =>
    contract.check(method, path, res.status, String(res.headers['content-type'] ?? ''), res.body);
}

/**
 * A tiny client for one merchant: supertest with the API key, plus helpers for
 * common set-ups. Every response it receives is checked against openapi.yaml.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly apiKey: string,
    readonly merchantId: string,
  ) {}

  get(path: string) {
    return request(this.baseUrl)
      .get(path)
      .set('Authorization', `Bearer ${this.apiKey}`)
      .expect(conformsTo('get', path));
  }

  post(path: string, body?: object, idempotencyKey?: string) {
    const req = request(this.baseUrl)
      .post(path)
      .set('Authorization', `Bearer ${this.apiKey}`)
      .expect(conformsTo('post', path));
    if (idempotencyKey !== undefined) req.set('Idempotency-Key', idempotencyKey);
    return body === undefined ? req : req.send(body);
  }

  /** A PUT, with its extra headers (If-Match, ...). */
  put(path: string, body: object, headers: Record<string, string> = {}) {
    return request(this.baseUrl)
      .put(path)
      .set('Authorization', `Bearer ${this.apiKey}`)
      .set(headers)
      .expect(conformsTo('put', path))
      .send(body);
  }

  delete(path: string, headers: Record<string, string> = {}) {
    return request(this.baseUrl)
      .delete(path)
      .set('Authorization', `Bearer ${this.apiKey}`)
      .set(headers)
      .expect(conformsTo('delete', path));
  }

  async createAccount(currency = 'USD', name = 'Test account'): Promise<string> {
    const res = await this.post('/accounts', { name, currency });
    if (res.status !== 201) throw new Error(`account: ${res.status} ${res.text}`);
    return res.body.id as string;
  }

  async deposit(accountId: string, amount: number, currency = 'USD'): Promise<void> {
    const res = await this.post(
      `/accounts/${accountId}/deposits`,
      { amount, currency },
      randomUUID(),
    );
    if (res.status !== 201) throw new Error(`deposit: ${res.status} ${res.text}`);
  }

  /** A funded account, ready to be charged. */
  async fundedAccount(balance: number, currency = 'USD'): Promise<string> {
    const id = await this.createAccount(currency);
    if (balance > 0) await this.deposit(id, balance, currency);
    return id;
  }

  charge(accountId: string, amount: number, key: string | undefined, extra: object = {}) {
    return this.post('/charges', { accountId, amount, currency: 'USD', ...extra }, key);
  }

  async balance(accountId: string): Promise<number> {
    const res = await this.get(`/accounts/${accountId}`);
    return res.body.balance as number;
  }
}
