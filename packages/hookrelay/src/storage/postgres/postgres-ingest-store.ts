import { sql, type Kysely } from 'kysely';
import type { Database, EndpointRow } from '../db-schema.js';
import type { Endpoint } from '../models.js';
import type { AcceptItem, AcceptLease, AcceptOutcome, FanOut, IngestStore } from '../storage.js';
import { acceptEachOnFailure, duplicateEventOutcome, messageRow, planAccept } from '../stores/accept-plan.js';
import { endpointFromRow } from '../stores/endpoint-row.js';

/**
 * The publish path's group commit on PostgreSQL: the same rows as SqliteIngestStore (accept-plan.ts
 * decides them), in two round trips per group: the applications' endpoints, then one statement
 * that inserts the messages, their deliveries and the completed idempotent responses, and commits
 * (an implicit transaction: a statement is atomic). Before, a group was BEGIN, three statements,
 * COMMIT, each a round trip, with multi-row VALUES lists of up to 4,000 parameters that Kysely
 * compiled and PostgreSQL parsed and planned anew for every group size. Columns go as arrays
 * (unnest), so the statement text is always the same.
 *
 * The endpoints are read before the statement rather than inside a transaction with it: under
 * READ COMMITTED that read saw the endpoints committed before it either way. An endpoint deleted in
 * between makes the deliveries' foreign key fail the statement, as it did inside the transaction
 * (the group is then written item by item, and the affected item fails alone).
 */
export class PostgresIngestStore implements IngestStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  acceptBatch(items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null = null): Promise<AcceptOutcome[]> {
    return acceptEachOnFailure(items, (group) => this.#write(group, fanOut, lease));
  }

  async #write(items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null): Promise<AcceptOutcome[]> {
    const appIds = [...new Set(items.map((i) => i.message.appId))];
    const endpointRows: EndpointRow[] = await this.#db.selectFrom('endpoints').selectAll().where('app_id', 'in', appIds).where('disabled', '=', 0).execute();
    const endpointsByApp = new Map<string, Endpoint[]>();
    for (const row of endpointRows) {
      const list = endpointsByApp.get(row.app_id) ?? [];
      list.push(endpointFromRow(row));
      endpointsByApp.set(row.app_id, list);
    }

    // Planned as if every message goes in; the statement writes the deliveries and responses of
    // those that did (a duplicate eventId inserts nothing), and the outcomes are corrected below.
    const plan = planAccept(items, new Set(items.map((i) => i.message.id)), endpointsByApp, fanOut, lease);
    const messages = items.map((i) => messageRow(i.message));
    const deliveries = plan.deliveries.map((d) => d.row);
    const responses = items.filter((i) => i.idempotency !== null).map((i) => ({ ...i.idempotency!, msgId: i.message.id }));
    const column = <R, T>(rows: readonly R[], field: (row: R) => T) => rows.map(field);

    const { rows } = await sql<{ kind: 'message' | 'delivery'; id: string; msg_id: string | null; endpoint_id: string | null }>`
      WITH inserted AS (
        INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at)
        SELECT * FROM unnest(
          ${column(messages, (m) => m.id)}::text[], ${column(messages, (m) => m.app_id)}::text[], ${column(messages, (m) => m.event_type)}::text[],
          ${column(messages, (m) => m.event_id)}::text[], ${column(messages, (m) => m.payload)}::text[], ${column(messages, (m) => m.channels)}::text[],
          ${column(messages, (m) => m.tags)}::text[], ${column(messages, (m) => m.created_at)}::bigint[]
        )
        ON CONFLICT DO NOTHING
        RETURNING id
      ), fanned_out AS (
        INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, lease_token, trigger_type, created_at, updated_at)
        SELECT d.* FROM unnest(
          ${column(deliveries, (d) => d.msg_id)}::text[], ${column(deliveries, (d) => d.endpoint_id)}::text[], ${column(deliveries, (d) => d.app_id)}::text[],
          ${column(deliveries, (d) => d.status)}::integer[], ${column(deliveries, (d) => d.attempts ?? 0)}::integer[], ${column(deliveries, (d) => d.next_attempt_at ?? null)}::bigint[],
          ${column(deliveries, (d) => d.lease_token ?? null)}::text[], ${column(deliveries, (d) => d.trigger_type ?? 0)}::integer[], ${column(deliveries, (d) => d.created_at)}::bigint[],
          ${column(deliveries, (d) => d.updated_at)}::bigint[]
        ) AS d(msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, lease_token, trigger_type, created_at, updated_at)
        WHERE d.msg_id IN (SELECT id FROM inserted)
        RETURNING id, msg_id, endpoint_id
      ), responded AS (
        -- Run though nothing reads it: PostgreSQL runs every data-modifying WITH to completion.
        -- The reservation rows exist (idempotency plugin); completing them here commits the stored
        -- response with the message, so a crash cannot leave one without the other.
        UPDATE idempotency_keys k SET status_code = r.status_code, response_body = r.response_body
        FROM unnest(
          ${column(responses, (r) => r.scope)}::text[], ${column(responses, (r) => r.key)}::text[], ${column(responses, (r) => r.statusCode)}::integer[],
          ${column(responses, (r) => r.body)}::text[], ${column(responses, (r) => r.msgId)}::text[]
        ) AS r(scope, key, status_code, response_body, msg_id)
        WHERE k.scope = r.scope AND k.key = r.key AND r.msg_id IN (SELECT id FROM inserted)
      )
      SELECT 'message' AS kind, id, NULL AS msg_id, NULL AS endpoint_id FROM inserted
      UNION ALL SELECT 'delivery', id::text, msg_id, endpoint_id FROM fanned_out`.execute(this.#db);

    const inserted = new Set<string>();
    // RETURNING promises no row order, so delivery ids are matched by (message, endpoint).
    const deliveryIds = new Map<string, number>();
    for (const row of rows) {
      if (row.kind === 'message') inserted.add(row.id);
      else deliveryIds.set(`${row.msg_id} ${row.endpoint_id}`, Number(row.id));
    }
    for (const { row, accepted } of plan.deliveries) accepted.deliveryId = deliveryIds.get(`${row.msg_id} ${row.endpoint_id}`) ?? 0;
    return plan.outcomes.map((outcome, i) => (inserted.has(items[i]!.message.id) ? outcome : duplicateEventOutcome(items[i]!.message)));
  }
}
