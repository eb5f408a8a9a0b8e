import { describe, expect, it } from '@jest/globals';
import type { NetworkInterfaceInfo } from 'node:os';
import { ConfigError, everyAddress, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toMatchObject({
      PORT: 3000,
      HOST: 'localhost',
      DATABASE_URL: undefined,
      DATA_DIR: '.data',
      DB_POOL_SIZE: 10,
      IDEMPOTENCY_TTL_SECONDS: 86_400,
      LOG_LEVEL: 'info',
      NODE_ENV: 'development',
      DEMO_API_KEY: 'sk_test_demo',
      METRICS_ENABLED: true,
      IDEMPOTENCY_PURGE_INTERVAL_SECONDS: 60,
    });
  });

  it('reads and converts the environment', () => {
    const config = loadConfig({
      PORT: '8080',
      DB_POOL_SIZE: '4',
      DATABASE_URL: 'postgres://u@h/db',
      NODE_ENV: 'production',
      SECRETS_KEY: Buffer.alloc(32).toString('base64'),
    });
    expect(config).toMatchObject({
      PORT: 8080,
      DB_POOL_SIZE: 4,
      DATABASE_URL: 'postgres://u@h/db',
      NODE_ENV: 'production',
    });
  });

  it('in production: listens on every address, and refuses to start without SECRETS_KEY or with the test processor key', () => {
    const key = Buffer.alloc(32, 1).toString('base64');
    expect(loadConfig({ NODE_ENV: 'production', SECRETS_KEY: key }).HOST).toBe(everyAddress());
    expect(loadConfig({ NODE_ENV: 'production', SECRETS_KEY: key, HOST: '10.0.0.1' }).HOST).toBe(
      '10.0.0.1',
    );
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/SECRETS_KEY is required/);
    expect(() =>
      loadConfig({ NODE_ENV: 'production', SECRETS_KEY: key, PROCESSOR_URL: 'https://psp.test' }),
    ).toThrow(/PROCESSOR_API_KEY: the stand-in processor's test key is refused/);
    expect(() =>
      loadConfig({
        NODE_ENV: 'production',
        SECRETS_KEY: key,
        PROCESSOR_URL: 'https://psp.test',
        PROCESSOR_API_KEY: 'sk_live_0123456789',
      }),
    ).not.toThrow();
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DB_POOL_SIZE', '0'],
    ['IDEMPOTENCY_TTL_SECONDS', '1.5'],
    ['LOG_LEVEL', 'loud'],
    ['NODE_ENV', 'staging'],
    ['DATABASE_URL', 'mysql://x'],
    ['DEMO_API_KEY', 'short'],
    ['METRICS_ENABLED', 'yes'],
    ['SECRETS_KEY', 'too-short'],
    ['METRICS_TOKEN', 'short'],
    ['TRUST_PROXY', 'maybe so'],
    ['REQUEST_TIMEOUT_MS', '10'],
  ])('stops on a bad %s (%s) with a message naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}=`));
  });
});

describe('everyAddress', () => {
  const address = (family: 'IPv4' | 'IPv6', ip: string) =>
    ({ family, address: ip }) as NetworkInterfaceInfo;

  it('is :: (IPv6 and IPv4) where the machine has IPv6', () => {
    expect(everyAddress({ lo: [address('IPv4', '127.0.0.1'), address('IPv6', '::1')] })).toBe('::');
  });

  it('is 0.0.0.0 where it has not (IPv6 disabled)', () => {
    expect(everyAddress({ lo: [address('IPv4', '127.0.0.1')], eth0: undefined })).toBe('0.0.0.0');
  });
});
