import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { newId } from '../common/ids.js';
import { type List, type ListQuery, pageAfter, pageParams, toList } from '../common/list.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TransactionHost } from '../database/transaction-host.js';
import { NotFoundError } from '../problems/problem.js';
import type {
  CreateWebhookEndpointDto,
  ReplaceWebhookEndpointDto,
} from './dto/webhook-endpoint.dto.js';
import { WebhookDeliveries } from './webhook-deliveries.js';

/** A signing secret, and when it stops signing (null: it is the current one). */
export interface SigningSecret {
  secret: string;
  expiresAt: string | null;
}

export interface WebhookEndpointView {
  id: string;
  object: 'webhook_endpoint';
  url: string;
  description: string | null;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
  /** Only in the answers that make one (create, rotate-secret): it is not shown again. */
  secret?: string;
}

interface EndpointRow {
  id: string;
  url: string;
  description: string | null;
  enabled: boolean;
  secrets: SigningSecret[];
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, url, description, enabled, secrets, created_at AS "createdAt", updated_at AS "updatedAt"`;

/** The webhook_endpoints table: its only writer. Where merchants want their events. */
@Injectable()
export class WebhookEndpointsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly deliveries: WebhookDeliveries,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** A new endpoint, enabled, with a signing secret shown in this answer only. */
  async create(merchantId: string, dto: CreateWebhookEndpointDto): Promise<WebhookEndpointView> {
    const secret = newSecret();
    const [row] = await this.tx.query<EndpointRow>(
      `INSERT INTO webhook_endpoints (merchant_id, id, url, description, secrets)
       VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
      [
        merchantId,
        newId('webhookEndpoint'),
        dto.url,
        dto.description ?? null,
        JSON.stringify([{ secret, expiresAt: null }]),
      ],
    );
    return { ...toView(row), secret };
  }

  async list(merchantId: string, query: ListQuery): Promise<List<WebhookEndpointView>> {
    const rows = await this.tx.query<EndpointRow>(
      `SELECT ${COLUMNS} FROM webhook_endpoints
        WHERE merchant_id = $1 AND deleted_at IS NULL ${pageAfter(2)}`,
      [merchantId, ...pageParams(query)],
    );
    return toList(rows, query, toView);
  }

  async get(merchantId: string, id: string): Promise<WebhookEndpointView> {
    const [row] = await this.tx.query<EndpointRow>(
      `SELECT ${COLUMNS} FROM webhook_endpoints
        WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('webhook endpoint', id);
    return toView(row);
  }

  /** PUT: sets url, description and enabled. Safe to repeat: it sets. */
  async replace(
    merchantId: string,
    id: string,
    dto: ReplaceWebhookEndpointDto,
  ): Promise<WebhookEndpointView> {
    const [row] = await this.tx.query<EndpointRow>(
      `UPDATE webhook_endpoints SET url = $3, description = $4, enabled = $5, updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL
       RETURNING ${COLUMNS}`,
      [merchantId, id, dto.url, dto.description ?? null, dto.enabled],
    );
    if (!row) throw new NotFoundError('webhook endpoint', id);
    return toView(row);
  }

  /**
   * DELETE: no more events go to it (the ones waiting are dropped with it). Safe to
   * repeat: deleting a deleted endpoint answers the same.
   */
  delete(merchantId: string, id: string): Promise<void> {
    return this.tx.run(async () => {
      // Both in one round trip: the first marks it deleted unless it already is,
      // the second tells whether it exists at all.
      const [, [row]] = await Promise.all([
        this.tx.query(
          `UPDATE webhook_endpoints SET deleted_at = now(), enabled = false
            WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL`,
          [merchantId, id],
        ),
        this.tx.query<{ id: string }>(
          'SELECT id FROM webhook_endpoints WHERE merchant_id = $1 AND id = $2',
          [merchantId, id],
        ),
      ]);
      if (!row) throw new NotFoundError('webhook endpoint', id);
      await this.deliveries.dropPendingFor(merchantId, id);
    });
  }

  /**
   * A new signing secret, shown once. The previous ones keep signing for
   * WEBHOOK_SECRET_OVERLAP_SECONDS (every delivery carries a signature per
   * secret), so that the receiver can switch to the new one without a gap.
   */
  async rotateSecret(merchantId: string, id: string): Promise<WebhookEndpointView> {
    const secret = newSecret();
    const [row] = await this.tx.query<EndpointRow>(
      `UPDATE webhook_endpoints
          SET secrets = jsonb_build_array(jsonb_build_object('secret', $3::text, 'expiresAt', null))
                        || (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'secret', s ->> 'secret',
                                 'expiresAt', coalesce(s ->> 'expiresAt', $4::text))), '[]'::jsonb)
                              FROM jsonb_array_elements(secrets) s
                             WHERE s ->> 'expiresAt' IS NULL OR (s ->> 'expiresAt')::timestamptz > now()),
              updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL
       RETURNING ${COLUMNS}`,
      [merchantId, id, secret, overlapEnd(this.config.WEBHOOK_SECRET_OVERLAP_SECONDS)],
    );
    if (!row) throw new NotFoundError('webhook endpoint', id);
    return { ...toView(row), secret };
  }
}

/** A Standard Webhooks secret: `whsec_` and 24 random bytes, base64. */
function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function toView(row: EndpointRow): WebhookEndpointView {
  return {
    id: row.id,
    object: 'webhook_endpoint',
    url: row.url,
    description: row.description,
    enabled: row.enabled,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/**
 * When the secrets rotated out now stop signing, to the second, as the API shows
 * it. Computed here, not with now() inside the UPDATE's coalesce(): Citus refuses
 * a function that is not immutable inside CASE or COALESCE of a distributed write.
 */
function overlapEnd(seconds: number): string {
  return new Date(Math.floor(Date.now() / 1000) * 1000 + seconds * 1000)
    .toISOString()
    .replace('.000Z', 'Z');
}
