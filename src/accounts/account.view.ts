import type { Account } from './account.entity.js';

export interface AccountView {
  id: string;
  object: 'account';
  name: string;
  currency: string;
  balance: number;
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
    createdAt: account.createdAt.toISOString(),
    updatedAt: account.updatedAt.toISOString(),
  };
}
