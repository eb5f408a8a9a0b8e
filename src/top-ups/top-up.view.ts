/** A top-up's row, as the service reads it. */
export interface TopUp {
  merchantId: string;
  id: string;
  accountId: string;
  amount: number;
  currency: string;
  card: string;
  idempotencyKey: string;
  fingerprint: string;
  requestPath: string;
  status: 'pending' | 'succeeded' | 'declined' | 'failed';
  /** Where the request is: started, refunding (compensating) or finished. */
  recoveryPoint: 'started' | 'refunding' | 'finished';
  processorPaymentId: string | null;
  declineCode: string | null;
  failureCode: string | null;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: Date;
  createdAt: Date;
}

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
