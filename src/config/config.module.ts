import { type DynamicModule, Global, Module } from '@nestjs/common';
import { SecretBox } from './secret-box.js';
import type { AppConfig } from './config.js';
import { secretsKey } from './secrets-key.js';

export const APP_CONFIG = Symbol('AppConfig');

/**
 * Makes the validated AppConfig injectable everywhere as APP_CONFIG, and the
 * SecretBox that seals secrets at rest under its SECRETS_KEY.
 */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [
        { provide: APP_CONFIG, useValue: config },
        { provide: SecretBox, useFactory: () => new SecretBox(secretsKey(config)) },
      ],
      exports: [APP_CONFIG, SecretBox],
    };
  }
}
