import type { FastifyInstance } from 'fastify';

/**
 * What a browser is told about every answer, and about a page: a page of this
 * service (the interactive docs, the lab) loads only this origin's scripts, styles
 * and images, may not be framed (clickjacking), sends no Referer elsewhere, and is
 * not opened by another window's opener. Every answer is `nosniff`: a JSON body is
 * never read as a script or a page.
 *
 * Swagger UI sets inline styles, hence `style-src 'unsafe-inline'`; its scripts
 * are files of this origin, none inline. A few static headers: no plugin needed.
 */
export const PAGE_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

export function installSecurityHeaders(http: FastifyInstance): void {
  http.addHook('onSend', (_req, reply, payload, done) => {
    reply.header('X-Content-Type-Options', 'nosniff');
    if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
      reply.headers(PAGE_HEADERS);
    }
    done(null, payload);
  });
}
