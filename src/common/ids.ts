import { randomBytes } from 'node:crypto';

/** Crockford's base32: no I, L, O or U, so ids survive being read aloud or retyped. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export const ID_PREFIXES = {
  merchant: 'mch',
  account: 'acct',
  charge: 'ch',
  deposit: 'dep',
  refund: 're',
  ledgerEntry: 'le',
  topUp: 'tu',
  event: 'evt',
  webhookEndpoint: 'we',
} as const;
export type IdKind = keyof typeof ID_PREFIXES;

let lastTime = -1;
let lastRandom: Buffer = Buffer.alloc(10);

/**
 * `<prefix>_<ULID>`: 48 bits of milliseconds then 80 random bits, so ids sort by
 * creation time and lists can page by id alone ("newest first" = id descending).
 * Within one millisecond the random part is incremented, keeping ids made by one
 * process strictly increasing.
 */
export function newId(kind: IdKind, now = Date.now()): string {
  let random: Buffer;
  if (now === lastTime) {
    random = Buffer.from(lastRandom);
    for (let i = random.length - 1; i >= 0; i--) {
      random[i] = (random[i] + 1) & 0xff;
      if (random[i] !== 0) break;
    }
  } else {
    random = randomBytes(10);
    lastTime = now;
  }
  lastRandom = random;
  return `${ID_PREFIXES[kind]}_${encodeTime(now)}${encodeRandom(random)}`;
}

function encodeTime(ms: number): string {
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

function encodeRandom(bytes: Buffer): string {
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < 16; i++) {
    out = ALPHABET[Number(bits & 31n)] + out;
    bits >>= 5n;
  }
  return out;
}

/** True when `id` has the shape newId(kind) produces. */
export function isId(kind: IdKind, id: string): boolean {
  return new RegExp(`^${ID_PREFIXES[kind]}_[0-9A-HJKMNP-TV-Z]{26}$`).test(id);
}
