/**
 * A response as it goes over the wire: status, headers that matter and the exact
 * body bytes. Stored with a key and sent again, byte for byte, on a replay.
 */
export interface RecordedResponse {
  status: number;
  contentType: string;
  body: string;
  location: string | null;
}
