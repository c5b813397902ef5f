import { sql, type Kysely } from 'kysely';
import type { Database } from './db-schema.js';
import type { Storage } from './storage.js';
import { createSqliteKysely, migrateSqlite, openSqliteConnection } from './sqlite/open-sqlite.js';
import { KyselyApplicationStore } from './stores/application-store.js';
import { KyselyEndpointStore } from './stores/endpoint-store.js';
import { KyselyEventTypeStore } from './stores/event-type-store.js';
import { KyselyMessageStore } from './stores/message-store.js';
import { KyselyAttemptStore } from './stores/attempt-store.js';
import { KyselyDeliveryStore } from './stores/delivery-store.js';
import { KyselyIngestStore } from './stores/ingest-store.js';
import { KyselyApiKeyStore } from './stores/api-key-store.js';
import { KyselyIdempotencyStore } from './stores/idempotency-store.js';
import { sqlitePath } from '../config/config.js';
import type { SecretBox } from '../secrets/secret-box.js';
import { HookrelayError } from '../core/errors.js';

export interface OpenStorageOptions {
  databaseUrl: string;
  syncCommit: boolean;
  secretBox: SecretBox;
  /** Apply pending migrations first (the default); a worker opening an already-migrated file skips it. */
  migrate?: boolean;
}

/** The one place that picks a storage engine from the database URL. */
export function openStorage(options: OpenStorageOptions): Storage {
  if (!options.databaseUrl.startsWith('sqlite:')) {
    throw new HookrelayError('unavailable', 'PostgreSQL storage is not available yet; use sqlite:<path>');
  }
  const connection = openSqliteConnection({ path: sqlitePath(options.databaseUrl), syncCommit: options.syncCommit });
  if (options.migrate !== false) migrateSqlite(connection);
  const db = createSqliteKysely(connection);
  return assembleStorage('sqlite', db, options.secretBox);
}

export function assembleStorage(engine: Storage['engine'], db: Kysely<Database>, secretBox: SecretBox): Storage {
  return {
    engine,
    applications: new KyselyApplicationStore(db),
    endpoints: new KyselyEndpointStore(db, secretBox),
    eventTypes: new KyselyEventTypeStore(db),
    messages: new KyselyMessageStore(db),
    attempts: new KyselyAttemptStore(db),
    deliveries: new KyselyDeliveryStore(db, secretBox),
    ingest: new KyselyIngestStore(db),
    apiKeys: new KyselyApiKeyStore(db),
    idempotency: new KyselyIdempotencyStore(db),
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async close() {
      await db.destroy();
    },
  };
}
