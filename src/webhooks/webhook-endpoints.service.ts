import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { newId } from '../common/ids.js';
import { SecretBox } from '../config/secret-box.js';
import { type List, type ListQuery, pageAfter, pageParams, toList } from '../common/list.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TransactionHost } from '../database/transaction-host.js';
import { EventsService } from '../events/events.service.js';
import { NotFoundError, ProblemError } from '../problems/problem.js';
import {
  type CreateWebhookEndpointDto,
  type ReplaceWebhookEndpointDto,
  webhookUrl,
} from './dto/webhook-endpoint.dto.js';
import { WebhookDeliveries } from './webhook-deliveries.js';
import type { TryOutcome } from './webhook-sender.js';
import { WebhookTargets } from './webhook-targets.js';

/**
 * A signing secret, and when it stops signing (null: it is the current one). At
 * rest the secret is sealed (SecretBox): the table holds no secret in the clear.
 */
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
  /**
   * Why the service disabled it: `gone` (it answered 410) or `failing` (no 2xx for
   * WEBHOOK_DISABLE_AFTER_SECONDS); null when the merchant set `enabled` itself.
   */
  disabledReason: DisabledReason | null;
  createdAt: string;
  updatedAt: string;
  /** Only in the answers that make one (create, rotate-secret): it is not shown again. */
  secret?: string;
}

export type DisabledReason = 'gone' | 'failing';

interface EndpointRow {
  id: string;
  url: string;
  description: string | null;
  enabled: boolean;
  disabledReason: DisabledReason | null;
  secrets: SigningSecret[];
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, url, description, enabled, disabled_reason AS "disabledReason", secrets,
  created_at AS "createdAt", updated_at AS "updatedAt"`;

/** The webhook_endpoints table: its only writer. Where merchants want their events. */
@Injectable()
export class WebhookEndpointsService implements OnApplicationBootstrap {
  constructor(
    private readonly tx: TransactionHost,
    private readonly deliveries: WebhookDeliveries,
    private readonly targets: WebhookTargets,
    private readonly events: EventsService,
    private readonly box: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.sealSecretsInTheClear();
  }

  /**
   * Seals the signing secrets kept in the clear from before they were sealed at
   * rest (at start-up; nothing to do once done). Each endpoint is rewritten only
   * if its secrets are still the ones read, so instances starting together agree.
   */
  async sealSecretsInTheClear(): Promise<number> {
    const rows = await this.tx.query<{ merchantId: string; id: string; secrets: SigningSecret[] }>(
      `SELECT merchant_id AS "merchantId", id, secrets FROM webhook_endpoints
        WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(secrets) s
                       WHERE s ->> 'secret' NOT LIKE 'sealed:%')`,
    );
    for (const { merchantId, id, secrets } of rows) {
      const sealed = secrets.map((s) => ({ ...s, secret: this.box.seal(this.box.open(s.secret)) }));
      await this.tx.query(
        `UPDATE webhook_endpoints SET secrets = $3 WHERE merchant_id = $1 AND id = $2 AND secrets = $4`,
        [merchantId, id, JSON.stringify(sealed), JSON.stringify(secrets)],
      );
    }
    return rows.length;
  }

  /**
   * A new endpoint, enabled, with a signing secret shown in this answer only: at
   * a URL this service may send to (WebhookTargets), stored as the URL parser
   * normalises it, and at most WEBHOOK_MAX_ENDPOINTS per merchant (409 past it).
   */
  async create(merchantId: string, dto: CreateWebhookEndpointDto): Promise<WebhookEndpointView> {
    const url = webhookUrl(dto.url);
    await this.targets.check(url); // before any statement: the resolver's wait holds no connection
    return this.tx.run(async () => {
      // Counted and added under a lock of the merchant's: two endpoints created at
      // once cannot both pass the cap. (Two statements: the count's snapshot must
      // be taken once the lock is held.)
      const [, [{ count }]] = await Promise.all([
        this.tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
          `webhook-endpoints:${merchantId}`,
        ]),
        this.tx.query<{ count: number }>(
          `SELECT count(*)::int AS count FROM webhook_endpoints
            WHERE merchant_id = $1 AND deleted_at IS NULL`,
          [merchantId],
        ),
      ]);
      if (count >= this.config.WEBHOOK_MAX_ENDPOINTS) {
        throw new ProblemError(
          'webhook-endpoint-limit',
          `A merchant may have ${this.config.WEBHOOK_MAX_ENDPOINTS} webhook endpoints; delete one to add another.`,
          { limit: this.config.WEBHOOK_MAX_ENDPOINTS },
        );
      }
      const secret = newSecret();
      const [row] = await this.tx.query<EndpointRow>(
        `INSERT INTO webhook_endpoints (merchant_id, id, url, description, secrets)
         VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`,
        [
          merchantId,
          newId('webhookEndpoint'),
          url,
          dto.description ?? null,
          JSON.stringify([{ secret: this.box.seal(secret), expiresAt: null }]),
        ],
      );
      return { ...toView(row), secret };
    });
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

  /**
   * PUT: sets url, description and enabled. Safe to repeat: it sets. The merchant's
   * word is the last: the service's reason for disabling it, and its failures so
   * far, are cleared.
   */
  async replace(
    merchantId: string,
    id: string,
    dto: ReplaceWebhookEndpointDto,
  ): Promise<WebhookEndpointView> {
    const url = webhookUrl(dto.url);
    await this.targets.check(url);
    const [row] = await this.tx.query<EndpointRow>(
      `UPDATE webhook_endpoints
          SET url = $3, description = $4, enabled = $5, disabled_reason = NULL,
              failing_since = NULL, updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL
       RETURNING ${COLUMNS}`,
      [merchantId, id, url, dto.description ?? null, dto.enabled],
    );
    if (!row) throw new NotFoundError('webhook endpoint', id);
    return toView(row);
  }

  /**
   * Sends again what the endpoint missed: its deliveries given up since `since`,
   * at most RECOVER_WINDOW_DAYS back and RECOVER_LIMIT per call (a larger backlog
   * takes several). Safe to repeat: what was recovered is no longer failed.
   * Returns how many went back to pending.
   */
  async recover(merchantId: string, id: string, since: Date): Promise<number> {
    await this.get(merchantId, id); // 404 for an unknown, deleted or foreign endpoint
    if (Date.now() - since.getTime() > RECOVER_WINDOW_DAYS * 86_400_000) {
      const message = `since must be within the last ${RECOVER_WINDOW_DAYS} days`;
      throw new ProblemError('validation-failed', message, {
        errors: [{ field: 'since', message }],
      });
    }
    return this.deliveries.recover(merchantId, id, since);
  }

  /**
   * What a try says of its endpoint (the dispatcher tells each one): a 2xx, that it
   * works again; a 410 Gone, that it is to be disabled; anything else, that it
   * fails, and once it has failed for WEBHOOK_DISABLE_AFTER_SECONDS without a
   * 2xx, it is disabled.
   */
  async afterTry(merchantId: string, id: string, outcome: TryOutcome): Promise<void> {
    if (outcome.status === 410) {
      await this.disable(merchantId, id, 'gone');
    } else if (outcome.status !== null && outcome.status >= 200 && outcome.status < 300) {
      await this.tx.query(
        `UPDATE webhook_endpoints SET failing_since = NULL
          WHERE merchant_id = $1 AND id = $2 AND failing_since IS NOT NULL`,
        [merchantId, id],
      );
    } else {
      // The time of the failure is a parameter, not now() in the coalesce: Citus
      // refuses a function that is not immutable there.
      const [row] = await this.tx.query<{ overdue: boolean }>(
        `UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $3)
          WHERE merchant_id = $1 AND id = $2 AND enabled
         RETURNING failing_since <= now() - make_interval(secs => $4) AS overdue`,
        [merchantId, id, new Date(), this.config.WEBHOOK_DISABLE_AFTER_SECONDS],
      );
      if (row?.overdue && this.config.WEBHOOK_DISABLE_AFTER_SECONDS > 0) {
        await this.disable(merchantId, id, 'failing');
      }
    }
  }

  /**
   * The service disables an endpoint, and tells the merchant why with a
   * webhook_endpoint.disabled event (which goes to its other endpoints, and is in
   * GET /events). Nothing is sent to it until the merchant enables it again (PUT).
   */
  private disable(merchantId: string, id: string, reason: DisabledReason): Promise<void> {
    return this.tx.run(async () => {
      const [row] = await this.tx.query<EndpointRow>(
        `UPDATE webhook_endpoints SET enabled = false, disabled_reason = $3, updated_at = now()
          WHERE merchant_id = $1 AND id = $2 AND enabled AND deleted_at IS NULL
         RETURNING ${COLUMNS}`,
        [merchantId, id, reason],
      );
      if (row) this.events.recordAtCommit(merchantId, 'webhook_endpoint.disabled', toView(row));
    });
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
        // Its signing secrets go with it: nothing will be signed for it again.
        this.tx.query(
          `UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, secrets = '[]'
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
      [
        merchantId,
        id,
        this.box.seal(secret),
        overlapEnd(this.config.WEBHOOK_SECRET_OVERLAP_SECONDS),
      ],
    );
    if (!row) throw new NotFoundError('webhook endpoint', id);
    return { ...toView(row), secret };
  }
}

/** How far back recover() reaches: events are kept 30 days, a failed delivery is given up within two. */
export const RECOVER_WINDOW_DAYS = 7;

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
    disabledReason: row.disabledReason,
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
