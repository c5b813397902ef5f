import type { Kysely } from 'kysely';
import type { AttemptRow, Database } from '../db-schema.js';
import type { Attempt, DeliveryStatus, ListPage, PageRequest, TriggerType } from '../models.js';
import type { AttemptListFilter, AttemptStore } from '../storage.js';
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

  constructor(db: Kysely<Database>) {
    this.#db = db;
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
      qb = timeWindowOnIds(qb, 'atmpt', filter.before, filter.after);
      const rows = await applyPageQuery(qb, 'id', query).execute();
      return rows.map(attemptFromRow);
    });
  }
}
