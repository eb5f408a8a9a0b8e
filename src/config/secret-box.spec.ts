import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from './config.js';
import { SecretBox } from './secret-box.js';
import { secretsKey } from './secrets-key.js';

const key = (byte: number) => Buffer.alloc(32, byte);

describe('SecretBox', () => {
  const box = new SecretBox(key(1));

  it('seals a secret so that the text holds nothing of it, and opens it again', () => {
    const secret = 'whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLXRlc3Q=';
    const sealed = box.seal(secret);
    expect(sealed).toMatch(/^sealed:v1:[0-9a-f]{8}:[\w-]+$/);
    expect(sealed).not.toContain('whsec_');
    expect(box.seal(secret)).not.toBe(sealed); // a fresh IV each time
    expect(box.open(sealed)).toBe(secret);
  });

  it('passes through a text sealed before there was sealing', () => {
    expect(box.open('whsec_kept_in_the_clear')).toBe('whsec_kept_in_the_clear');
  });

  it('refuses, by name, a text sealed under another key, and a text altered at rest', () => {
    const other = new SecretBox(key(2)).seal('x');
    expect(() => box.open(other)).toThrow(/sealed under another key/);
    const sealed = box.seal('a secret');
    const altered = sealed.slice(0, -3) + (sealed.endsWith('A') ? 'BBB' : 'AAA');
    expect(() => box.open(altered)).toThrow();
  });
});

describe('secretsKey', () => {
  it('outside production without SECRETS_KEY: makes one in DATA_DIR, for its owner only, and keeps it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'secrets-key-'));
    try {
      const config = loadConfig({ DATA_DIR: dir });
      const first = secretsKey(config);
      expect(first).toHaveLength(32);
      expect(secretsKey(config)).toEqual(first);
      const file = path.join(dir, 'secrets.key');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')).toEqual(first);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('uses SECRETS_KEY when set', () => {
    const given = key(7).toString('base64');
    expect(secretsKey(loadConfig({ SECRETS_KEY: given }))).toEqual(key(7));
  });
});
