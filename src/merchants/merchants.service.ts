import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { TransactionHost } from '../database/transaction-host.js';
import { generateApiKey, hashApiKey } from './api-key.js';
import type { Merchant } from './merchant.js';

type MerchantIdentity = Pick<Merchant, 'id' | 'name'>;

const KEY_CACHE_MS = 60_000;
const KEY_CACHE_SIZE = 10_000;

@Injectable()
export class MerchantsService {
  private readonly keyCache = new Map<string, { merchant: MerchantIdentity; until: number }>();

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
   * The merchant owning this API key, or null. Found keys are remembered for
   * KEY_CACHE_MS: authentication then costs no query on most requests. (Keys
   * cannot be revoked through the API; a revocation feature would clear this.)
   */
  async findByApiKey(apiKey: string): Promise<MerchantIdentity | null> {
    const hash = hashApiKey(apiKey);
    const cached = this.keyCache.get(hash);
    if (cached && cached.until > Date.now()) return cached.merchant;
    const [row] = await this.tx.query<MerchantIdentity>(
      'SELECT id, name FROM merchants WHERE api_key_hash = $1',
      [hash],
    );
    if (!row) return null;
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
