/** What a replay needs of a completed request: what it was bound to, and its response. */
export interface CompletedRequest {
  requestMethod: string;
  requestPath: string;
  fingerprint: string;
  responseStatus: number;
  responseContentType: string;
  responseBody: string;
  responseLocation: string | null;
}

/**
 * How long before its key expires an entry is forgotten: more than the clocks of
 * the API's machines and the database's disagree by (NTP keeps them within
 * milliseconds), and more than the time between a transaction's start, which is
 * when the database counts the key's lifetime from, and its COMMIT.
 */
export const EXPIRY_MARGIN_MS = 1_000;

/**
 * The completed requests this instance has seen, kept in memory so that a retry is
 * replayed without a round trip to the database (decision 0015).
 *
 * It can never answer differently from the table, because a completed row does
 * not change while it lives: no request can replace a key before it expires
 * (contract §4.9; the claim refuses it), and the purge deletes only expired keys.
 * So there is nothing to invalidate, on this instance or on any other: an entry
 * is forgotten a little before its key expires, and from then on the database
 * decides again. Entries are per merchant. At most `capacity` are kept (the
 * oldest go first); 0 keeps none.
 */
export class CompletedResponses {
  private readonly entries = new Map<string, { request: CompletedRequest; until: number }>();

  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The merchant's completed request with this key, if this instance knows it and it still lives. */
  recall(merchantId: string, key: string): CompletedRequest | undefined {
    const id = entryId(merchantId, key);
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.until > this.now()) return entry.request;
    this.entries.delete(id);
    return undefined;
  }

  /** Keeps a committed request until EXPIRY_MARGIN_MS before `expiresAt` (epoch ms). */
  remember(merchantId: string, key: string, request: CompletedRequest, expiresAt: number): void {
    const until = expiresAt - EXPIRY_MARGIN_MS;
    if (this.capacity === 0 || until <= this.now()) return;
    const id = entryId(merchantId, key);
    this.entries.delete(id); // re-inserted last: the newest
    this.entries.set(id, { request, until });
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value!);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

/** Merchant ids never contain a space (src/common/ids.ts), so no two pairs share an id. */
function entryId(merchantId: string, key: string): string {
  return `${merchantId} ${key}`;
}
