import type { Migration } from '../../migrations/run-migrations.js';
import * as m0001 from './0001-initial.js';

/** Numbered migrations, applied in order; a migration is never edited once released. */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', up: m0001.up },
];
