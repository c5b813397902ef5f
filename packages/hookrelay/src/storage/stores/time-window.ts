import { sql, type SelectQueryBuilder } from 'kysely';
import { idLowerBoundAt, type IdPrefix } from '../../core/ids.js';

/**
 * An id's embedded time can differ from the row's created_at by a millisecond or so (they are
 * read from the clock separately). The id bound, widened by this much, lets the (…, id) index
 * narrow the scan; the exact created_at test then decides.
 */
const ID_CLOCK_SLACK_MS = 1_000;

/** Keeps rows created strictly before `before` and strictly after `after` (epoch ms). */
export function timeWindowOnIds<DB, TB extends keyof DB, O>(
  qb: SelectQueryBuilder<DB, TB, O>,
  prefix: IdPrefix,
  before: number | undefined,
  after: number | undefined,
): SelectQueryBuilder<DB, TB, O> {
  let out = qb;
  if (before !== undefined) {
    out = out.where(sql.ref('id') as never, '<', idLowerBoundAt(prefix, before + ID_CLOCK_SLACK_MS) as never);
    out = out.where(sql.ref('created_at') as never, '<', before as never);
  }
  if (after !== undefined) {
    out = out.where(sql.ref('id') as never, '>=', idLowerBoundAt(prefix, Math.max(0, after - ID_CLOCK_SLACK_MS)) as never);
    out = out.where(sql.ref('created_at') as never, '>', after as never);
  }
  return out;
}
