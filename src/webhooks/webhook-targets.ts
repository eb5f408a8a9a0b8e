import { Inject, Injectable } from '@nestjs/common';
import dns, { type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { APP_CONFIG } from '../config/config.module.js';
import { type AppConfig, webhookTargets } from '../config/config.js';
import { ProblemError } from '../problems/problem.js';
import { refusalOf } from './address-policy.js';

/** The error a connection refused by the policy fails with (see lookup). */
export const NOT_ALLOWED = 'EWEBHOOKTARGET';

/**
 * Where this instance may send webhooks: public addresses (address-policy.ts), and
 * loopback when WEBHOOK_ALLOW_LOOPBACK says so (development, the reference
 * receiver); https only when WEBHOOK_REQUIRE_HTTPS does. Checked twice: when a URL
 * is given (a clear 400), and again as each try connects, on the address actually
 * used, so that a name that resolves elsewhere later (DNS rebinding) reaches
 * nothing it should not.
 */
@Injectable()
export class WebhookTargets {
  private readonly allowLoopback: boolean;
  private readonly requireHttps: boolean;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    ({ allowLoopback: this.allowLoopback, requireHttps: this.requireHttps } =
      webhookTargets(config));
  }

  /** Why this instance may not send to `address`, or undefined when it may. */
  refusal(address: string): string | undefined {
    const refusal = refusalOf(address);
    if (!refusal || (refusal === 'loopback' && this.allowLoopback)) return undefined;
    return refusal;
  }

  /**
   * When an endpoint is created or its URL changed: a 400 unless the URL is https
   * where that is required, and its host resolves, each of its addresses to one
   * this instance may send to. (The resolver's answer now proves nothing about
   * later: lookup() checks again at every connection.)
   */
  async check(url: string): Promise<void> {
    const { protocol, hostname } = new URL(url);
    if (this.requireHttps && protocol !== 'https:') {
      throw invalidUrl('url must be https:// (WEBHOOK_REQUIRE_HTTPS)');
    }
    const host = bare(hostname);
    let addresses: string[];
    try {
      addresses = isIP(host)
        ? [host]
        : (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
    } catch {
      throw invalidUrl(`url's host ${host} does not resolve`);
    }
    for (const address of addresses) {
      const refusal = this.refusal(address);
      if (refusal) {
        throw invalidUrl(
          `url's host ${host} is ${address === host ? '' : `resolved to ${address}, `}a ${refusal} address: webhooks go to public addresses only`,
        );
      }
    }
  }

  /**
   * For http(s).request: resolves the host, refuses the connection if any of its
   * addresses is refused, and otherwise hands the checked addresses to the socket,
   * which connects to one of them: the address checked is the address used.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (error, found: LookupAddress[]) => {
      if (error) return callback(error, '', 0);
      const refused = found.map((a) => this.refusal(a.address)).find(Boolean);
      if (refused || found.length === 0) {
        const refusal = Object.assign(new Error(`address not allowed (${refused})`), {
          code: NOT_ALLOWED,
        });
        return callback(refusal, '', 0);
      }
      if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, found);
      callback(null, found[0].address, found[0].family);
    });
  };
}

/** An IPv6 host as URL gives it, [::1], without its brackets. */
export function bare(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

function invalidUrl(message: string): ProblemError {
  return new ProblemError('validation-failed', message, { errors: [{ field: 'url', message }] });
}
