import type { EndpointRow } from '../db-schema.js';
import { DeliveryStatus, type Endpoint } from '../models.js';
import type { AcceptItem, AcceptLease, AcceptOutcome, FanOut, IngestStore } from '../storage.js';
import { acceptEachOnFailure, messageRow, planAccept } from '../stores/accept-plan.js';
import { endpointFromRow } from '../stores/endpoint-row.js';
import type { SqliteHotPath } from './sqlite-hot-path.js';

const INSERT_MESSAGE =
  'INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING';
const SELECT_ENDPOINTS = 'SELECT * FROM endpoints WHERE app_id = ? AND disabled = 0';
const INSERT_DELIVERY =
  'INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, lease_token, trigger_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
const COMPLETE_IDEMPOTENCY_KEY = 'UPDATE idempotency_keys SET status_code = ?, response_body = ? WHERE scope = ? AND key = ?';

/**
 * The publish path's group commit on SQLite: the same rows as PostgresIngestStore (accept-plan.ts
 * decides them), written with prepared single-row statements in one synchronous transaction
 * (sqlite-hot-path.ts says why). Each delivery's id is the rowid of its own INSERT, so nothing
 * needs RETURNING and matching back.
 */
export class SqliteIngestStore implements IngestStore {
  readonly #sqlite: SqliteHotPath;

  constructor(sqlite: SqliteHotPath) {
    this.#sqlite = sqlite;
  }

  acceptBatch(items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null = null): Promise<AcceptOutcome[]> {
    return acceptEachOnFailure(items, (group) => this.#sqlite.transaction(() => this.#write(group, fanOut, lease)));
  }

  #write(items: readonly AcceptItem[], fanOut: FanOut, lease: AcceptLease | null): AcceptOutcome[] {
    const insertMessage = this.#sqlite.statement(INSERT_MESSAGE);
    const inserted = new Set<string>();
    const endpointsByApp = new Map<string, Endpoint[]>();
    for (const { message } of items) {
      const m = messageRow(message);
      if (insertMessage.run(m.id, m.app_id, m.event_type, m.event_id, m.payload, m.channels, m.tags, m.created_at).changes === 0) continue;
      inserted.add(m.id);
      if (!endpointsByApp.has(m.app_id)) {
        const rows = this.#sqlite.statement(SELECT_ENDPOINTS).all(m.app_id) as EndpointRow[];
        endpointsByApp.set(m.app_id, rows.map(endpointFromRow));
      }
    }

    const plan = planAccept(items, inserted, endpointsByApp, fanOut, lease);
    const insertDelivery = this.#sqlite.statement(INSERT_DELIVERY);
    for (const { row: d, accepted } of plan.deliveries) {
      // A delivery handed off under a lease is "sending" here (migration 10), not pending.
      const status = d.lease_token === null ? d.status : DeliveryStatus.Sending;
      const { lastInsertRowid } = insertDelivery.run(d.msg_id, d.endpoint_id, d.app_id, status, d.attempts, d.next_attempt_at, d.lease_token, d.trigger_type, d.created_at, d.updated_at);
      accepted.deliveryId = Number(lastInsertRowid);
    }
    // As in PostgresIngestStore: the stored idempotent response commits with the message.
    const completeKey = plan.idempotencyRows.length > 0 ? this.#sqlite.statement(COMPLETE_IDEMPOTENCY_KEY) : null;
    for (const row of plan.idempotencyRows) completeKey!.run(row.status_code, row.response_body, row.scope, row.key);
    return plan.outcomes;
  }
}
