import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../db-schema.js';
import { DeliveryStatus } from '../models.js';
import type { ClaimedDelivery, DeliveryOutcome, HealthPolicy } from '../storage.js';
import type { SecretBox } from '../../secrets/secret-box.js';
import { claimedFromRow, KyselyDeliveryStore, type LeasedRow } from '../stores/delivery-store.js';
import { recordEndpointHealthSync } from './sqlite-endpoint-health.js';
import type { SqliteHotPath } from './sqlite-hot-path.js';

const INSERT_ATTEMPT =
  'INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, error_code, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
/** A retry: one more attempt made, due again at its own time, lease given up. */
const RESCHEDULE = 'UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?, lease_token = NULL, updated_at = ? WHERE id = ? AND lease_token = ?';
/** Finished (delivered, or failed for good): out of the due index. */
const FINISH = 'UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = NULL, lease_token = NULL, updated_at = ? WHERE id = ? AND lease_token = ?';
/** A claim's lease on one picked row, if it is still due (see KyselyDeliveryStore.leasePicked). */
const LEASE = `UPDATE deliveries SET next_attempt_at = ?, lease_token = ?, updated_at = ? WHERE id = ? AND status = ${DeliveryStatus.Pending} AND next_attempt_at <= ?
  RETURNING id, msg_id, app_id, endpoint_id, attempts, trigger_type`;

/**
 * Deliveries on SQLite: attempt recording (with the endpoints' failure tracking, see
 * sqlite-endpoint-health.ts), once per delivery, and the lease of a claim run as
 * prepared statements in one synchronous transaction each (sqlite-hot-path.ts: also how it waits
 * for the write lock); the rest is the dialect-neutral store. Each row is updated by its primary
 * key, which on SQLite costs no more than the base class's batched `id IN (...)` and needs no
 * grouping. A stale lease still matches nothing.
 */
export class SqliteDeliveryStore extends KyselyDeliveryStore {
  readonly #sqlite: SqliteHotPath;

  constructor(db: Kysely<Database>, secretBox: SecretBox, sqlite: SqliteHotPath) {
    super(db, secretBox);
    this.#sqlite = sqlite;
  }

  protected override leasePicked(_db: Kysely<Database>, picked: readonly number[], now: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    const leaseToken = randomUUID();
    return this.#sqlite.transaction(() => {
      const lease = this.#sqlite.statement(LEASE);
      const claimed: ClaimedDelivery[] = [];
      for (const id of picked) {
        const row = lease.get(now + leaseMs, leaseToken, now, id, now) as LeasedRow | undefined;
        if (row) claimed.push(claimedFromRow(row, leaseToken));
      }
      return claimed;
    });
  }

  override async complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }> {
    if (outcomes.length === 0) return { disabledEndpoints: [] };
    return this.#sqlite.transaction(() => {
      const insertAttempt = this.#sqlite.statement(INSERT_ATTEMPT);
      for (const { attempt: a } of outcomes) {
        insertAttempt.run(a.id, a.msgId, a.endpointId, a.appId, a.url, a.status, a.responseStatusCode, a.response, a.responseDurationMs, a.triggerType, a.errorCode, a.createdAt);
      }
      const now = Date.now();
      for (const o of outcomes) {
        if (o.nextAttemptAt !== null) {
          this.#sqlite.statement(RESCHEDULE).run(o.nextAttemptAt, o.attempt.createdAt, o.deliveryId, o.leaseToken);
        } else {
          const status = o.attempt.status === DeliveryStatus.Success ? DeliveryStatus.Success : DeliveryStatus.Fail;
          this.#sqlite.statement(FINISH).run(status, now, o.deliveryId, o.leaseToken);
        }
      }
      return { disabledEndpoints: recordEndpointHealthSync(this.#sqlite, outcomes, policy, now) };
    });
  }
}
