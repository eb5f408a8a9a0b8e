import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  DataSource,
  type EntityManager,
  type EntityTarget,
  type ObjectLiteral,
  type Repository,
} from 'typeorm';

/**
 * Carries the request's transaction through async context, so services never pass
 * an EntityManager by hand and cannot escape the transaction by accident: every
 * query made through this host inside run() uses run()'s connection.
 *
 * (@nestjs-cls/transactional does the same job; its nestjs-cls dependency is
 * CommonJS that require()s NestJS 12's ES modules, which Jest cannot load on
 * Node 20. These forty lines are the part of it this service needs.)
 */
@Injectable()
export class TransactionHost {
  private readonly storage = new AsyncLocalStorage<EntityManager>();

  constructor(private readonly dataSource: DataSource) {}

  /** Runs `work` in one transaction: commit when it resolves, roll back when it throws. */
  run<T>(work: () => Promise<T>): Promise<T> {
    if (this.storage.getStore()) return work(); // already inside: join it
    return this.dataSource.transaction((manager) => this.storage.run(manager, work));
  }

  get inTransaction(): boolean {
    return this.storage.getStore() !== undefined;
  }

  /** The current transaction's manager, or the pool's outside one. */
  get manager(): EntityManager {
    return this.storage.getStore() ?? this.dataSource.manager;
  }

  repository<T extends ObjectLiteral>(entity: EntityTarget<T>): Repository<T> {
    return this.manager.getRepository(entity);
  }

  /** Runs raw SQL in the current transaction (or on the pool) and returns its rows, for any command. */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const manager = this.storage.getStore();
    const runner = manager?.queryRunner ?? this.dataSource.createQueryRunner();
    try {
      const result = await runner.query(sql, params, true);
      return result.records as T[];
    } finally {
      if (!manager) await runner.release();
    }
  }
}
