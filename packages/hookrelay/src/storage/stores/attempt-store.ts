import { sql, type Kysely } from 'kysely';
import type { AttemptRow, Database } from '../db-schema.js';
import type { Attempt, DeliveryStatus, ListPage, PageRequest, TriggerType } from '../models.js';
import type { AttemptListFilter, AttemptStore, Storage } from '../storage.js';
import { jsonArrayContains } from './json-array.js';
import { applyPageQuery, paginate } from './paginate.js';
import { timeWindowOnIds } from './time-window.js';

export function attemptFromRow(row: AttemptRow): Attempt {
  return {
    id: row.id,
    msgId: row.msg_id,
    endpointId: row.endpoint_id,
    appId: row.app_id,
    url: row.url,
    status: row.status as DeliveryStatus,
    responseStatusCode: row.response_status_code,
    response: row.response,
    responseDurationMs: row.response_duration_ms,
    triggerType: row.trigger_type as TriggerType,
    errorCode: row.error_code,
    createdAt: row.created_at,
  };
}

export class KyselyAttemptStore implements AttemptStore {
  readonly #db: Kysely<Database>;
  readonly #engine: Storage['engine'];

  constructor(db: Kysely<Database>, engine: Storage['engine']) {
    this.#db = db;
    this.#engine = engine;
  }

  listByEndpoint(appId: string, endpointId: string, page: PageRequest, filter: AttemptListFilter): Promise<ListPage<Attempt>> {
    return this.#list(page, filter, { app_id: appId, endpoint_id: endpointId });
  }

  listByMessage(appId: string, msgId: string, page: PageRequest, filter: AttemptListFilter): Promise<ListPage<Attempt>> {
    return this.#list(page, filter, { app_id: appId, msg_id: msgId });
  }

  async find(appId: string, msgId: string, attemptId: string): Promise<Attempt | null> {
    const row = await this.#db
      .selectFrom('attempts')
      .selectAll()
      .where('id', '=', attemptId)
      .where('app_id', '=', appId)
      .where('msg_id', '=', msgId)
      .executeTakeFirst();
    return row ? attemptFromRow(row) : null;
  }

  #list(page: PageRequest, filter: AttemptListFilter, scope: { app_id: string; endpoint_id?: string; msg_id?: string }): Promise<ListPage<Attempt>> {
    // Newest first, as Svix lists attempts.
    return paginate(page, 'descending', (a) => a.id, async (query) => {
      let qb = this.#db.selectFrom('attempts').selectAll().where('app_id', '=', scope.app_id);
      if (scope.endpoint_id !== undefined) qb = qb.where('endpoint_id', '=', scope.endpoint_id);
      if (scope.msg_id !== undefined) qb = qb.where('msg_id', '=', scope.msg_id);
      if (filter.endpointId !== undefined) qb = qb.where('endpoint_id', '=', filter.endpointId);
      if (filter.status !== undefined) qb = qb.where('status', '=', filter.status);
      if (filter.statusCodeClass !== undefined) {
        // As Svix: class 0 is "no response" (0 to 99; Hookrelay records 0), class N is N to N+99.
        const low = filter.statusCodeClass;
        qb = qb.where('response_status_code', '>=', low).where('response_status_code', '<=', low + 99);
      }
      const { eventTypes, channel, tag } = filter;
      const byEventType = eventTypes !== undefined && eventTypes.length > 0;
      if (byEventType || channel !== undefined || tag !== undefined) {
        // Filters on the attempt's message, checked row by row through its primary key, so the
        // page query still walks the attempts in id order and stops once the page is full. An
        // attempt whose message is gone (retention) matches none of them.
        qb = qb.where((eb) => {
          let message = eb.selectFrom('messages').select(sql.lit(1).as('one')).whereRef('messages.id', '=', 'attempts.msg_id').where('messages.app_id', '=', scope.app_id);
          if (byEventType) message = message.where('messages.event_type', 'in', eventTypes);
          if (channel !== undefined) message = message.where(jsonArrayContains(this.#engine, 'messages.channels', channel));
          if (tag !== undefined) message = message.where(jsonArrayContains(this.#engine, 'messages.tags', tag));
          return eb.exists(message);
        });
      }
      qb = timeWindowOnIds(qb, 'atmpt', filter.before, filter.after);
      const rows = await applyPageQuery(qb, 'id', query).execute();
      return rows.map(attemptFromRow);
    });
  }
}
