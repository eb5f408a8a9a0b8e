import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { SCHEMA_SQL, schemaSql } from '../tools/schema-sql.js';
import { useTestDatabase } from './support/databases.js';

/**
 * docs/schema.sql is the schema whole, where the migrations give it in ten steps. It
 * is generated (npm run schema), and must say what the migrations make: read back
 * from a freshly migrated database, the catalog gives the same text.
 */
const db = useTestDatabase();

describe('docs/schema.sql', () => {
  it('is what the migrations make (after a migration: npm run schema)', async () => {
    const generated = await schemaSql(db.sql);

    expect(generated).toContain('CREATE TABLE idempotency_keys (');
    expect(generated).toContain('CREATE OR REPLACE FUNCTION public.claim_idempotency_key(');
    expect(readFileSync(SCHEMA_SQL, 'utf8')).toBe(generated);
  });
});
