import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The client's types are openapi-typescript's reading of openapi.yaml, never
 * written by hand: this fails when the spec changed and `npm run generate` (in
 * client/) was not run, so the types cannot drift from the contract.
 */
describe('client/src/schema.ts', () => {
  it('is what openapi-typescript makes of openapi.yaml today', () => {
    const dir = mkdtempSync(join(tmpdir(), 'schema-'));
    try {
      const fresh = join(dir, 'schema.ts');
      const cli = join('node_modules', 'openapi-typescript', 'bin', 'cli.js');
      execFileSync(process.execPath, [cli, 'openapi.yaml', '--output', fresh], { stdio: 'pipe' });
      expect(readFileSync('client/src/schema.ts', 'utf8')).toBe(readFileSync(fresh, 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('matches the pins: the root installs the versions the client declares', () => {
    const root = JSON.parse(readFileSync('package.json', 'utf8'));
    const client = JSON.parse(readFileSync('client/package.json', 'utf8'));
    expect(root.devDependencies['openapi-fetch']).toBe(
      client.dependencies['openapi-fetch'].replace(/^\^/, ''),
    );
    expect(root.devDependencies['openapi-typescript']).toBe(
      client.devDependencies['openapi-typescript'],
    );
    expect(root.devDependencies.typescript).toBe(client.devDependencies.typescript);
  });
});
