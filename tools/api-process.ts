import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../src/common/free-port.js';

/**
 * The project's root, where `dist/main.js` (the compiled API) is: the nearest folder
 * above this file with a package.json. This file runs from tools/ in the tests and
 * from build/tools/ compiled, so a fixed '..' would not do.
 */
export const projectRoot = (() => {
  let dir = import.meta.dirname;
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();

/**
 * How the API's node is started, here, in `npm start` and in the Dockerfile (a test
 * checks they agree). A 192 MB old generation: the app's live heap is about 30 MB,
 * and without a limit V8 lets garbage pile up to what a large machine allows (API RSS
 * 240-258 MB under load in npm run bench; 150-158 MB with it, at the same throughput).
 */
export const NODE_FLAGS = ['--max-old-space-size=192'];

export interface ApiOptions {
  /** Settings, on top of childEnv()'s: the API uses the embedded PostgreSQL unless given DATABASE_URL. */
  env?: Record<string, string>;
  /** Default: a free port. */
  port?: number;
  /** Flags for node itself (the bench passes --cpu-prof this way). */
  nodeArgs?: string[];
  /** 'keep': stdout and stderr are collected for output(); 'errors': only stderr, passed through. */
  logs?: 'keep' | 'errors';
}

export interface ApiProcess {
  child: ChildProcess;
  port: number;
  /** http://127.0.0.1:<port> */
  url: string;
  /** What the process has printed so far (logs: 'keep'). */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
}

const running = new Set<ChildProcess>();

/**
 * The compiled API, run as users run it (`node dist/main.js`), in a process of its
 * own; resolves once /health answers 200. For the tests that crash or stop it, the
 * retry lab and the bench.
 */
export async function startApi(options: ApiOptions = {}): Promise<ApiProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [...NODE_FLAGS, ...(options.nodeArgs ?? []), 'dist/main.js'],
    {
      cwd: projectRoot,
      env: childEnv({ PORT: String(port), ...options.env }),
      stdio: ['ignore', options.logs === 'errors' ? 'ignore' : 'pipe', 'pipe'],
    },
  );
  running.add(child);
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => {
    if (options.logs === 'errors') process.stderr.write(chunk);
    else output += chunk;
  });
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  const api = {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exited: () => exit,
  };

  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the API exited at start: ${output}`);
    const healthy = await fetch(`${api.url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (healthy) return api;
    await new Promise((r) => setTimeout(r, 100)); // polling /health: there is no event to wait for
  }
  child.kill('SIGKILL');
  throw new Error(`the API did not answer /health within 60 s: ${output}`);
}

/**
 * The environment of a process this project starts (the API, its CLIs): this
 * process's, without DATABASE_URL (unset, the child uses the embedded PostgreSQL;
 * a test run's own DATABASE_URL must not leak into it), in development mode with
 * info logs unless `env` says otherwise. With no processor unless `env` names one
 * (PROCESSOR_URL; '' for npm start's own, beside it): a child on a test database
 * would otherwise create a processor database there that nobody drops.
 */
export function childEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { DATABASE_URL: _notInherited, ...inherited } = process.env;
  return {
    ...inherited,
    NODE_ENV: 'development',
    LOG_LEVEL: 'info',
    PROCESSOR_URL: NO_PROCESSOR,
    // The labs and the chaos tests drive one merchant far past 100 requests a second.
    RATE_LIMIT_PER_SECOND: '0',
    ...env,
  };
}

/**
 * What a child API needs to run in production, as the benches run it: a sealing
 * key (any: nothing it seals outlives the run) and a processor key of its own
 * (production refuses the stand-in's test key).
 */
export function productionEnv(): Record<string, string> {
  return {
    NODE_ENV: 'production',
    SECRETS_KEY: randomBytes(32).toString('base64'),
    PROCESSOR_API_KEY: 'sk_processor_of_this_run',
  };
}

/** A processor URL that answers nothing: top-ups stay pending. */
export const NO_PROCESSOR = 'http://127.0.0.1:9';

/** Kills every API process started here that is still running (tests call it in afterAll). */
export function killApis(): void {
  for (const child of running) child.kill('SIGKILL');
}
