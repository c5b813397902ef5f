import { sql, type RawBuilder } from 'kysely';
import type { Storage } from '../storage.js';

/**
 * Whether the JSON array in a text column (channels, tags: written by JSON.stringify, or NULL)
 * holds `value` as an element: an exact, case-sensitive match, evaluated by the database so that
 * pagination sees only matching rows. NULL holds nothing. The only engine-specific SQL of the
 * list filters: SQLite walks the array with json_each, PostgreSQL tests jsonb containment.
 */
export function jsonArrayContains(engine: Storage['engine'], column: string, value: string): RawBuilder<boolean> {
  const ref = sql.ref(column);
  return engine === 'postgres'
    ? sql<boolean>`(${ref})::jsonb @> jsonb_build_array(${value}::text)`
    : sql<boolean>`EXISTS (SELECT 1 FROM json_each(${ref}) WHERE json_each.value = ${value})`;
}
