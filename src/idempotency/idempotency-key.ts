import { ProblemError } from '../problems/problem.js';

export const MAX_KEY_LENGTH = 255;
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * Reads the Idempotency-Key header (contract §4.1). Accepted: a bare value
 * (`abc-123`) or an RFC 8941 sf-string (`"abc-123"`, with `\"` and `\\` escapes);
 * both forms of one value give the same key. The key is 1..255 characters of
 * visible ASCII. Returns undefined when the header is absent.
 *
 * A value that starts with a double quote is read as an sf-string; any other
 * value is taken as it is.
 */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  // Node joins repeated headers with ", "; a key sent twice is ambiguous.
  if (Array.isArray(header)) throw invalid('the header must be sent once');
  const value = header.trim();
  const key = value.startsWith('"') ? unquote(value) : value;
  if (key.length === 0) throw invalid('the key is empty');
  if (key.length > MAX_KEY_LENGTH)
    throw invalid(`the key is longer than ${MAX_KEY_LENGTH} characters`);
  if (!VISIBLE_ASCII.test(key)) {
    throw invalid('the key may contain only visible ASCII characters (0x21-0x7E)');
  }
  return key;
}

/** RFC 8941 §4.2.5: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE, unescaped = %x20-21 / %x23-5B / %x5D-7E. */
function unquote(value: string): string {
  let out = '';
  for (let i = 1; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      const next = value[++i];
      if (next !== '"' && next !== '\\')
        throw invalid('only \\" and \\\\ may be escaped in a quoted key');
      out += next;
    } else if (c === '"') {
      if (i !== value.length - 1) throw invalid('nothing may follow the closing quote');
      return out;
    } else if (c < '\x20' || c > '\x7e') {
      throw invalid('the key may contain only visible ASCII characters (0x21-0x7E)');
    } else {
      out += c;
    }
  }
  throw invalid('the quoted key has no closing quote');
}

function invalid(reason: string): ProblemError {
  return new ProblemError('idempotency-key-invalid', `Idempotency-Key is invalid: ${reason}.`);
}
