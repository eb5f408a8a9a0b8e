import { randomUUID } from 'node:crypto';

/**
 * Requests as the demo merchant (sk_test_demo), which every API started in
 * development mode creates: for the tests whose API is a child process.
 */
export const DEMO_API_KEY = 'sk_test_demo';

export interface DemoResponse {
  status: number;
  replayed: boolean;
  body: Record<string, unknown>;
}

/** A POST with fetch, which keeps its connection alive (a graceful shutdown must not wait for it). */
export async function demoPost(
  base: string,
  path: string,
  body: object,
  key?: string,
  signal?: AbortSignal,
): Promise<DemoResponse> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${DEMO_API_KEY}`,
      'Content-Type': 'application/json',
      ...(key ? { 'Idempotency-Key': key } : {}),
    },
    body: JSON.stringify(body),
    signal,
  });
  return {
    status: res.status,
    replayed: res.headers.get('idempotent-replayed') === 'true',
    body: (await res.json()) as Record<string, unknown>,
  };
}

/** A new USD account of the demo merchant, holding `balance` from one deposit. */
export async function demoFundedAccount(base: string, balance: number): Promise<string> {
  const account = await demoPost(base, '/accounts', { name: 'Demo test', currency: 'USD' });
  if (account.status !== 201) throw new Error(`account: ${account.status}`);
  const id = account.body.id as string;
  const deposit = await demoPost(
    base,
    `/accounts/${id}/deposits`,
    { amount: balance, currency: 'USD' },
    randomUUID(),
  );
  if (deposit.status !== 201) throw new Error(`deposit: ${deposit.status}`);
  return id;
}
