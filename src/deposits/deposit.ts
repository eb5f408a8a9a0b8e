/** A deposit as stored in `deposits` (DepositsService owns the table). */
export interface Deposit {
  merchantId: string;
  id: string;
  accountId: string;
  amount: number;
  currency: string;
  description: string | null;
  createdAt: Date;
}

/** A deposit as the API shows it. */
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
