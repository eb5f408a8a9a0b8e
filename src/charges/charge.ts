export type ChargeStatus = 'succeeded' | 'failed';

/** A charge as stored in `charges` (ChargesService owns the table). */
export interface Charge {
  merchantId: string;
  id: string;
  accountId: string;
  amount: number;
  currency: string;
  description: string | null;
  metadata: Record<string, string>;
  status: ChargeStatus;
  /** Why a failed charge failed (`insufficient_funds`); null when it succeeded. */
  failureCode: string | null;
  /** What its refunds add up to; never above `amount`. */
  amountRefunded: number;
  createdAt: Date;
}

/** The columns of a Charge, as a SELECT list. */
export const CHARGE_COLUMNS = `merchant_id AS "merchantId", id, account_id AS "accountId", amount, currency,
  description, metadata, status, failure_code AS "failureCode",
  amount_refunded AS "amountRefunded", created_at AS "createdAt"`;

/** A charge as the API shows it. */
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
