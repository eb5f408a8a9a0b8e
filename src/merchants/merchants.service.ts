import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { TransactionHost } from '../database/transaction-host.js';
import { generateApiKey, hashApiKey } from './api-key.js';
import type { Merchant } from './merchant.js';

type MerchantIdentity = Pick<Merchant, 'id' | 'name'>;

/** How long a key found is remembered, and one not found (a new key works within this). */
const KEY_CACHE_MS = 60_000;
const UNKNOWN_KEY_CACHE_MS = 10_000;
/** Keys remembered at most, of each kind: the memory a flood of made-up keys can take. */
const KEY_CACHE_SIZE = 10_000;

@Injectable()
export class MerchantsService {
  private readonly keyCache = new Map<string, { merchant: MerchantIdentity; until: number }>();
  private readonly unknownKeys = new Map<string, number>();

  constructor(private readonly tx: TransactionHost) {}

  /** Creates a merchant; returns its API key, which is not stored and cannot be shown again. */
  async create(
    name: string,
    apiKey = generateApiKey(),
  ): Promise<{ merchant: Merchant; apiKey: string }> {
    const merchant = { id: newId('merchant'), name, apiKeyHash: hashApiKey(apiKey) };
    const [row] = await this.tx.query<Pick<Merchant, 'createdAt'>>(
      `INSERT INTO merchants (id, name, api_key_hash) VALUES ($1, $2, $3)
       RETURNING created_at AS "createdAt"`,
      [merchant.id, merchant.name, merchant.apiKeyHash],
    );
    return { merchant: { ...merchant, ...row }, apiKey };
  }

  /**
   * What this instance remembers of an API key: its merchant (a key found in the
   * last KEY_CACHE_MS), null (one not found in the last UNKNOWN_KEY_CACHE_MS), or
   * undefined (it does not know: findByApiKey asks the database).
   */
  recall(apiKey: string): MerchantIdentity | null | undefined {
    const hash = hashApiKey(apiKey);
    const cached = this.keyCache.get(hash);
    if (cached && cached.until > Date.now()) return cached.merchant;
    const unknownUntil = this.unknownKeys.get(hash);
    if (unknownUntil !== undefined && unknownUntil > Date.now()) return null;
    return undefined;
  }

  /**
   * The merchant owning this API key, or null, from the database, for a key that
   * recall() does not know; remembered either way: authentication costs no query
   * on most requests, nor does a wrong key sent again and again. (Keys cannot be
   * revoked through the API; a revocation feature would clear this.)
   */
  async findByApiKey(apiKey: string): Promise<MerchantIdentity | null> {
    const hash = hashApiKey(apiKey);
    const [row] = await this.tx.query<MerchantIdentity>(
      'SELECT id, name FROM merchants WHERE api_key_hash = $1',
      [hash],
    );
    if (!row) {
      if (this.unknownKeys.size >= KEY_CACHE_SIZE) this.unknownKeys.clear();
      this.unknownKeys.set(hash, Date.now() + UNKNOWN_KEY_CACHE_MS);
      return null;
    }
    if (this.keyCache.size >= KEY_CACHE_SIZE) this.keyCache.clear();
    this.keyCache.set(hash, { merchant: row, until: Date.now() + KEY_CACHE_MS });
    return row;
  }

  /** Makes sure a merchant with this key exists (the demo merchant outside production). */
  async ensureWithApiKey(name: string, apiKey: string): Promise<void> {
    await this.tx.query(
      `INSERT INTO merchants (id, name, api_key_hash) VALUES ($1, $2, $3)
       ON CONFLICT (api_key_hash) DO NOTHING`,
      [newId('merchant'), name, hashApiKey(apiKey)],
    );
  }
}
