import { sql, type SelectQueryBuilder } from 'kysely';
import type { ListPage, PageRequest } from '../models.js';

export type SortOrder = 'ascending' | 'descending';

/** What one page query must do: keep keys strictly beyond `after`/`before`, sort, take `limit`. */
export interface PageQuery {
  /** Only keys greater than this. */
  after?: string;
  /** Only keys less than this. */
  before?: string;
  direction: 'asc' | 'desc';
  limit: number;
}

/**
 * Cursor pagination over a unique, sortable text key (time-sortable ids, or event type names), as
 * Svix does it: `iterator` is the last key of the page and continues in the list's order;
 * `prevIterator` is "-" + the first key and walks back. One extra row is fetched to tell `done`,
 * which always refers to the direction walked. A page walked backwards is queried in reverse
 * order and flipped, so it reads in the list's order like any other page.
 */
export async function paginate<T>(
  page: PageRequest,
  defaultOrder: SortOrder,
  keyOf: (item: T) => string,
  fetch: (query: PageQuery) => Promise<T[]>,
): Promise<ListPage<T>> {
  const order = page.order ?? defaultOrder;
  const raw = page.iterator ?? null;
  const backwards = raw !== null && raw.startsWith('-');
  const cursor = raw === null ? null : backwards ? raw.slice(1) : raw;
  // Walking forward in descending order, or backward in ascending order, goes down the keys.
  const goesDown = (order === 'descending') !== backwards;
  const query: PageQuery = { direction: goesDown ? 'desc' : 'asc', limit: page.limit + 1 };
  if (cursor !== null && cursor !== '') {
    if (goesDown) query.before = cursor;
    else query.after = cursor;
  }
  const rows = await fetch(query);
  const done = rows.length <= page.limit;
  const data = rows.slice(0, page.limit);
  if (backwards) data.reverse();
  return {
    data,
    iterator: data.length > 0 ? keyOf(data[data.length - 1]!) : null,
    prevIterator: data.length > 0 ? '-' + keyOf(data[0]!) : null,
    done,
  };
}

/** Applies a PageQuery to a select on `column` (a qualified or plain column name). */
export function applyPageQuery<DB, TB extends keyof DB, O>(qb: SelectQueryBuilder<DB, TB, O>, column: string, query: PageQuery): SelectQueryBuilder<DB, TB, O> {
  const ref = sql.ref(column);
  let out = qb;
  if (query.after !== undefined) out = out.where(ref as never, '>', query.after as never);
  if (query.before !== undefined) out = out.where(ref as never, '<', query.before as never);
  return out.orderBy(ref as never, query.direction).limit(query.limit);
}
