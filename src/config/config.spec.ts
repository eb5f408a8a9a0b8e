import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toMatchObject({
      PORT: 3000,
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
    });
    expect(config).toMatchObject({
      PORT: 8080,
      DB_POOL_SIZE: 4,
      DATABASE_URL: 'postgres://u@h/db',
      NODE_ENV: 'production',
    });
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
  ])('stops on a bad %s (%s) with a message naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}=`));
  });
});
