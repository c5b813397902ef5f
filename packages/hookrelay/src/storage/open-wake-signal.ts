import { isPostgresUrl } from '../config/config.js';
import type { DatabaseSettings } from './open-storage.js';
import { PostgresWakeSignal, type PostgresWakeSignalOptions } from './postgres/postgres-wake-signal.js';
import { LocalWakeSignal, type WakeSignal } from './wake-signal.js';

export type WakeSignalOptions = Omit<PostgresWakeSignalOptions, 'url'>;

/**
 * The wake signal that suits the database: LISTEN/NOTIFY on PostgreSQL, which reaches every
 * process sharing it; in-process only on SQLite, where other processes on the same file find new
 * work by their idle poll (scale-out is PostgreSQL's job).
 */
export async function openWakeSignal(database: Pick<DatabaseSettings, 'databaseUrl'>, options: WakeSignalOptions): Promise<WakeSignal> {
  if (isPostgresUrl(database.databaseUrl)) return PostgresWakeSignal.open({ url: database.databaseUrl, ...options });
  return new LocalWakeSignal();
}
