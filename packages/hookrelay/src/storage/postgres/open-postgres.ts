import { Kysely, PostgresDialect } from 'kysely';
import { Pool, TypeOverrides, types as pgTypes } from 'pg';
import type { Database } from '../db-schema.js';
import { runMigrations } from '../migrations/run-migrations.js';
import { POSTGRES_MIGRATIONS } from './migrations/index.js';

export interface PostgresOptions {
  /** postgres:// or postgresql:// URL, as node-postgres reads it (sslmode etc. in the query). */
  url: string;
  /** Connections this pool opens at most. */
  poolSize: number;
  /** Server-side limit for one statement, in ms; 0 sends none, so the server's own setting applies. */
  statementTimeoutMs: number;
  /** How long opening a connection may take, in ms; 0: no limit. */
  connectTimeoutMs: number;
  /** A pooled connection failed while idle (server restart, network): it is dropped and replaced. */
  onIdleError?: (error: Error) => void;
  /**
   * false: commits on these connections return before their WAL is flushed to disk
   * (synchronous_commit = off). Only for a pool whose writes a server crash may take back at no
   * cost but a repeated delivery: a dispatcher's leases and outcomes. Never for acceptance.
   */
  flushCommits?: boolean;
}

/**
 * node-postgres returns int8 (BIGINT: our epoch-ms timestamps, identity ids, count(*)) and numeric
 * (sum, avg) as strings, because they can exceed 2^53. Ours never do (epoch ms reaches 2^53 in
 * the year 287396), and the stores compare and add them as numbers, as they come from SQLite.
 * Per pool, not through pg.types: other pg users in the process keep their parsers.
 */
function numberTypes(): TypeOverrides {
  const types = new TypeOverrides();
  const toNumber = (value: string) => Number(value);
  types.setTypeParser(pgTypes.builtins.INT8, toNumber);
  types.setTypeParser(pgTypes.builtins.NUMERIC, toNumber);
  return types;
}

export function createPostgresPool(options: PostgresOptions): Pool {
  const pool = new Pool({
    connectionString: options.url,
    max: options.poolSize,
    // Sent in the startup packet, so every pooled connection has it without an extra round trip.
    statement_timeout: options.statementTimeoutMs,
    ...(options.flushCommits === false ? { options: '-c synchronous_commit=off' } : {}),
    application_name: 'hookrelay',
    // Without these, a network that silently drops packets hangs a connect (or a query on an
    // idle connection) until the kernel gives up, minutes later.
    connectionTimeoutMillis: options.connectTimeoutMs,
    keepAlive: true,
    types: numberTypes(),
  });
  // Without a listener, an idle connection dropped by the server would crash the process; the pool
  // has already discarded it and opens a fresh one on demand.
  pool.on('error', (error) => {
    // pg-pool attaches the failed client to the error: logged as is, every line of an outage would
    // dump the whole connection object, its cancel key included.
    delete (error as Error & { client?: unknown }).client;
    options.onIdleError?.(error);
  });
  // pg-pool listens for errors only on idle clients, and Kysely adds no listener to a client it has
  // checked out: when the server dies, such a client emits 'error' and, unheard, that kills the
  // process. The query in flight fails by itself, and the pool discards the broken client when it
  // is released, so the event needs no handling beyond being heard.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export function createPostgresKysely(pool: Pool): Kysely<Database> {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Key of the advisory lock migrations hold: arbitrary, but the same in every Hookrelay version. */
const MIGRATION_LOCK_KEY = 4_862_013_251;

/**
 * Applies pending migrations on one connection in one transaction under a transaction-scoped
 * advisory lock: processes starting together wait for each other there, and the lock goes with
 * the commit or rollback, even if the process dies.
 */
export async function migratePostgres(pool: Pool): Promise<number[]> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    return await runMigrations(
      {
        exec: async (script) => void (await client.query(script)),
        query: async (sql) => (await client.query(sql)).rows as Record<string, unknown>[],
      },
      POSTGRES_MIGRATIONS,
      // No statement timeout here: waiting for another process's migration, or a migration of a
      // large table, may rightly take longer than any one query of the running service.
      ['BEGIN', 'SET LOCAL statement_timeout = 0', `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`],
    );
  } catch (error) {
    failed = error as Error;
    throw error;
  } finally {
    // A connection that failed mid-migration may be in any state: the pool closes it instead of reusing it.
    client.release(failed);
  }
}
