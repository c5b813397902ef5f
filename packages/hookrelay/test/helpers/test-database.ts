import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { openSqliteConnection } from '../../src/storage/sqlite/open-sqlite.js';

export type TestEngine = 'sqlite' | 'postgres';

/** A PostgreSQL server URL (any database on it); CI sets it, and without it only SQLite is tested. */
export const TEST_POSTGRES_URL = process.env['HOOKRELAY_TEST_POSTGRES_URL'] || null;

export const POSTGRES_SKIP_REASON = 'HOOKRELAY_TEST_POSTGRES_URL is not set: the PostgreSQL variants of the conformance suites are not run';

/** The engines every conformance suite runs on: `for (const engine of TEST_ENGINES) describe(...)`. */
export const TEST_ENGINES: readonly TestEngine[] = TEST_POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];

/** A database of its own for one test platform or harness, and a temp directory beside it. */
export interface TestDatabase {
  engine: TestEngine;
  /** HOOKRELAY_DATABASE_URL of this database. */
  url: string;
  /** A fresh directory: the SQLite file, or the master key with PostgreSQL (HOOKRELAY_DATA_DIR). */
  dir: string;
  /** Every row of every table, read through a connection of its own, in a stable order. */
  dump(): Promise<Record<string, unknown[]>>;
  /** Deletes the database and the directory. */
  drop(): Promise<void>;
}

export async function createTestDatabase(engine: TestEngine): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), `hookrelay-${engine}-`));
  if (engine === 'sqlite') {
    const path = join(dir, 'hookrelay.db');
    return { engine, url: `sqlite:${path}`, dir, dump: async () => dumpSqlite(path), drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  try {
    const name = await createPostgresDatabase();
    const url = postgresUrl(name);
    return {
      engine,
      url,
      dir,
      dump: () => dumpPostgres(url),
      async drop() {
        // FORCE ends connections a test left open (a killed server's, a pool not yet closed).
        await withAdminClient((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A TestDatabase for a PostgreSQL database made elsewhere than on TEST_POSTGRES_URL's server (a
 * private cluster a test starts itself), with a fresh directory beside it. drop() runs
 * `dropDatabase`, then removes the directory.
 */
export function postgresTestDatabase(url: string, dropDatabase: () => Promise<void>): TestDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-postgres-'));
  return {
    engine: 'postgres',
    url,
    dir,
    dump: () => dumpPostgres(url),
    async drop() {
      try {
        await dropDatabase();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function dumpSqlite(path: string): Record<string, unknown[]> {
  const connection = openSqliteConnection({ path, syncCommit: false });
  try {
    const tables = (connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    const dump: Record<string, unknown[]> = {};
    for (const table of tables) dump[table] = connection.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).all();
    return dump;
  } finally {
    connection.close();
  }
}

async function dumpPostgres(url: string): Promise<Record<string, unknown[]>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const tables = (await client.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).rows.map((t) => t.tablename);
    const dump: Record<string, unknown[]> = {};
    for (const table of tables) {
      // No rowid here, and heap order changes with updates: sort on the rows' full contents.
      const rows = (await client.query(`SELECT * FROM "${table}"`)).rows as unknown[];
      dump[table] = rows.map((row) => [JSON.stringify(row), row] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
    }
    return dump;
  } finally {
    await client.end();
  }
}

const DATABASE_PREFIX = 'hookrelay_t_';
/** Test databases older than this belong to a run that died before dropping them. */
const ABANDONED_AFTER_MS = 3_600_000;
let swept = false;
let icuAvailable = true;

/**
 * Creates hookrelay_t_<base36 time>_<random>. The databases use ICU's en-US collation where the
 * server has ICU, as production databases usually sort linguistically: a key column missing
 * COLLATE "C" then shows up as misordered pages, which a C-collated test server would hide.
 */
async function createPostgresDatabase(): Promise<string> {
  const name = `${DATABASE_PREFIX}${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  await withAdminClient(async (client) => {
    if (!swept) {
      swept = true;
      await dropAbandonedDatabases(client);
    }
    if (icuAvailable) {
      try {
        await client.query(`CREATE DATABASE "${name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`);
        return;
      } catch {
        icuAvailable = false; // a server built without ICU: its default collation will have to do
      }
    }
    await client.query(`CREATE DATABASE "${name}"`);
  });
  return name;
}

async function dropAbandonedDatabases(client: Client): Promise<void> {
  const { rows } = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'hookrelay\\_t\\_%'");
  for (const { datname } of rows) {
    const created = parseInt(datname.slice(DATABASE_PREFIX.length).split('_')[0] ?? '', 36);
    if (Number.isFinite(created) && Date.now() - created > ABANDONED_AFTER_MS) {
      await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  }
}

/** The database name in a PostgreSQL URL, e.g. to ALTER DATABASE it or find its backends. */
export function postgresDatabaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** The server's URL with another database name. */
function postgresUrl(database: string): string {
  const url = new URL(TEST_POSTGRES_URL!);
  url.pathname = '/' + database;
  return url.toString();
}

async function withAdminClient<T>(run: (client: Client) => Promise<T>): Promise<T> {
  if (!TEST_POSTGRES_URL) throw new Error(POSTGRES_SKIP_REASON);
  const client = new Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}
