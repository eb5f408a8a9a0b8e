import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto';

const PREFIX = 'sealed:v1:';

/**
 * Seals secrets kept at rest (webhook signing secrets, the stored answers that
 * show one) with AES-256-GCM under one key (SECRETS_KEY): a copy of the database,
 * or a backup of it, holds no secret in the clear. A sealed text is
 * `sealed:v1:<key id>:<base64url of IV, ciphertext and tag>`; the key id (8 hex
 * digits of the key's SHA-256) says which key sealed it, so that a text sealed
 * under another key is refused by name instead of failing as a forgery would.
 */
export class SecretBox {
  private readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('a SecretBox key is 32 bytes');
    this.keyId = hash('sha256', key, 'hex').slice(0, 8);
  }

  static isSealed(text: string): boolean {
    return text.startsWith(PREFIX);
  }

  seal(text: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([
      iv,
      cipher.update(text, 'utf8'),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return `${PREFIX}${this.keyId}:${sealed.toString('base64url')}`;
  }

  /** The text a sealed one holds; a text that is not sealed is returned as it is (kept from before sealing). */
  open(text: string): string {
    if (!SecretBox.isSealed(text)) return text;
    const [keyId, payload] = text.slice(PREFIX.length).split(':');
    if (keyId !== this.keyId) {
      throw new Error(`sealed under another key (${keyId}), not SECRETS_KEY (${this.keyId})`);
    }
    const bytes = Buffer.from(payload, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([
      decipher.update(bytes.subarray(12, bytes.length - 16)),
      decipher.final(),
    ]).toString('utf8');
  }
}
