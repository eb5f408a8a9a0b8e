import type { Account } from './account.entity.js';

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
