import type { Kysely } from 'kysely';
import { hasPrefix, newId } from '../../core/ids.js';
import { notFound } from '../../core/errors.js';
import type { ApplicationRow, Database } from '../db-schema.js';
import type { Application, ListPage, PageRequest } from '../models.js';
import type { ApplicationFields, ApplicationStore } from '../storage.js';
import { mapConstraintErrors } from './constraint-violation.js';
import { applyPageQuery, paginate } from './paginate.js';

const UID_TAKEN = 'An application with this uid already exists';

function applicationFromRow(row: ApplicationRow): Application {
  return {
    id: row.id,
    uid: row.uid,
    name: row.name,
    rateLimit: row.rate_limit,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class KyselyApplicationStore implements ApplicationStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(fields: ApplicationFields): Promise<Application> {
    const now = Date.now();
    const row: ApplicationRow = {
      id: newId('app', now),
      uid: fields.uid,
      name: fields.name,
      rate_limit: fields.rateLimit,
      metadata: JSON.stringify(fields.metadata),
      created_at: now,
      updated_at: now,
    };
    await mapConstraintErrors(() => this.#db.insertInto('applications').values(row).execute(), UID_TAKEN);
    return applicationFromRow(row);
  }

  async find(idOrUid: string): Promise<Application | null> {
    // API validation keeps uids from looking like ids, so the shape of the key says which column to use.
    const column = hasPrefix(idOrUid, 'app') ? 'id' : 'uid';
    const row = await this.#db.selectFrom('applications').selectAll().where(column, '=', idOrUid).executeTakeFirst();
    return row ? applicationFromRow(row) : null;
  }

  list(page: PageRequest): Promise<ListPage<Application>> {
    // Svix lists applications oldest first unless told otherwise.
    return paginate(page, 'ascending', (a) => a.id, async (query) => {
      const rows = await applyPageQuery(this.#db.selectFrom('applications').selectAll(), 'id', query).execute();
      return rows.map(applicationFromRow);
    });
  }

  async update(id: string, fields: ApplicationFields): Promise<Application> {
    const row = await mapConstraintErrors(
      () =>
        this.#db
          .updateTable('applications')
          .set({ uid: fields.uid, name: fields.name, rate_limit: fields.rateLimit, metadata: JSON.stringify(fields.metadata), updated_at: Date.now() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst(),
      UID_TAKEN,
    );
    if (!row) throw notFound('Application');
    return applicationFromRow(row);
  }

  async delete(id: string): Promise<boolean> {
    // Children are deleted explicitly rather than by ON DELETE CASCADE: attempts have no foreign
    // key, and an explicit order does not depend on the engine enforcing foreign keys.
    return this.#db.transaction().execute(async (trx) => {
      const endpointIds = trx.selectFrom('endpoints').select('id').where('app_id', '=', id);
      // Through the endpoints: attempts are indexed by endpoint, and every attempt has one.
      await trx.deleteFrom('attempts').where('endpoint_id', 'in', endpointIds).execute();
      await trx.deleteFrom('deliveries').where('endpoint_id', 'in', endpointIds).execute();
      await trx.deleteFrom('endpoint_secrets').where('endpoint_id', 'in', endpointIds).execute();
      await trx.deleteFrom('endpoint_health').where('endpoint_id', 'in', endpointIds).execute();
      await trx.deleteFrom('endpoints').where('app_id', '=', id).execute();
      await trx.deleteFrom('messages').where('app_id', '=', id).execute();
      const result = await trx.deleteFrom('applications').where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    });
  }
}
