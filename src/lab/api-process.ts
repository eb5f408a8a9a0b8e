import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/**
 * How the API's node is started, here, in `npm start` and in the Dockerfile (a test
 * checks they agree). A 192 MB old generation: the app's live heap is about 30 MB,
 * and without a limit V8 lets garbage pile up to what a large machine allows (API RSS
 * 240-258 MB under load in npm run bench; 150-158 MB with it, at the same throughput).
 */
export const NODE_FLAGS = ['--max-old-space-size=192'];

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * The compiled API (dist/main.js) as a child process on `databaseUrl`, its logs
 * discarded, resolved once it answers /health. Used by the retry lab and the bench.
 * `nodeArgs` go to node itself (the bench passes --cpu-prof this way).
 */
export async function startApi(
  databaseUrl: string,
  port: number,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<ChildProcess> {
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(process.execPath, [...NODE_FLAGS, ...nodeArgs, main], {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error('the API did not start');
    const up = await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return child;
    await new Promise((r) => setTimeout(r, 100)); // polling /health
  }
  throw new Error('the API did not answer /health');
}
