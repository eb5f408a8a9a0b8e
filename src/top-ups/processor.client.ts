import { Inject, Injectable, Optional } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';

/** A payment as the processor reports it. */
export interface ProcessorPayment {
  id: string;
  amount: number;
  currency: string;
  status: 'succeeded' | 'declined';
  declineCode: string | null;
}

/**
 * What a call to the processor taught us. `unknown` is the case this design exists
 * for: a timeout, a cut connection, a 5xx. The card may or may not have been
 * charged, and nothing is guessed: the same call, with the same key, is made again.
 */
export type ProcessorAnswer<T> =
  { outcome: 'known'; payment: T } | { outcome: 'unknown'; reason: string };

/** The injection token of the processor's base URL (TopUpsModule.forRoot). */
export const PROCESSOR_URL = Symbol('ProcessorUrl');

/** The card processor's HTTP API, called with our secret and a key of ours per payment. */
@Injectable()
export class ProcessorClient {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Optional() @Inject(PROCESSOR_URL) private readonly base?: string,
  ) {}

  /**
   * Charges `card`, or, when a call with `key` was made before, learns what became
   * of it: the processor answers every call with the same key with the same
   * payment, and charges at most once.
   */
  charge(
    key: string,
    payment: { amount: number; currency: string; card: string },
  ): Promise<ProcessorAnswer<ProcessorPayment>> {
    return this.call<ProcessorPayment>('/payments', key, payment);
  }

  /** Refunds a payment (all of `amount`), once per `key`. */
  refund(key: string, paymentId: string, amount: number): Promise<ProcessorAnswer<{ id: string }>> {
    return this.call<{ id: string }>(`/payments/${paymentId}/refunds`, key, { amount });
  }

  private async call<T>(path: string, key: string, body: object): Promise<ProcessorAnswer<T>> {
    const base = this.base;
    if (!base) return { outcome: 'unknown', reason: 'no processor is configured (PROCESSOR_URL)' };
    try {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${this.config.PROCESSOR_API_KEY}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': key,
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.config.PROCESSOR_TIMEOUT_MS),
      });
      const text = await res.text();
      if (res.status === 201) return { outcome: 'known', payment: JSON.parse(text) as T };
      return {
        outcome: 'unknown',
        reason: `processor answered ${res.status}: ${text.slice(0, 200)}`,
      };
    } catch (error) {
      const name = (error as Error).name;
      return {
        outcome: 'unknown',
        reason: name === 'TimeoutError' ? 'no answer in time' : `no answer: ${String(error)}`,
      };
    }
  }
}
