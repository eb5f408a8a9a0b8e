import { Logger } from '@nestjs/common';

/**
 * The access log's lines, in the shape of every other log line (Nest's JSON
 * console logger: level, pid, timestamp, message, context), but not written
 * through it. Nest's logger serialises each record with a replacer that guards
 * against circular, huge and throwing values, which an access line of numbers and
 * short strings never has, and writes each line on its own; this builds the line
 * with JSON.stringify and writes the lines of one turn of the event loop together,
 * before the next turn (and at exit). Nest's logging was about a tenth of the
 * API's CPU profile of a replay (decision 0015).
 */
export class AccessLog {
  private pending = '';

  constructor(private readonly context: string) {
    process.on('exit', () => this.flush());
  }

  /** Writes `message` at the `log` level, if the logger prints that level. */
  log(message: Record<string, unknown>): void {
    if (!Logger.isLevelEnabled('log')) return;
    if (this.pending === '') setImmediate(() => this.flush());
    const line = {
      level: 'log',
      pid: process.pid,
      timestamp: Date.now(),
      message,
      context: this.context,
    };
    this.pending += `${JSON.stringify(line)}\n`;
  }

  private flush(): void {
    if (this.pending === '') return;
    process.stdout.write(this.pending);
    this.pending = '';
  }
}
