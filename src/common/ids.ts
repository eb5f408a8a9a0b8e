import { randomFillSync } from 'node:crypto';

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
    random = randomBytes10();
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

/** 80 bits as 16 characters: two 40-bit halves, each exact in a double. */
function encodeRandom(bytes: Buffer): string {
  return encode40(bytes.readUIntBE(0, 5)) + encode40(bytes.readUIntBE(5, 5));
}

function encode40(n: number): string {
  let out = '';
  for (let i = 0; i < 8; i++) {
    out = ALPHABET[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

/** Random bytes drawn from a pool filled 400 ids at a time: one call to the CSPRNG, not one per id. */
const pool = Buffer.alloc(4_000);
let poolUsed = pool.length;
function randomBytes10(): Buffer {
  if (poolUsed === pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  poolUsed += 10;
  return Buffer.from(pool.subarray(poolUsed - 10, poolUsed));
}

/** True when `id` has the shape newId(kind) produces. */
export function isId(kind: IdKind, id: string): boolean {
  return new RegExp(`^${ID_PREFIXES[kind]}_[0-9A-HJKMNP-TV-Z]{26}$`).test(id);
}
