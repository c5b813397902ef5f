import { sql, type Kysely } from 'kysely';
import type { Database } from './db-schema.js';
import type { DeliveryStore, IngestStore, Storage } from './storage.js';
import { createSqliteKysely, migrateSqlite, openSqliteConnection } from './sqlite/open-sqlite.js';
import { createPostgresKysely, createPostgresPool, migratePostgres } from './postgres/open-postgres.js';
import { PostgresDeliveryStore } from './postgres/postgres-delivery-store.js';
import { SqliteDeliveryStore } from './sqlite/sqlite-delivery-store.js';
import { CommitBell } from './sqlite/commit-bell.js';
import { SqliteHotPath } from './sqlite/sqlite-hot-path.js';
import { SqliteIngestStore } from './sqlite/sqlite-ingest-store.js';
import { PostgresIngestStore } from './postgres/postgres-ingest-store.js';
import { KyselyApplicationStore } from './stores/application-store.js';
import { KyselyEndpointStore } from './stores/endpoint-store.js';
import { KyselyEventTypeStore } from './stores/event-type-store.js';
import { KyselyMessageStore } from './stores/message-store.js';
import { KyselyAttemptStore } from './stores/attempt-store.js';
import { KyselyApiKeyStore } from './stores/api-key-store.js';
import { KyselyIdempotencyStore } from './stores/idempotency-store.js';
import { KyselyRetentionStore } from './stores/retention-store.js';
import { isPostgresUrl, sqlitePath, type HookrelayConfig } from '../config/config.js';
import type { SecretBox } from '../secrets/secret-box.js';

/** The settings that say which database to open and how. */
export type DatabaseSettings = Pick<HookrelayConfig, 'databaseUrl' | 'syncCommit' | 'pgPoolSize' | 'pgStatementTimeoutMs' | 'pgConnectTimeoutMs'>;

export interface OpenStorageOptions {
  database: DatabaseSettings;
  secretBox: SecretBox;
  /** Apply pending migrations first (the default); a dispatcher thread opening a migrated database skips it. */
  migrate?: boolean;
  /** PostgreSQL: a pooled connection failed while idle (it is replaced); worth a log line. */
  onIdleError?: (error: Error) => void;
  /**
   * PostgreSQL: this storage only leases, records outcomes and paces (a dispatcher's), so its
   * commits need not wait for the disk (see PostgresOptions.flushCommits). SQLite: no effect.
   */
  dispatcherOnly?: boolean;
  /**
   * SQLite: the shared memory of this process's commit bell (sqlite/commit-bell.ts), given to every
   * thread that writes to the file, so that each begins as soon as another's transaction ends.
   * PostgreSQL: no effect.
   */
  commitBell?: SharedArrayBuffer;
}

/** The one place that picks a storage engine from the database URL. */
export async function openStorage(options: OpenStorageOptions): Promise<Storage> {
  const { database } = options;
  if (isPostgresUrl(database.databaseUrl)) {
    const pool = createPostgresPool({
      url: database.databaseUrl,
      poolSize: database.pgPoolSize,
      statementTimeoutMs: database.pgStatementTimeoutMs,
      connectTimeoutMs: database.pgConnectTimeoutMs,
      flushCommits: options.dispatcherOnly !== true,
      ...(options.onIdleError ? { onIdleError: options.onIdleError } : {}),
    });
    try {
      if (options.migrate !== false) await migratePostgres(pool);
    } catch (error) {
      await pool.end();
      throw error;
    }
    const db = createPostgresKysely(pool);
    const engine: EngineStores = { engine: 'postgres', deliveries: new PostgresDeliveryStore(db, options.secretBox), ingest: new PostgresIngestStore(db) };
    return assembleStorage(engine, db, options.secretBox, async () => {
      if (!pool.ended) await pool.end();
    });
  }
  const connection = openSqliteConnection({ path: sqlitePath(database.databaseUrl), syncCommit: database.syncCommit });
  try {
    if (options.migrate !== false) await migrateSqlite(connection);
  } catch (error) {
    connection.close();
    throw error;
  }
  const db = createSqliteKysely(connection);
  const hotPath = new SqliteHotPath(db, connection, options.commitBell ? new CommitBell(options.commitBell) : null);
  const engine: EngineStores = { engine: 'sqlite', deliveries: new SqliteDeliveryStore(db, options.secretBox, hotPath), ingest: new SqliteIngestStore(hotPath) };
  return assembleStorage(engine, db, options.secretBox, async () => {
    if (connection.open) connection.close();
  });
}

/** Applies pending migrations to the configured database and closes it (`hookrelay migrate`). */
export async function migrateDatabase(database: DatabaseSettings): Promise<number[]> {
  if (isPostgresUrl(database.databaseUrl)) {
    const pool = createPostgresPool({ url: database.databaseUrl, poolSize: 1, statementTimeoutMs: database.pgStatementTimeoutMs, connectTimeoutMs: database.pgConnectTimeoutMs });
    try {
      return await migratePostgres(pool);
    } finally {
      await pool.end();
    }
  }
  const connection = openSqliteConnection({ path: sqlitePath(database.databaseUrl), syncCommit: true });
  try {
    return await migrateSqlite(connection);
  } finally {
    connection.close();
  }
}

/** The stores each engine implements its own way; the others are dialect-neutral Kysely. */
export interface EngineStores {
  engine: Storage['engine'];
  /** PostgreSQL: claims with SKIP LOCKED. SQLite: attempts recorded with prepared statements. */
  deliveries: DeliveryStore;
  /** SQLite: the group commit with prepared statements. */
  ingest: IngestStore;
}

/**
 * The stores over one Kysely instance. `release` closes the connection or pool underneath: Kysely
 * only destroys a driver it has used, and migrations (or nothing at all) may have been all that
 * ran on it, which would leave a pool holding the process open.
 */
export function assembleStorage({ engine, deliveries, ingest }: EngineStores, db: Kysely<Database>, secretBox: SecretBox, release: () => Promise<void>): Storage {
  return {
    engine,
    applications: new KyselyApplicationStore(db),
    endpoints: new KyselyEndpointStore(db, secretBox),
    eventTypes: new KyselyEventTypeStore(db),
    messages: new KyselyMessageStore(db, engine),
    attempts: new KyselyAttemptStore(db, engine),
    deliveries,
    ingest,
    apiKeys: new KyselyApiKeyStore(db),
    idempotency: new KyselyIdempotencyStore(db),
    retention: new KyselyRetentionStore(db),
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async close() {
      await db.destroy();
      await release();
    },
  };
}
