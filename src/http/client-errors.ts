import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { PROBLEM_CONTENT_TYPE, problemBody } from '../problems/problem.js';

/** The answers, by what the parser said: the status line and the problem's detail. */
const ANSWERS = {
  'request-timeout': {
    statusLine: '408 Request Timeout',
    detail: 'The request did not arrive in time; the connection is closed.',
  },
  'request-headers-too-large': {
    statusLine: '431 Request Header Fields Too Large',
    detail: 'The request headers are larger than 16 kB.',
  },
  'malformed-request': {
    statusLine: '400 Bad Request',
    detail: 'The request is not valid HTTP/1.1.',
  },
} as const;

/**
 * What Node.js's HTTP parser refuses before there is a request to route (a
 * `clientError`), answered as every other error is: problem+json, with an
 * X-Request-Id, then the connection closed. (Fastify's own answers here are plain
 * JSON, outside the contract.)
 *
 * - 408 `request-timeout`: the headers did not arrive within HEADERS_TIMEOUT_MS, or
 *   the whole request within REQUEST_TIMEOUT_MS: a client trickling a body holds a
 *   connection that long, no longer;
 * - 431 `request-headers-too-large`: headers over Node.js's limit (16 kB);
 * - 400 `malformed-request`: anything else the parser cannot read.
 *
 * Nothing is written to a socket already gone, or to one whose response has begun.
 */
export function answerClientError(
  error: Error & { code?: string },
  socket: Socket & { _httpMessage?: { headersSent?: boolean } },
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable && !socket._httpMessage?.headersSent) {
    const code =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'request-timeout'
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? 'request-headers-too-large'
          : 'malformed-request';
    const { statusLine, detail } = ANSWERS[code];
    const body = problemBody(code, detail);
    socket.write(
      `HTTP/1.1 ${statusLine}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${randomUUID()}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}
