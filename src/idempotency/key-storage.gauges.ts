import { Injectable, type OnModuleInit } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host.js';
import { MetricsService } from '../metrics/metrics.service.js';

/**
 * Keys are state, and state costs storage: /metrics tells how many are kept and
 * how much room they take. Both come from PostgreSQL's own bookkeeping, not from
 * a count(*) over what may be millions of rows: the row count is the statistics
 * collector's live-tuple estimate (up to about ten seconds behind), the size that
 * of the table's files, indexes and TOAST included.
 */
@Injectable()
export class KeyStorageGauges implements OnModuleInit {
  constructor(
    private readonly tx: TransactionHost,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    this.metrics.gaugeFrom(
      'idempotency_keys_stored',
      'Idempotency keys kept (completed requests not yet purged), as estimated by PostgreSQL statistics.',
      async () => (await this.storage()).rows,
    );
    this.metrics.gaugeFrom(
      'idempotency_keys_bytes',
      'Bytes the idempotency_keys table takes on disk, its indexes and TOAST included.',
      async () => (await this.storage()).bytes,
    );
  }

  /** How many keys are kept, about, and the bytes they take: two cheap reads of PostgreSQL's bookkeeping. */
  private async storage(): Promise<{ rows: number; bytes: number }> {
    const [row] = await this.tx.query<{ rows: number; bytes: number; citus: boolean }>(
      `SELECT n_live_tup AS rows, pg_total_relation_size(relid) AS bytes,
              EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus
         FROM pg_stat_user_tables
        WHERE relname = 'idempotency_keys' AND schemaname = current_schema()`,
    );
    if (row?.citus) return this.distributedStorage();
    return row ?? { rows: 0, bytes: 0 };
  }

  /**
   * On Citus the coordinator's table is an empty shell: the keys are in its shards,
   * on the workers, so their statistics are summed there.
   */
  private async distributedStorage(): Promise<{ rows: number; bytes: number }> {
    const [row] = await this.tx.query<{ rows: number; bytes: number }>(
      `SELECT (SELECT coalesce(sum(result::bigint), 0)::bigint
                 FROM run_command_on_shards('idempotency_keys',
                        $$SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '%s'::regclass$$)
                WHERE success) AS rows,
              citus_total_relation_size('idempotency_keys') AS bytes`,
    );
    return row;
  }
}
