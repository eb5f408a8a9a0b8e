/** A top-up as stored in `top_ups` (TopUpsService owns the table). */
export interface TopUp {
  merchantId: string;
  id: string;
  accountId: string;
  amount: number;
  currency: string;
  card: string;
  /** The key of the request that made it: its phases find it by this. */
  idempotencyKey: string;
  /** pending until its request is answered; then succeeded, declined or failed. */
  status: 'pending' | 'succeeded' | 'declined' | 'failed';
  processorPaymentId: string | null;
  declineCode: string | null;
  failureCode: string | null;
  createdAt: Date;
}

/** The columns of a TopUp, as a SELECT or RETURNING list. */
export const TOP_UP_COLUMNS = `merchant_id AS "merchantId", id, account_id AS "accountId", amount,
  currency, card, idempotency_key AS "idempotencyKey", status,
  processor_payment_id AS "processorPaymentId", decline_code AS "declineCode",
  failure_code AS "failureCode", created_at AS "createdAt"`;

/** A top-up as the API shows it. */
export interface TopUpView {
  id: string;
  object: 'top_up';
  accountId: string;
  amount: number;
  currency: string;
  card: string;
  status: TopUp['status'];
  /** The processor's payment, once it has answered. */
  processorPaymentId: string | null;
  declineCode?: string;
  failureCode?: string;
  createdAt: string;
}

export function toTopUpView(topUp: TopUp): TopUpView {
  return {
    id: topUp.id,
    object: 'top_up',
    accountId: topUp.accountId,
    amount: topUp.amount,
    currency: topUp.currency,
    card: topUp.card,
    status: topUp.status,
    processorPaymentId: topUp.processorPaymentId,
    ...(topUp.declineCode ? { declineCode: topUp.declineCode } : {}),
    ...(topUp.failureCode ? { failureCode: topUp.failureCode } : {}),
    createdAt: topUp.createdAt.toISOString(),
  };
}
