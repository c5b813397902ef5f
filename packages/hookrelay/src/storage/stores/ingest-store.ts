import type { Insertable, Kysely, Transaction } from 'kysely';
import type { Database, DeliveryRow, EndpointRow } from '../db-schema.js';
import type { Endpoint } from '../models.js';
import { DeliveryStatus, TriggerType } from '../models.js';
import type { AcceptedDelivery, AcceptItem, AcceptLease, AcceptOutcome, FanOut, IngestStore } from '../storage.js';
import { HookrelayError } from '../../core/errors.js';
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
        .values(
          part.map(({ message: m }) => ({
            id: m.id,
            app_id: m.appId,
            event_type: m.eventType,
            event_id: m.eventId,
            payload: m.payload,
            channels: m.channels ? JSON.stringify(m.channels) : null,
            tags: m.tags ? JSON.stringify(m.tags) : null,
            created_at: m.createdAt,
          })),
        )
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

    const deliveries: Insertable<DeliveryRow>[] = [];
    const outcomes: AcceptOutcome[] = [];
    const idempotencyRows: Database['idempotency_keys'][] = [];
    for (const { message, idempotency } of items) {
      if (!inserted.has(message.id)) {
        outcomes.push({ ok: false, error: new HookrelayError('duplicate_event_id', `A message with eventId "${message.eventId}" already exists in this application`) });
        continue;
      }
      const targets = fanOut(endpointsByApp.get(message.appId) ?? [], message);
      const mine: AcceptedDelivery[] = [];
      for (const endpoint of targets) {
        const leased = lease !== null && lease.accepts(endpoint);
        const leaseUntil = lease && leased ? lease.until : null;
        mine.push({ deliveryId: 0, endpointId: endpoint.id, endpointUpdatedAt: endpoint.updatedAt, leased });
        deliveries.push({
          msg_id: message.id,
          endpoint_id: endpoint.id,
          app_id: message.appId,
          status: DeliveryStatus.Pending,
          attempts: 0,
          next_attempt_at: leaseUntil ?? message.createdAt,
          lease_token: leaseUntil !== null ? lease!.token : null,
          trigger_type: TriggerType.Scheduled,
          created_at: message.createdAt,
          updated_at: message.createdAt,
        });
      }
      if (idempotency) {
        idempotencyRows.push({
          scope: idempotency.scope,
          key: idempotency.key,
          request_hash: '',
          status_code: idempotency.statusCode,
          response_body: idempotency.body,
          created_at: message.createdAt,
          expires_at: 0,
        });
      }
      outcomes.push({ ok: true, deliveries: mine });
    }
    // RETURNING promises no row order, so ids are matched by (message, endpoint).
    const ids = new Map<string, number>();
    for (const part of chunks(deliveries, ROWS_PER_INSERT)) {
      const rows = await trx.insertInto('deliveries').values(part).returning(['id', 'msg_id', 'endpoint_id']).execute();
      for (const row of rows) ids.set(`${row.msg_id} ${row.endpoint_id}`, Number(row.id));
    }
    items.forEach(({ message }, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) for (const delivery of outcome.deliveries) delivery.deliveryId = ids.get(`${message.id} ${delivery.endpointId}`)!;
    });
    // The reservation row already exists (idempotency plugin); completing it here makes the stored
    // response commit with the message, so a crash cannot leave one without the other.
    for (const row of idempotencyRows) {
      await trx
        .updateTable('idempotency_keys')
        .set({ status_code: row.status_code, response_body: row.response_body })
        .where('scope', '=', row.scope)
        .where('key', '=', row.key)
        .execute();
    }
    return outcomes;
  }
}

function toAcceptError(error: unknown): Error {
  const code = (error as { code?: string }).code;
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || code === '23503') return new HookrelayError('not_found', 'Application not found');
  return error instanceof Error ? error : new Error(String(error));
}
