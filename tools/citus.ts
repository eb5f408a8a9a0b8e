import pg from 'pg';

/**
 * Databases on a Citus cluster, for the tests and the benchmark (CITUS_URL names a
 * coordinator whose database already lists its workers). A database of a Citus
 * cluster is one on every node, each with the extension, and the coordinator's
 * told where its workers are; then the service's migrations distribute the tables
 * (src/database/migrations/1764921600000-distribute-by-merchant.ts). Citus cannot
 * copy a template database (its maintenance daemon stays connected to each one),
 * so each is made and migrated afresh, in about 4 s.
 */
export interface CitusNode {
  host: string;
  port: number;
}

/** The workers the coordinator at `url` lists, or undefined when it is not a Citus coordinator. */
export async function citusWorkers(url: string): Promise<CitusNode[] | undefined> {
  return onDatabase(url, async (client) => {
    const { rows } = await client.query<{ citus: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`,
    );
    if (!rows[0].citus) return undefined;
    const workers = await client.query<{ host: string; port: number }>(
      `SELECT nodename AS host, nodeport AS port FROM pg_dist_node
        WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeid`,
    );
    return workers.rows;
  });
}

/** Creates `database` on the coordinator of `url` and on each worker, ready to be migrated. */
export async function createCitusDatabase(url: string, database: string): Promise<string> {
  const workers = (await citusWorkers(url)) ?? [];
  const coordinator = new URL(url);
  for (const node of [coordinatorNode(coordinator), ...workers]) {
    await onDatabase(on(coordinator, node, 'postgres'), (c) =>
      c.query(`CREATE DATABASE ${database}`),
    );
    await onDatabase(on(coordinator, node, database), (c) => c.query('CREATE EXTENSION citus'));
  }
  const created = on(coordinator, coordinatorNode(coordinator), database);
  // The tests inject faults with triggers (test/support/db-faults.ts), which Citus
  // allows on distributed tables only when told to.
  await onDatabase(url, (c) =>
    c.query(`ALTER DATABASE ${database} SET citus.enable_unsafe_triggers = on`),
  );
  await onDatabase(created, async (c) => {
    await c.query('SELECT citus_set_coordinator_host($1, $2)', [
      coordinator.hostname,
      Number(coordinator.port || 5432),
    ]);
    for (const worker of workers) {
      await c.query('SELECT citus_add_node($1, $2)', [worker.host, worker.port]);
    }
  });
  return created;
}

/** Drops `database` from the coordinator of `url` and from each of its workers. */
export async function dropCitusDatabase(url: string, database: string): Promise<void> {
  const workers = (await citusWorkers(url)) ?? [];
  const coordinator = new URL(url);
  for (const node of [coordinatorNode(coordinator), ...workers]) {
    await onDatabase(on(coordinator, node, 'postgres'), (c) =>
      c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`),
    );
  }
}

function coordinatorNode(url: URL): CitusNode {
  return { host: url.hostname, port: Number(url.port || 5432) };
}

/** `database` on `node`, with the coordinator URL's user and password. */
function on(coordinator: URL, node: CitusNode, database: string): string {
  const url = new URL(coordinator.toString());
  url.hostname = node.host;
  url.port = String(node.port);
  url.pathname = `/${database}`;
  return url.toString();
}

async function onDatabase<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('notice', () => undefined); // "Citus partially supports CREATE DATABASE"
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
