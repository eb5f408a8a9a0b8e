import type { Deposit } from './deposit.entity.js';

export interface DepositView {
  id: string;
  object: 'deposit';
  accountId: string;
  amount: number;
  currency: string;
  description: string | null;
  createdAt: string;
}

export function toDepositView(deposit: Deposit): DepositView {
  return {
    id: deposit.id,
    object: 'deposit',
    accountId: deposit.accountId,
    amount: deposit.amount,
    currency: deposit.currency,
    description: deposit.description,
    createdAt: deposit.createdAt.toISOString(),
  };
}
