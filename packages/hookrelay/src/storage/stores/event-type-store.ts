import type { Kysely } from 'kysely';
import { notFound } from '../../core/errors.js';
import type { Database, EventTypeRow } from '../db-schema.js';
import type { EventType, ListPage, PageRequest } from '../models.js';
import type { EventTypeFields, EventTypeStore } from '../storage.js';
import { mapConstraintErrors } from './constraint-violation.js';
import { applyPageQuery, paginate } from './paginate.js';

function eventTypeFromRow(row: EventTypeRow): EventType {
  return {
    name: row.name,
    description: row.description,
    archived: row.archived === 1,
    deprecated: row.deprecated === 1,
    schemas: row.schemas === null ? null : (JSON.parse(row.schemas) as unknown),
    featureFlag: row.feature_flag,
    groupName: row.group_name,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function fieldColumns(fields: EventTypeFields) {
  return {
    description: fields.description,
    archived: fields.archived ? 1 : 0,
    deprecated: fields.deprecated ? 1 : 0,
    schemas: fields.schemas === null || fields.schemas === undefined ? null : JSON.stringify(fields.schemas),
    feature_flag: fields.featureFlag,
    group_name: fields.groupName,
  };
}

export class KyselyEventTypeStore implements EventTypeStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(name: string, fields: EventTypeFields): Promise<EventType> {
    const now = Date.now();
    const row: EventTypeRow = { name, ...fieldColumns(fields), created_at: now, updated_at: now };
    await mapConstraintErrors(() => this.#db.insertInto('event_types').values(row).execute(), 'An event type with this name already exists');
    return eventTypeFromRow(row);
  }

  async find(name: string): Promise<EventType | null> {
    const row = await this.#db.selectFrom('event_types').selectAll().where('name', '=', name).executeTakeFirst();
    return row ? eventTypeFromRow(row) : null;
  }

  list(page: PageRequest & { includeArchived: boolean }): Promise<ListPage<EventType>> {
    // Event types page by name, alphabetically, as in Svix.
    return paginate(page, 'ascending', (e) => e.name, async (query) => {
      let qb = this.#db.selectFrom('event_types').selectAll();
      if (!page.includeArchived) qb = qb.where('archived', '=', 0);
      const rows = await applyPageQuery(qb, 'name', query).execute();
      return rows.map(eventTypeFromRow);
    });
  }

  async upsert(name: string, fields: EventTypeFields): Promise<{ eventType: EventType; created: boolean }> {
    const updated = await this.#updateRow(name, fields);
    if (updated) return { eventType: updated, created: false };
    try {
      return { eventType: await this.create(name, fields), created: true };
    } catch (error) {
      // Another request created it between our update and insert: PUT semantics make ours an update.
      const retried = await this.#updateRow(name, fields);
      if (retried) return { eventType: retried, created: false };
      throw error;
    }
  }

  async update(name: string, fields: EventTypeFields): Promise<EventType> {
    const row = await this.#updateRow(name, fields);
    if (!row) throw notFound('Event type');
    return row;
  }

  async archive(name: string): Promise<boolean> {
    const result = await this.#db.updateTable('event_types').set({ archived: 1, updated_at: Date.now() }).where('name', '=', name).executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async #updateRow(name: string, fields: EventTypeFields): Promise<EventType | null> {
    const row = await this.#db
      .updateTable('event_types')
      .set({ ...fieldColumns(fields), updated_at: Date.now() })
      .where('name', '=', name)
      .returningAll()
      .executeTakeFirst();
    return row ? eventTypeFromRow(row) : null;
  }
}
