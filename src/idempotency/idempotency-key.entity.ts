import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/**
 * A completed idempotent request: written in the same transaction as the work it
 * remembers, so a row exists if and only if that work committed.
 */
@Entity({ name: 'idempotency_keys' })
export class IdempotencyKey {
  @PrimaryColumn({ name: 'merchant_id', type: 'text' })
  merchantId: string;

  @PrimaryColumn({ type: 'text' })
  key: string;

  @Column({ name: 'request_method', type: 'text' })
  requestMethod: string;

  @Column({ name: 'request_path', type: 'text' })
  requestPath: string;

  /** SHA-256 of method, path and canonical JSON body, hex. */
  @Column({ type: 'text' })
  fingerprint: string;

  @Column({ name: 'response_status', type: 'int' })
  responseStatus: number;

  @Column({ name: 'response_content_type', type: 'text' })
  responseContentType: string;

  /** The exact bytes sent the first time, so a replay is byte-identical. */
  @Column({ name: 'response_body', type: 'text' })
  responseBody: string;

  @Column({ name: 'response_location', type: 'text', nullable: true })
  responseLocation: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;
}
