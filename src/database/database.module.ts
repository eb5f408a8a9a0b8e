import {
  type DynamicModule,
  Global,
  Inject,
  Module,
  type OnApplicationShutdown,
} from '@nestjs/common';
import type { Pool } from 'pg';
import type { ConnectionSettings } from '../config/config.js';
import { createPool, DIRECT } from './connection.js';
import { CONNECTION_SETTINGS, PG_POOL, TransactionHost } from './transaction-host.js';

/** The pool of connections, and TransactionHost, through which every query goes. */
@Global()
@Module({})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(@Inject(PG_POOL) private readonly pool: Pool) {}

  static forRoot(
    url: string,
    poolSize: number,
    connection: ConnectionSettings = DIRECT,
  ): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [
        { provide: PG_POOL, useFactory: () => createPool(url, poolSize, connection) },
        { provide: CONNECTION_SETTINGS, useValue: connection },
        TransactionHost,
      ],
      exports: [TransactionHost],
    };
  }

  /** Last: the background tasks have stopped and the requests have finished by now. */
  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}
