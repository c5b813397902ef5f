import { sql, type Kysely } from 'kysely';
import { hasPrefix } from '../../core/ids.js';
import type { Database, MessageRow } from '../db-schema.js';
import type { ListPage, Message, PageRequest } from '../models.js';
import type { MessageListFilter, MessageStore, Storage } from '../storage.js';
import { jsonArrayContains } from './json-array.js';
import { applyPageQuery, paginate, type PageQuery } from './paginate.js';
import { timeWindowOnIds } from './time-window.js';

/** What an expunged message's payload reads as, as Svix shows it: an empty object. */
const EXPUNGED_PAYLOAD = '{}';

export function messageFromRow(row: MessageRow): Message {
  return {
    id: row.id,
    appId: row.app_id,
    eventType: row.event_type,
    eventId: row.event_id,
    payload: row.payload,
    channels: row.channels === null ? null : (JSON.parse(row.channels) as string[]),
    tags: row.tags === null ? null : (JSON.parse(row.tags) as string[]),
    createdAt: row.created_at,
  };
}

/** `%"channel"%` with LIKE's wildcards escaped by `!`: matches the channel as a JSON array element. */
function channelLikePattern(channel: string): string {
  return '%' + JSON.stringify(channel).replace(/[!%_]/g, (c) => '!' + c) + '%';
}

export class KyselyMessageStore implements MessageStore {
  readonly #db: Kysely<Database>;
  readonly #engine: Storage['engine'];

  constructor(db: Kysely<Database>, engine: Storage['engine']) {
    this.#db = db;
    this.#engine = engine;
  }

  async find(appId: string, idOrEventId: string): Promise<Message | null> {
    const column = hasPrefix(idOrEventId, 'msg') ? 'id' : 'event_id';
    const row = await this.#db.selectFrom('messages').selectAll().where('app_id', '=', appId).where(column, '=', idOrEventId).executeTakeFirst();
    return row ? messageFromRow(row) : null;
  }

  list(appId: string, page: PageRequest, filter: MessageListFilter): Promise<ListPage<Message>> {
    const run = async (query: PageQuery): Promise<Message[]> => {
      let qb = this.#db.selectFrom('messages').selectAll().where('app_id', '=', appId);
      if (filter.eventTypes && filter.eventTypes.length > 0) qb = qb.where('event_type', 'in', filter.eventTypes);
      if (filter.channel !== undefined) qb = qb.where(sql<boolean>`${sql.ref('channels')} LIKE ${channelLikePattern(filter.channel)} ESCAPE '!'`);
      if (filter.tag !== undefined) qb = qb.where(jsonArrayContains(this.#engine, 'tags', filter.tag));
      qb = timeWindowOnIds(qb, 'msg', filter.before, filter.after);
      const rows = await applyPageQuery(qb, 'id', query).execute();
      return rows.map(messageFromRow);
    };
    const channel = filter.channel;
    // Newest first, as Svix lists messages.
    return paginate(page, 'descending', (m) => m.id, channel === undefined ? run : (query) => fetchMatching(run, query, (m) => m.channels?.includes(channel) ?? false));
  }

  async findMany(appId: string, ids: readonly string[]): Promise<Message[]> {
    if (ids.length === 0) return [];
    const rows = await this.#db.selectFrom('messages').selectAll().where('app_id', '=', appId).where('id', 'in', [...new Set(ids)]).execute();
    return rows.map(messageFromRow);
  }

  async expungeContent(appId: string, msgId: string, now: number): Promise<boolean> {
    // One statement: a claim that reads the message afterwards sees it expunged (loadContext
    // skips it). The first expunge time is kept, so a repeat changes nothing.
    const result = await this.#db
      .updateTable('messages')
      .set((eb) => ({ payload: EXPUNGED_PAYLOAD, expunged_at: eb.fn.coalesce('expunged_at', eb.val(now)) }))
      .where('app_id', '=', appId)
      .where('id', '=', msgId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }
}

/**
 * LIKE is only a prefilter: SQLite's LIKE ignores ASCII case, so "Foo" would match "foo". The exact
 * test runs here, and further batches are read until the page is full, so a page never comes up
 * short while matching rows remain.
 */
async function fetchMatching<T extends { id: string }>(run: (query: PageQuery) => Promise<T[]>, query: PageQuery, matches: (item: T) => boolean): Promise<T[]> {
  const out: T[] = [];
  const next: PageQuery = { ...query };
  for (;;) {
    const batch = await run(next);
    for (const item of batch) if (matches(item)) out.push(item);
    if (out.length >= query.limit || batch.length < next.limit) return out.slice(0, query.limit);
    const last = batch[batch.length - 1]!.id;
    if (next.direction === 'desc') next.before = last;
    else next.after = last;
  }
}
