import type { Migration } from '../../migrations/run-migrations.js';
import * as m0001 from './0001-initial.js';

/** Numbered migrations, applied in order; versions match the SQLite list one for one. */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', up: m0001.up },
];
