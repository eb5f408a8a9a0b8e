/** An account as stored in `accounts` (AccountsService owns the table). */
export interface Account {
  merchantId: string;
  id: string;
  name: string;
  currency: string;
  /** Minor units. Changed only by LedgerService.post(), with the ledger entry that explains it. */
  balance: number;
  /** What the merchant keeps about the account: string keys to string values. */
  metadata: Record<string, string>;
  /** +1 on every change of the account (fields, balance, closing): its ETag. */
  version: number;
  /** When the account was closed (DELETE); a closed account holds nothing and never moves. */
  closedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** The columns of an Account, as a SELECT or RETURNING list. */
export const ACCOUNT_COLUMNS = `merchant_id AS "merchantId", id, name, currency, balance, metadata, version,
  closed_at AS "closedAt", created_at AS "createdAt", updated_at AS "updatedAt"`;

/** An account as the API shows it. */
export interface AccountView {
  id: string;
  object: 'account';
  name: string;
  currency: string;
  balance: number;
  metadata: Record<string, string>;
  status: 'open' | 'closed';
  closedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export function toAccountView(account: Account): AccountView {
  return {
    id: account.id,
    object: 'account',
    name: account.name,
    currency: account.currency,
    balance: account.balance,
    metadata: account.metadata,
    status: account.closedAt ? 'closed' : 'open',
    closedAt: account.closedAt?.toISOString() ?? null,
    createdAt: account.createdAt.toISOString(),
    updatedAt: account.updatedAt.toISOString(),
  };
}

/**
 * The account's strong entity tag (RFC 9110 §8.8.3): its version, which changes
 * with every change of the account, balance included. Clients treat it as opaque.
 */
export function etagOf(account: Pick<Account, 'version'>): string {
  return `"${account.version}"`;
}
