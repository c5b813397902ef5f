import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely';
import type { Database } from '../db-schema.js';
import { runMigrations, type MigrationConnection } from '../migrations/run-migrations.js';
import { SQLITE_MIGRATIONS } from './migrations/index.js';

export interface SqliteOptions {
  path: string;
  /** synchronous=FULL: every commit is fsynced (survives power loss); NORMAL survives a process crash. */
  syncCommit: boolean;
}

/**
 * Opens a connection with the pragmas every connection needs. WAL lets the API thread write while
 * the dispatcher thread reads; busy_timeout makes a writer wait for the other thread's commit
 * instead of failing with SQLITE_BUSY.
 */
export function openSqliteConnection(options: SqliteOptions): BetterSqlite3.Database {
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const connection = new BetterSqlite3(options.path);
  connection.pragma('journal_mode = WAL');
  connection.pragma(`synchronous = ${options.syncCommit ? 'FULL' : 'NORMAL'}`);
  connection.pragma('busy_timeout = 10000');
  connection.pragma('foreign_keys = ON');
  connection.pragma('cache_size = -65536');
  // The checkpointer thread (checkpointer.ts) keeps the WAL short so that checkpoints do not
  // stall the API or the dispatcher; this threshold (256 MiB of WAL) is only a backstop for when
  // it is not running, e.g. in `hookrelay migrate`.
  connection.pragma('wal_autocheckpoint = 65536');
  connection.pragma('temp_store = MEMORY');
  // Pages are read with pread, not through a memory map. A map makes every connection remap the
  // file as it grows and fault its pages in, and with several threads each remap shoots down the
  // other threads' TLBs: on this project's VMs that cost about 4 % of the CPU per delivery
  // (docs/benchmarks.md, session 14). The pages are in the page cache either way, and a read error
  // is an error code rather than a SIGBUS.
  connection.pragma('mmap_size = 0');
  return connection;
}

/** Prepared statements kept per connection; bounded because multi-row inserts vary in shape. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely's SQLite driver prepares every query anew; compiling a statement costs about as much as
 * running a small one, so hot-path queries reuse their prepared statement (LRU by SQL text).
 * Reuse is safe: better-sqlite3 runs each statement to completion synchronously.
 */
function withStatementCache(connection: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => connection.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (statement) {
        cache.delete(sql);
      } else {
        statement = connection.prepare(sql);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      }
      cache.set(sql, statement);
      return statement as unknown as SqliteStatement;
    },
  };
}

export function createSqliteKysely(connection: BetterSqlite3.Database): Kysely<Database> {
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(connection) }) });
}

/**
 * Applies pending migrations inside BEGIN IMMEDIATE, which takes SQLite's write lock first: two
 * processes starting together serialise here and the second sees the first one's work.
 */
export function migrateSqlite(connection: BetterSqlite3.Database): Promise<number[]> {
  const adapter: MigrationConnection = {
    exec: async (script) => void connection.exec(script),
    query: async (sql) => connection.prepare(sql).all() as Record<string, unknown>[],
  };
  return runMigrations(adapter, SQLITE_MIGRATIONS, ['BEGIN IMMEDIATE']);
}
