import { hash } from 'node:crypto';

/**
 * JSON with object keys sorted at every depth and no white space, so that two
 * bodies that mean the same thing serialise to the same string whatever their key
 * order or formatting. Array order is kept: it carries meaning.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/**
 * What a key is bound to (contract §4.4): method, path and canonical body, hashed.
 * A request without a body counts as `{}`. The query string is not part of it: the
 * idempotent routes are POSTs that ignore it.
 */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  const canonical = canonicalJson(body ?? {});
  return hash('sha256', `${method.toUpperCase()} ${path}\n${canonical}`, 'hex');
}
