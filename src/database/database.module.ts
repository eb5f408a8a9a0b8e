import { type DynamicModule, Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { type ConnectionSettings, dataSourceOptions, DIRECT } from './data-source.js';
import { CONNECTION_SETTINGS, TransactionHost } from './transaction-host.js';

@Global()
@Module({})
export class DatabaseModule {
  static forRoot(
    url: string,
    poolSize: number,
    connection: ConnectionSettings = DIRECT,
  ): DynamicModule {
    return {
      module: DatabaseModule,
      imports: [
        TypeOrmModule.forRoot({
          ...dataSourceOptions(url, poolSize, connection),
          retryAttempts: 0,
        }),
      ],
      providers: [TransactionHost, { provide: CONNECTION_SETTINGS, useValue: connection }],
      exports: [TransactionHost],
    };
  }
}
