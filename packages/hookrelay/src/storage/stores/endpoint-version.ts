import { sql, type RawBuilder } from 'kysely';

/**
 * An endpoint's `updated_at` is also its version: dispatchers cache its delivery target (URL,
 * headers, keys, disabled) and reuse the cached copy while a delivery carries the same updated_at.
 * Two changes within one millisecond must still give two versions, or a target cached between
 * them would be reused after the second (an old URL or key, an endpoint still enabled), so a
 * change sets `now`, or one more than the current value when that is not older.
 *
 * NEXT_ENDPOINT_VERSION_SQL is the same expression for prepared statements: bind `now` twice.
 */
export function nextEndpointVersion(now: number): RawBuilder<number> {
  return sql<number>`CASE WHEN updated_at >= ${now} THEN updated_at + 1 ELSE ${now} END`;
}

export const NEXT_ENDPOINT_VERSION_SQL = 'CASE WHEN updated_at >= ? THEN updated_at + 1 ELSE ? END';
