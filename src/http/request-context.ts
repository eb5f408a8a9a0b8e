import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { AccessLog } from './access-log.js';
import type { ApiRequest } from './api-request.js';

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
const accessLog = new AccessLog('HTTP');

/**
 * Gives every request an id (the client's X-Request-Id when it sent a sane one),
 * echoes it, and once the response is sent writes one JSON access log line:
 * route, status, latency, merchant, whether an idempotent response was replayed;
 * never the API key or the body.
 */
export function installRequestContext(http: FastifyInstance): void {
  http.decorateRequest('requestId', '');
  http.decorateRequest('merchant', null);
  http.decorateRequest('scraper', false);
  http.decorateRequest('idempotentReplayed', false);
  http.decorateRequest('keyed', null);
  http.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done) => {
    identify(req as ApiRequest, reply);
    done();
  });
  http.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done) => {
    const req = request as ApiRequest;
    accessLog.log({
      msg: 'request',
      requestId: req.requestId,
      method: req.method,
      route: req.routeOptions.url ?? pathOf(req),
      status: reply.statusCode,
      latencyMs: Math.round(reply.elapsedTime * 1e3) / 1e3,
      merchantId: req.merchant?.id,
      replayed: req.idempotentReplayed,
    });
    done();
  });
}

/** Gives the request its id (the client's when sane) and echoes it in X-Request-Id. */
export function identify(req: ApiRequest, reply: FastifyReply): void {
  const incoming = req.headers['x-request-id'];
  req.requestId =
    typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  reply.header('X-Request-Id', req.requestId);
}

/** The path of the request's URL, without the query string (Express's req.path). */
export function pathOf(req: FastifyRequest): string {
  const query = req.url.indexOf('?');
  return query === -1 ? req.url : req.url.slice(0, query);
}
