/** Contract §4.8: a client may ask to wait at most this long for an in-flight original. */
export const MAX_WAIT_SECONDS = 10;

/**
 * The `wait` preference of an RFC 7240 Prefer header (`Prefer: wait=5`, possibly
 * among others: `respond-async, wait=5`), capped at MAX_WAIT_SECONDS. 0 when
 * absent or unreadable: a server ignores preferences it does not understand.
 */
export function preferredWaitSeconds(header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  const match = /(?:^|,)\s*wait\s*=\s*"?(\d{1,6})"?\s*(?:;[^,]*)?(?=,|$)/i.exec(value);
  return match ? Math.min(Number(match[1]), MAX_WAIT_SECONDS) : 0;
}
