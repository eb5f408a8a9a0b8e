import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  validateSync,
} from 'class-validator';
import { networkInterfaces } from 'node:os';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'verbose'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const toInt = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
const toBoolean = ({ value }: { value: unknown }) =>
  value === 'false' ? false : value === 'true' ? true : value;

/**
 * Every setting the service reads, validated once at start-up. Nothing else in
 * the code reads process.env: a bad value stops the process before it serves.
 */
export class AppConfig {
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 3000;

  /**
   * The address to listen on. Unset: `localhost` (the loopback addresses) outside
   * production, so that a development instance, its demo key and its lab are not
   * offered to the network; every address in production (see everyAddress).
   */
  @IsString()
  @Matches(/^\S+$/, { message: 'must be an IP address or a host name' })
  HOST = 'localhost';

  /** How long a client may take to send a request's headers (then 408, connection closed). */
  @Transform(toInt)
  @IsInt()
  @Min(1_000)
  HEADERS_TIMEOUT_MS = 10_000;

  /**
   * How long a client may take to send a whole request, body included (then 408,
   * connection closed). Not the handler's time: a request waiting with `Prefer:
   * wait` has been received.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1_000)
  REQUEST_TIMEOUT_MS = 20_000;

  /**
   * Requests one merchant may make per second, on each instance (then 429 with
   * Retry-After, before anything runs); 0: no limit. 100, as Stripe allows in live
   * mode. With several instances behind a balancer, a merchant gets up to this
   * many on each (docs/hostile-clients.md).
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  RATE_LIMIT_PER_SECOND = 100;

  /**
   * Look-ups of unknown API keys one client address may cause per minute, on each
   * instance (then 429 until the minute ends); 0: no limit. A key found once is
   * remembered for a minute, one not found for ten seconds, so a client with a
   * good key never comes near it.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  AUTH_FAILURES_PER_MINUTE = 20;

  /**
   * Whether, and which, proxies in front of the API to believe about the client's
   * address (X-Forwarded-For), for the limit above: `true`, a number of hops, or
   * addresses and CIDR ranges, comma-separated. Unset: none (the socket's address).
   */
  @IsOptional()
  @Matches(/^(true|\d{1,2}|[\w.:/]+(,[\w.:/]+)*)$/, {
    message: 'must be true, a number of hops, or comma-separated addresses',
  })
  TRUST_PROXY?: string;

  /** Unset: an embedded PostgreSQL is started with its data in DATA_DIR. */
  @IsOptional()
  @Matches(/^postgres(ql)?:\/\/\S+$/, { message: 'must be a postgres:// URL' })
  DATABASE_URL?: string;

  @IsString()
  DATA_DIR = '.data';

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(200)
  DB_POOL_SIZE = 10;

  /**
   * `transaction`: DATABASE_URL is a pooler in transaction mode (PgBouncer): no
   * startup parameters, timeouts set per transaction (docs/scaling-out.md).
   */
  @IsIn(['none', 'transaction'])
  DB_POOLER: 'none' | 'transaction' = 'none';

  /** `unnamed` for a pooler that does not track prepared statements (PgBouncer < 1.21). */
  @IsIn(['named', 'unnamed'])
  DB_PREPARED_STATEMENTS: 'named' | 'unnamed' = 'named';

  /** How long a completed key is remembered (contract §4.9). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  IDEMPOTENCY_TTL_SECONDS = 86_400;

  /** How often expired keys are purged; 0 turns the background purge off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  IDEMPOTENCY_PURGE_INTERVAL_SECONDS = 60;

  /**
   * Completed responses each instance keeps in memory, so that a retry it has seen
   * complete is replayed without a database round trip; 0 keeps none.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  IDEMPOTENCY_CACHE_SIZE = 10_000;

  /** false: no /metrics route and no collection. */
  @Transform(toBoolean)
  @IsBoolean()
  METRICS_ENABLED = true;

  /**
   * Set: /metrics answers only `Authorization: Bearer <this>`. In production,
   * /metrics is served only with one (it tells traffic per route and versions).
   */
  @IsOptional()
  @Matches(/^[\x21-\x7e]{16,200}$/, { message: 'must be 16..200 visible ASCII characters' })
  METRICS_TOKEN?: string;

  /**
   * The key that seals secrets at rest (webhook signing secrets, and the stored
   * answers that show one): 32 random bytes, base64 (`openssl rand -base64 32`).
   * Required in production; outside it, unset, one is generated and kept in
   * DATA_DIR/secrets.key.
   */
  @IsOptional()
  @Matches(/^[A-Za-z0-9+/]{43}=$/, {
    message: 'must be 32 bytes in base64 (openssl rand -base64 32)',
  })
  SECRETS_KEY?: string;

  /** The card processor. Unset: npm start runs the one in processor/, beside the API. */
  @IsOptional()
  @Matches(/^https?:\/\/\S+$/, { message: 'must be an http:// or https:// URL' })
  PROCESSOR_URL?: string;

  /**
   * The API's own secret key at the processor (its payments are scoped to it). The
   * stand-in processor's test key, the default, is refused in production.
   */
  @Matches(/^[\x21-\x7e]{8,200}$/, { message: 'must be 8..200 visible ASCII characters' })
  PROCESSOR_API_KEY = 'sk_processor_test_payments_api';

  /** How long a processor call may take before its outcome counts as unknown. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  PROCESSOR_TIMEOUT_MS = 3_000;

  /** How long a request or the completer holds a top-up it is working on. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  TOP_UP_LEASE_SECONDS = 30;

  /** How often the completer looks for top-ups left halfway; 0 turns it off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  COMPLETER_INTERVAL_SECONDS = 5;

  /** Processor calls per top-up before it is given up as failed. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  TOP_UP_MAX_ATTEMPTS = 10;

  /** The first wait before a top-up is tried again; it doubles, up to five minutes. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  TOP_UP_RETRY_SECONDS = 2;

  /** How often the webhook dispatcher looks for deliveries due, in ms; 0 turns it off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WEBHOOK_DISPATCH_INTERVAL_MS = 1_000;

  /**
   * How long an endpoint may take to answer before the try counts as failed. Short:
   * a slow endpoint holds a sending slot that long (its merchant has eight).
   */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  WEBHOOK_TIMEOUT_MS = 5_000;

  /**
   * Whether webhooks may go to loopback addresses (localhost): for development and
   * the reference receiver. Unset: allowed outside production, refused in it. Every
   * other address inside a network (private, link-local, ...) is always refused.
   */
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  WEBHOOK_ALLOW_LOOPBACK?: boolean;

  /** Whether endpoints must be https://. Unset: required in production, not outside it. */
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  WEBHOOK_REQUIRE_HTTPS?: boolean;

  /** Endpoints a merchant may have at once (Stripe allows 16). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  WEBHOOK_MAX_ENDPOINTS = 16;

  /**
   * An endpoint that has answered no try with a 2xx for this long is disabled, and a
   * webhook_endpoint.disabled event says so (5 days, as Svix does); 0: never.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WEBHOOK_DISABLE_AFTER_SECONDS = 5 * 86_400;

  /** Tries per delivery before it is given up as failed. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  WEBHOOK_MAX_ATTEMPTS = 16;

  /** The first wait before a delivery is tried again; it doubles (with jitter), up to 6 hours. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WEBHOOK_RETRY_SECONDS = 30;

  /** How long a rotated-out signing secret keeps signing beside the new one. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WEBHOOK_SECRET_OVERLAP_SECONDS = 86_400;

  /** How long events (and their deliveries and attempts) are kept once delivered or given up. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  EVENTS_TTL_SECONDS = 30 * 86_400;

  /** How often old events are purged; 0 turns the purge off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  EVENTS_PURGE_INTERVAL_SECONDS = 3_600;

  @IsIn(LOG_LEVELS)
  LOG_LEVEL: LogLevel = 'info';

  @IsIn(['development', 'production', 'test'])
  NODE_ENV: 'development' | 'production' | 'test' = 'development';

  @Matches(/^[\x21-\x7e]{8,200}$/, { message: 'must be 8..200 visible ASCII characters' })
  DEMO_API_KEY = 'sk_test_demo';
}

export class ConfigError extends Error {}

/**
 * How the service's connections reach PostgreSQL (settings DB_POOLER and
 * DB_PREPARED_STATEMENTS; docs/scaling-out.md#connection-poolers).
 */
export interface ConnectionSettings {
  /**
   * `transaction`: through a pooler that lends a server connection for one
   * transaction at a time (PgBouncer's transaction mode). Such a pooler refuses
   * or cannot keep per-connection settings, so the timeouts travel with each
   * transaction instead (TransactionHost's BEGIN).
   */
  pooler: 'none' | 'transaction';
  /**
   * `unnamed`: statements with parameters go as the protocol's unnamed statement,
   * which a pooler that does not track prepared statements (PgBouncer before
   * 1.21, or without max_prepared_statements) passes through safely.
   */
  preparedStatements: 'named' | 'unnamed';
}

/** Where webhooks may go, from the settings that say it and NODE_ENV (their defaults). */
export function webhookTargets(config: AppConfig): {
  allowLoopback: boolean;
  requireHttps: boolean;
} {
  const production = config.NODE_ENV === 'production';
  return {
    allowLoopback: config.WEBHOOK_ALLOW_LOOPBACK ?? !production,
    requireHttps: config.WEBHOOK_REQUIRE_HTTPS ?? production,
  };
}

/** How the pool's connections reach PostgreSQL, from the two settings that say it. */
export function connectionSettings(config: AppConfig): ConnectionSettings {
  return { pooler: config.DB_POOLER, preparedStatements: config.DB_PREPARED_STATEMENTS };
}

/**
 * Every address of the machine, as Node's own listen() picks it when given no host:
 * `::` (IPv6 and IPv4) where the machine has IPv6, `0.0.0.0` where it has not.
 * Fastify, given no host, would listen on localhost only.
 */
export function everyAddress(interfaces = networkInterfaces()): string {
  const hasIpv6 = Object.values(interfaces).some((addresses) =>
    addresses?.some((address) => address.family === 'IPv6'),
  );
  return hasIpv6 ? '::' : '0.0.0.0';
}

/** The names of the settings, for tests that compare other files with the app's config. */
export const CONFIG_KEYS = [...new Set([...Object.keys(new AppConfig()), 'DATABASE_URL'])];

/** Reads and validates the environment; throws a ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const defaults = new AppConfig();
  const raw: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const config = plainToInstance(AppConfig, { ...defaults, ...raw });
  const errors = validateSync(config, { forbidUnknownValues: true });
  const lines = errors.map(
    (e) =>
      `${e.property}=${JSON.stringify(e.value)}: ${Object.values(e.constraints ?? {}).join(', ')}`,
  );
  if (config.NODE_ENV === 'production') {
    if (raw.HOST === undefined) config.HOST = everyAddress();
    if (config.SECRETS_KEY === undefined) {
      lines.push('SECRETS_KEY is required in production (openssl rand -base64 32)');
    }
    if (config.PROCESSOR_URL && config.PROCESSOR_API_KEY === defaults.PROCESSOR_API_KEY) {
      lines.push("PROCESSOR_API_KEY: the stand-in processor's test key is refused in production");
    }
  }
  if (config.REQUEST_TIMEOUT_MS < config.HEADERS_TIMEOUT_MS) {
    lines.push('REQUEST_TIMEOUT_MS must be at least HEADERS_TIMEOUT_MS');
  }
  if (lines.length > 0) throw new ConfigError(`Invalid configuration:\n  ${lines.join('\n  ')}`);
  return config;
}

/** TRUST_PROXY as Fastify's trustProxy option takes it (a number of hops: the nearest n). */
export function trustProxy(
  config: AppConfig,
): boolean | string[] | ((address: string, hop: number) => boolean) {
  const value = config.TRUST_PROXY;
  if (value === undefined) return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return (_address, hop) => hop < Number(value);
  return value.split(',');
}
