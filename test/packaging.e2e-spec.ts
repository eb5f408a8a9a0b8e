import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../src/config/config.js';
import { NODE_FLAGS } from '../tools/api-process.js';

/**
 * There is no Docker engine where the tests run, so the files are checked
 * against the app instead: the variables compose sets are the ones the app
 * reads, with values it accepts, and DATABASE_URL points at the compose database.
 */
const root = path.resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

interface Compose {
  services: Record<
    string,
    {
      image?: string;
      build?: unknown;
      environment?: Record<string, string>;
      depends_on?: Record<string, { condition: string }>;
      ports?: string[];
      healthcheck?: unknown;
      command?: string[];
      volumes?: string[];
    }
  >;
}

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as Compose;
  const api = compose.services.api;
  const db = compose.services.postgres;

  it('has a PostgreSQL with a health check and an API built from the Dockerfile that waits for it', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'api',
      'postgres',
      'processor',
      'processor-db',
    ]);
    expect(db.image).toMatch(/^postgres:\d+/);
    expect(db.healthcheck).toBeDefined();
    expect(api.build).toBe('.');
    expect(api.depends_on).toEqual({
      postgres: { condition: 'service_healthy' },
      processor: { condition: 'service_healthy' },
    });
  });

  it('runs the card processor from the same image, on a database of its own, at the PROCESSOR_URL the API is given', () => {
    const processor = compose.services.processor;
    const processorDb = compose.services['processor-db'];
    const processorUrl = new URL(api.environment!.PROCESSOR_URL);
    const dbUrl = new URL(processor.environment!.DATABASE_URL);

    expect(processor.build).toBe('.');
    expect(processor.command).toEqual(['node', 'dist/processor/main.js']);
    expect(processor.healthcheck).toBeDefined();
    expect(processorUrl.hostname).toBe('processor');
    expect(processorUrl.port).toBe(processor.environment!.PORT);
    expect(processor.environment!.HOST).toBe('0.0.0.0');
    // The image runs in production: the processor serves only its callers' keys, the API's among them.
    expect(processor.environment!.PROCESSOR_API_KEYS.split(',')).toContain(
      loadConfig(api.environment).PROCESSOR_API_KEY,
    );
    expect(dbUrl.hostname).toBe('processor-db');
    expect(decodeURIComponent(dbUrl.username)).toBe(processorDb.environment!.POSTGRES_USER);
    expect(dbUrl.pathname).toBe(`/${processorDb.environment!.POSTGRES_DB}`);
    expect(dbUrl.hostname).not.toBe(new URL(api.environment!.DATABASE_URL).hostname);
  });

  it('sets only variables the app reads, with values its config accepts', () => {
    const env = api.environment ?? {};
    for (const name of Object.keys(env)) expect(CONFIG_KEYS).toContain(name);
    expect(() => loadConfig(env)).not.toThrow();
  });

  it('points DATABASE_URL at the compose database with its credentials', () => {
    const url = new URL(api.environment!.DATABASE_URL);
    const dbEnv = db.environment!;
    expect(url.hostname).toBe('postgres');
    expect(url.port).toBe('5432');
    expect(decodeURIComponent(url.username)).toBe(dbEnv.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(dbEnv.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${dbEnv.POSTGRES_DB}`);
  });

  it('keeps DATA_DIR (the generated key that seals secrets at rest) in a volume: a new container opens what the last one sealed', () => {
    const { DATA_DIR } = loadConfig(api.environment);
    expect(api.volumes).toContain(`apidata:${path.posix.join('/app', DATA_DIR)}`);
  });

  it('publishes the port the app listens on, on an address reachable from outside', () => {
    const { PORT, HOST } = loadConfig(api.environment);
    expect(api.ports).toContain(`${PORT}:${PORT}`);
    expect(['0.0.0.0', '::']).toContain(HOST);
  });
});

describe('npm start', () => {
  it('starts node with the same flags as the Dockerfile and the bench', () => {
    const { scripts } = JSON.parse(read('package.json')) as { scripts: { start: string } };
    expect(scripts.start).toContain(`node ${NODE_FLAGS.join(' ')} dist/main.js`);
  });
});

/** The Node.js majors package.json's engines names (`^22.12.0 || ...`). */
const engineLines = () =>
  [
    ...(JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node.matchAll(
      /\^(\d+)\./g,
    ),
  ].map((m) => m[1]);

/** The lines .ci/run installs from the npm registry and runs npm test on. */
const ciNodeLines = () =>
  /NODE_LINES="\$\{CI_NODE_LINES:-([\d ]+)\}"/.exec(read('.ci/run'))![1].split(' ');

describe('Node.js lines', () => {
  it('engines names the lines CI tests: 20 (the machine CI runs on) and those .ci/run installs', () => {
    expect(ciNodeLines()).toEqual(['22', '24', '26']);
    expect(engineLines()).toEqual(['20', ...ciNodeLines()]);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.trim() && !line.trim().startsWith('#'));
  const last = (keyword: string) => instructions.filter((l) => l.startsWith(keyword)).at(-1) ?? '';

  it('builds in stages on a Node.js line CI tests on (never the end-of-life 20)', () => {
    const froms = instructions.filter((l) => l.startsWith('FROM '));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(ciNodeLines()).toContain(/node:(\d+)\b/.exec(from)?.[1]);
  });

  it('runs the compiled app as a non-root user, with a health check, on the exposed port', () => {
    expect(last('USER')).toMatch(/^USER (?!root)\w+/);
    expect(last('HEALTHCHECK')).toContain('/health');
    expect(last('CMD')).toContain('dist/main.js');
    for (const flag of NODE_FLAGS) expect(last('CMD')).toContain(`"${flag}"`);
    const env = Object.fromEntries(
      [...last('ENV').matchAll(/(\w+)=(\S+)/g)].map(([, name, value]) => [name, value]),
    );
    // Production, where the sealing key is the operator's to give (loadConfig refuses without it).
    expect(env.NODE_ENV).toBe('production');
    expect(() => loadConfig(env)).toThrow(/SECRETS_KEY is required in production/);
    const config = loadConfig({ ...env, SECRETS_KEY: Buffer.alloc(32).toString('base64') });
    expect(last('EXPOSE')).toBe(`EXPOSE ${config.PORT}`);
    // The API listens on localhost unless told otherwise: unreachable from outside.
    expect(['0.0.0.0', '::']).toContain(config.HOST);
    // DATA_DIR exists, and the unprivileged user may write there (the generated key, outside production).
    expect(dockerfile).toMatch(/mkdir -p \/app\/\.data && chown node:node \/app\/\.data/);
    expect(dockerfile).toMatch(/npm prune --omit=dev|npm ci --omit=dev/);
    // The build compiles the processor too: its sources and config reach the build stage.
    expect(dockerfile).toMatch(/^COPY processor \.\/processor$/m);
    expect(dockerfile).toMatch(/^COPY .*tsconfig\.processor\.json/m);
  });

  it('keeps every package the compiled app imports (the image prunes dev dependencies)', () => {
    const { dependencies } = JSON.parse(read('package.json')) as {
      dependencies: Record<string, string>;
    };
    const files = readdirSync(path.join(root, 'dist'), { recursive: true, encoding: 'utf8' });
    const imported = new Set<string>();
    for (const file of files.filter((f) => f.endsWith('.js'))) {
      const code = read(path.join('dist', file));
      for (const [, specifier] of code.matchAll(
        /(?:\bfrom|\bimport\(?)\s*['"]([^'"./][^'"]*)['"]/g,
      )) {
        if (specifier.startsWith('node:')) continue;
        const parts = specifier.split('/');
        imported.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]);
      }
    }
    expect(imported.size).toBeGreaterThan(5);
    expect([...imported].filter((name) => !Object.hasOwn(dependencies, name)).sort()).toEqual([]);
  });

  it('is not sent node_modules, dist, build or local data', () => {
    const ignored = read('.dockerignore').split('\n');
    expect(ignored).toEqual(
      expect.arrayContaining(['node_modules', 'dist', 'build', '.data', '.git']),
    );
  });

  it('ships no demo tooling: the app never imports tools/, bench/ or test/, which the image leaves out', () => {
    const sources = readdirSync(path.join(root, 'src'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
      .map((f) => path.join('src', f));
    const reaching = sources.filter((file) =>
      /from '(?:\.\.\/)+(?:tools|bench|test)\//.test(read(file)),
    );
    expect(sources.length).toBeGreaterThan(50);
    expect(reaching).toEqual([]);
  });
});

describe('the client package (client/)', () => {
  it('packs its build, its types and its source, without tests', () => {
    // npm test built client/dist first (pretest); --ignore-scripts: no rebuild here.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: path.join(root, 'client'),
      encoding: 'utf8',
    });
    const [pack] = JSON.parse(out) as [{ name: string; files: { path: string }[] }];
    const files = pack.files.map((f) => f.path);
    expect(pack.name).toBe('@idempotent-payments/client');
    expect(files).toEqual(
      expect.arrayContaining([
        'README.md',
        'package.json',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/schema.d.ts',
        'src/client.ts',
      ]),
    );
    expect(files.filter((f) => f.includes('.spec.'))).toEqual([]);
    const manifest = JSON.parse(read('client/package.json'));
    expect(manifest.exports['.']).toEqual({
      types: './dist/index.d.ts',
      default: './dist/index.js',
    });
  });
});
