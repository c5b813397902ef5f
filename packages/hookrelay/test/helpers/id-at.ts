import { randomBytes } from 'node:crypto';
import { encodeBase62, type IdPrefix } from '../../src/core/ids.js';

/**
 * An id as if created at `millis` (same layout as core/ids.ts: 6 bytes of time, 14 random).
 * newId cannot make one in the past: it keeps the ids of a process ordered, so it never goes
 * back before the newest id it made.
 */
export function idAt(prefix: IdPrefix, millis: number): string {
  const bytes = Buffer.alloc(20);
  bytes.writeUIntBE(millis, 0, 6);
  randomBytes(14).copy(bytes, 6);
  return `${prefix}_${encodeBase62(bytes)}`;
}
