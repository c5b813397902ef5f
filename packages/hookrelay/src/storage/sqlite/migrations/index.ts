import type { Migration } from '../../migrations/run-migrations.js';
import * as m0001 from './0001-initial.js';
import * as m0002 from './0002-rate-limit-buckets.js';
import * as m0003 from './0003-message-expunged-at.js';
import * as m0004 from './0004-endpoint-health.js';
import * as m0007 from './0007-due-by-endpoint.js';
import * as m0010 from './0010-sending-deliveries.js';

/**
 * Numbered migrations, applied in order; a migration is never edited once released. A version
 * means the same change on both engines; 5, 6, 8 and 9 are PostgreSQL's alone, 7 and 10 are SQLite's alone.
 */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', up: m0001.up },
  { version: 2, name: 'rate-limit-buckets', up: m0002.up },
  { version: 3, name: 'message-expunged-at', up: m0003.up },
  { version: 4, name: 'endpoint-health', up: m0004.up },
  { version: 7, name: 'due-by-endpoint', up: m0007.up },
  { version: 10, name: 'sending-deliveries', up: m0010.up },
];
