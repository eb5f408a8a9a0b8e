import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../src/common/free-port.js';

/**
 * A PgBouncer in front of a PostgreSQL server, for the tests and the benchmark:
 * the service is run through it as it would be in production, where a pooler
 * lends each transaction a server connection.
 *
 * It is the system's `pgbouncer` (Debian's package: `apt-get install pgbouncer`),
 * or the binary named by PGBOUNCER_BIN (a newer build, to try 1.21+'s
 * prepared-statement tracking). Nothing of PgBouncer is part of the project.
 */
export interface PgBouncer {
  /** `target`'s URL on PgBouncer's port (same user, password and database). */
  url: string;
  port: number;
  version: string;
  /** Its process, for the benchmark's CPU columns. */
  pid: number;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** Any URL of the server to pool (its database part is ignored: every database is served). */
  target: string;
  mode?: 'transaction' | 'session';
  /**
   * PgBouncer 1.21+: prepared statements it tracks per client (0: none, as 1.18 does;
   * unset: PgBouncer's default, 200 since 1.22).
   */
  maxPreparedStatements?: number;
  /** Server connections per database and user. */
  poolSize?: number;
}

/** The PgBouncer binary and its version, or undefined when there is none. */
export function findPgBouncer(): { bin: string; version: string } | undefined {
  const bin = process.env.PGBOUNCER_BIN || 'pgbouncer';
  const probe = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  const version = /PgBouncer (\S+)/.exec(probe.stdout)?.[1] ?? 'unknown';
  return { bin, version };
}

/**
 * Whether a PgBouncer of this version can track prepared statements
 * (`max_prepared_statements`, 1.21+; on by default, 200, since 1.22).
 */
export function tracksPreparedStatements(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 21);
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const found = findPgBouncer();
  if (!found) throw new Error('no pgbouncer binary (apt-get install pgbouncer, or PGBOUNCER_BIN)');
  const target = new URL(options.target);
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'pgbouncer-'));
  const server = [
    `host=${target.hostname}`,
    `port=${target.port || 5432}`,
    `user=${decodeURIComponent(target.username)}`,
    target.password ? `password=${decodeURIComponent(target.password)}` : '',
  ].join(' ');
  writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = ${server}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      // The tests' clients are on this machine and the server trusts PgBouncer with
      // the credentials above; a production PgBouncer authenticates its clients.
      'auth_type = any',
      `pool_mode = ${options.mode ?? 'transaction'}`,
      `default_pool_size = ${options.poolSize ?? 20}`,
      'max_client_conn = 2000',
      'max_db_connections = 0',
      ...(options.maxPreparedStatements !== undefined
        ? [`max_prepared_statements = ${options.maxPreparedStatements}`]
        : []),
      'log_connections = 0',
      'log_disconnections = 0',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root; the tests do, on CI machines.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chmodSync(dir, 0o777);
  const child: ChildProcess = spawn(
    found.bin,
    [...(asRoot ? ['-u', 'nobody'] : []), path.join(dir, 'pgbouncer.ini')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await untilListening(port, exited, () => stderr);

  const url = new URL(options.target);
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    version: found.version,
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls the port until PgBouncer accepts, or fails with what it printed if it exits first. */
async function untilListening(
  port: number,
  exited: Promise<void>,
  output: () => string,
): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  for (let i = 0; i < 500; i++) {
    if (gone) throw new Error(`pgbouncer exited: ${output()}`);
    if (await accepts(port)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`pgbouncer did not listen on ${port} within 10 s: ${output()}`);
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
