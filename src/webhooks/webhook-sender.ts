import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { bare, NOT_ALLOWED, type WebhookTargets } from './webhook-targets.js';

/** One try, as the endpoint answered it, or did not. */
export interface TryOutcome {
  /** The status the endpoint answered; null when it did not answer. */
  status: number | null;
  /** Why there was no answer, in a few words (errorCategory); null when there was one. */
  error: string | null;
  latencyMs: number;
  /** The endpoint's Retry-After (on a 429 or a 503), in seconds. */
  retryAfterSeconds: number | null;
}

/**
 * POSTs one delivery, on a connection of its own (no agent: nothing is kept
 * between endpoints), to an address the targets allow: an IP literal is checked
 * here, a name in targets.lookup as the socket connects. Redirects are not
 * followed: a 3xx is the answer. The body of the answer is not read.
 */
export function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  targets: WebhookTargets,
): Promise<TryOutcome> {
  const started = performance.now();
  const outcome = (status: number | null, error: string | null, retryAfter?: string) => ({
    status,
    error,
    latencyMs: Math.round(performance.now() - started),
    retryAfterSeconds: retryAfterSeconds(retryAfter),
  });
  const target = new URL(url);
  const host = bare(target.hostname);
  const refused = isIP(host) ? targets.refusal(host) : undefined;
  if (refused) return Promise.resolve(outcome(null, `address not allowed (${refused})`));

  const transport = target.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const req = transport.request(target, {
      method: 'POST',
      headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) },
      agent: false,
      lookup: targets.lookup,
      signal: AbortSignal.timeout(timeoutMs),
    });
    req.on('response', (res) => {
      const retryAfter = res.headers['retry-after'];
      resolve(outcome(res.statusCode ?? null, null, retryAfter));
      res.destroy(); // the answer's body is not needed: only its status
    });
    req.on('error', (error) => resolve(outcome(null, errorCategory(error))));
    req.end(body);
  });
}

/**
 * What went wrong, in a few words a merchant can act on (GET /events/{id}/deliveries
 * shows it): never the driver's message, which says more about the network the
 * service runs in than about the endpoint.
 */
export function errorCategory(error: Error & { code?: string }): string {
  const code = error.code ?? '';
  if (code === NOT_ALLOWED) return error.message;
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return 'no answer in time';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NODATA') {
    return 'host not found';
  }
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/.test(error.message)) {
    return 'connection reset';
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable';
  if (code.startsWith('ERR_TLS') || /CERT|SSL|TLS/.test(code) || code === 'EPROTO') {
    return 'TLS failure';
  }
  return 'network error';
}

/** Retry-After as seconds (it may be a number of seconds or an HTTP date); null if absent or unreadable. */
function retryAfterSeconds(value: string | undefined): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}
