import type { Kysely, Transaction } from 'kysely';
import type { Database, EndpointRow } from '../db-schema.js';
import type { Endpoint } from '../models.js';
import type { AcceptItem, AcceptLease, AcceptOutcome, FanOut, IngestStore } from '../storage.js';
import { messageRow, planAccept, toAcceptError } from './accept-plan.js';
import { endpointFromRow } from './endpoint-row.js';

/** Rows per multi-row INSERT: well under SQLite's and PostgreSQL's bound-parameter limits. */
const ROWS_PER_INSERT = 400;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class KyselyIngestStore implements IngestStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async acceptBatch(items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null = null): Promise<AcceptOutcome[]> {
    if (items.length === 0) return [];
    try {
      return await this.#db.transaction().execute((trx) => this.#write(trx, items, fanOut, lease));
    } catch (error) {
      if (items.length === 1) return [{ ok: false, error: toAcceptError(error) }];
      // One bad item (its application deleted meanwhile) must not fail its neighbours: retry alone.
      const outcomes: AcceptOutcome[] = [];
      for (const item of items) outcomes.push(...(await this.acceptBatch([item], fanOut, lease)));
      return outcomes;
    }
  }

  async #write(trx: Transaction<Database>, items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null): Promise<AcceptOutcome[]> {
    const inserted = new Set<string>();
    for (const part of chunks(items, ROWS_PER_INSERT)) {
      const rows = await trx
        .insertInto('messages')
        .values(part.map(({ message }) => messageRow(message)))
        .onConflict((oc) => oc.doNothing())
        .returning('id')
        .execute();
      for (const row of rows) inserted.add(row.id);
    }

    const appIds = [...new Set(items.filter((i) => inserted.has(i.message.id)).map((i) => i.message.appId))];
    const endpointsByApp = new Map<string, Endpoint[]>();
    if (appIds.length > 0) {
      const rows: EndpointRow[] = await trx.selectFrom('endpoints').selectAll().where('app_id', 'in', appIds).where('disabled', '=', 0).execute();
      for (const row of rows) {
        const list = endpointsByApp.get(row.app_id) ?? [];
        list.push(endpointFromRow(row));
        endpointsByApp.set(row.app_id, list);
      }
    }

    const plan = planAccept(items, inserted, endpointsByApp, fanOut, lease);
    // RETURNING promises no row order, so ids are matched by (message, endpoint).
    const ids = new Map<string, number>();
    for (const part of chunks(plan.deliveries, ROWS_PER_INSERT)) {
      const rows = await trx.insertInto('deliveries').values(part.map((d) => d.row)).returning(['id', 'msg_id', 'endpoint_id']).execute();
      for (const row of rows) ids.set(`${row.msg_id} ${row.endpoint_id}`, Number(row.id));
    }
    for (const { row, accepted } of plan.deliveries) accepted.deliveryId = ids.get(`${row.msg_id} ${row.endpoint_id}`)!;
    // The reservation row already exists (idempotency plugin); completing it here makes the stored
    // response commit with the message, so a crash cannot leave one without the other.
    for (const row of plan.idempotencyRows) {
      await trx
        .updateTable('idempotency_keys')
        .set({ status_code: row.status_code, response_body: row.response_body })
        .where('scope', '=', row.scope)
        .where('key', '=', row.key)
        .execute();
    }
    return plan.outcomes;
  }
}
