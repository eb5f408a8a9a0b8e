/** A refund as stored in `refunds` (RefundsService owns the table). */
export interface Refund {
  merchantId: string;
  id: string;
  chargeId: string;
  accountId: string;
  amount: number;
  createdAt: Date;
}

/** A refund as the API shows it. */
export interface RefundView {
  id: string;
  object: 'refund';
  chargeId: string;
  amount: number;
  createdAt: string;
}

export function toRefundView(refund: Refund): RefundView {
  return {
    id: refund.id,
    object: 'refund',
    chargeId: refund.chargeId,
    amount: refund.amount,
    createdAt: refund.createdAt.toISOString(),
  };
}
