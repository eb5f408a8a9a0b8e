import { hash, randomBytes } from 'node:crypto';

/** Keys are stored only as this hash; a leaked table does not leak keys. */
export function hashApiKey(apiKey: string): string {
  return hash('sha256', apiKey, 'hex');
}

/** A new secret key: 32 random bytes, base64url, behind a recognisable prefix. */
export function generateApiKey(): string {
  return `sk_${randomBytes(32).toString('base64url')}`;
}
