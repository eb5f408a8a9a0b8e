import { afterAll, expect } from '@jest/globals';
import { RECEIVER_SERVER } from '../../examples/webhook-receiver/receiver.js';
import { PROCESSOR_SERVER } from '../../processor/app.js';
import { ContractChecker } from './openapi.js';

/**
 * Runs in every e2e test file (setupFilesAfterEnv): responses that tests get with
 * plain fetch (concurrency, chaos, Prefer: wait ...) are checked against
 * openapi.yaml too, like those of ApiClient. A response the network cut short is
 * not checked (the test sees the error). Violations are collected and fail the
 * file at its end, so that a retrying client cannot mistake one for a network error.
 */
const contract = new ContractChecker();
const violations: string[] = [];
const realFetch = globalThis.fetch;

globalThis.fetch = async (input, init) => {
  const res = await realFetch(input, init);
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toLowerCase();
  const local = url.hostname === '127.0.0.1' || url.hostname === 'localhost';
  // The card processor and the webhook receiver are other services, with contracts of their own.
  const other = [PROCESSOR_SERVER, RECEIVER_SERVER].includes(res.headers.get('server') ?? '');
  if (local && !other) {
    void res
      .clone()
      .text()
      .then((text) => {
        const type = res.headers.get('content-type') ?? '';
        const body: unknown = /json/.test(type) && text ? JSON.parse(text) : text;
        try {
          contract.check(method, url.pathname, res.status, type, body);
        } catch (error) {
          violations.push((error as Error).message);
        }
      })
      .catch(() => undefined); // cut short: not a response to check
  }
  return res;
};

afterAll(() => {
  expect(violations).toEqual([]);
});
