import type { Refund } from './refund.entity.js';

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
