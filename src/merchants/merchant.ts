/** A merchant as stored in `merchants` (MerchantsService owns the table). */
export interface Merchant {
  id: string;
  name: string;
  /** SHA-256 of the API key, hex. The key itself is never stored. */
  apiKeyHash: string;
  createdAt: Date;
}
