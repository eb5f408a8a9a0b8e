import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { TransactionHost } from '../database/transaction-host.js';
import { generateApiKey, hashApiKey } from './api-key.js';
import { Merchant } from './merchant.entity.js';

@Injectable()
export class MerchantsService {
  constructor(private readonly tx: TransactionHost) {}

  /** Creates a merchant; returns its API key, which is not stored and cannot be shown again. */
  async create(
    name: string,
    apiKey = generateApiKey(),
  ): Promise<{ merchant: Merchant; apiKey: string }> {
    const merchant = this.tx.repository(Merchant).create({
      id: newId('merchant'),
      name,
      apiKeyHash: hashApiKey(apiKey),
    });
    await this.tx.repository(Merchant).insert(merchant);
    return { merchant, apiKey };
  }

  /** The merchant owning this API key, or null. */
  async findByApiKey(apiKey: string): Promise<Pick<Merchant, 'id' | 'name'> | null> {
    const [row] = await this.tx.query<Pick<Merchant, 'id' | 'name'>>(
      'SELECT id, name FROM merchants WHERE api_key_hash = $1',
      [hashApiKey(apiKey)],
    );
    return row ?? null;
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
