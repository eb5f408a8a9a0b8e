import type { Charge, ChargeStatus } from './charge.entity.js';

export interface ChargeView {
  id: string;
  object: 'charge';
  accountId: string;
  amount: number;
  currency: string;
  description: string | null;
  metadata: Record<string, string>;
  status: ChargeStatus;
  failureCode?: string;
  amountRefunded: number;
  createdAt: string;
}

export function toChargeView(charge: Charge): ChargeView {
  return {
    id: charge.id,
    object: 'charge',
    accountId: charge.accountId,
    amount: charge.amount,
    currency: charge.currency,
    description: charge.description,
    metadata: charge.metadata,
    status: charge.status,
    ...(charge.failureCode ? { failureCode: charge.failureCode } : {}),
    amountRefunded: charge.amountRefunded,
    createdAt: charge.createdAt.toISOString(),
  };
}
