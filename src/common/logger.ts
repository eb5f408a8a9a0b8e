import { ConsoleLogger, type LogLevel as NestLogLevel } from '@nestjs/common';
import type { LogLevel } from '../config/config.js';

const ORDER: NestLogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** JSON lines on stdout, from LOG_LEVEL down. Secrets are masked should one ever be logged. */
export function createLogger(level: LogLevel): ConsoleLogger {
  const nestLevel: NestLogLevel = level === 'info' ? 'log' : level;
  return new ConsoleLogger({
    json: true,
    logLevels: ORDER.slice(0, ORDER.indexOf(nestLevel) + 1),
    redact: ['authorization', 'apiKey', 'password', 'apiKeyHash'],
  });
}
