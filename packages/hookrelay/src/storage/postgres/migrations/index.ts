import type { Migration } from '../../migrations/run-migrations.js';
import * as m0001 from './0001-initial.js';
import * as m0002 from './0002-rate-limit-buckets.js';
import * as m0003 from './0003-message-expunged-at.js';
import * as m0004 from './0004-endpoint-health.js';
import * as m0005 from './0005-claim-function.js';
import * as m0006 from './0006-claim-by-primary-keys.js';
import * as m0008 from './0008-lease-behind-primary-key-fences.js';
import * as m0009 from './0009-claim-endpoint-by-endpoint.js';

/**
 * Numbered migrations, applied in order. A version means the same change on both engines; one that
 * only PostgreSQL needs (5, 6, 8 and 9, the claim function and its index) has no SQLite counterpart, and one only
 * SQLite needs (7, an index for its claim; 10, its leased deliveries' status and index) none here.
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', up: m0001.up },
  { version: 2, name: 'rate-limit-buckets', up: m0002.up },
  { version: 3, name: 'message-expunged-at', up: m0003.up },
  { version: 4, name: 'endpoint-health', up: m0004.up },
  { version: 5, name: 'claim-function', up: m0005.up },
  { version: 6, name: 'claim-by-primary-keys', up: m0006.up },
  { version: 8, name: 'lease-behind-primary-key-fences', up: m0008.up },
  { version: 9, name: 'claim-endpoint-by-endpoint', up: m0009.up },
];
