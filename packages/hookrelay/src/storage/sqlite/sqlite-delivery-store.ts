import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db-schema.js';
import { DeliveryStatus, UNFINISHED_DELIVERY_STATUSES } from '../models.js';
import { capOf, type BacklogStats, type ClaimedDelivery, type DeliveryOutcome, type HealthPolicy, type PerEndpointCap } from '../storage.js';
import type { SecretBox } from '../../secrets/secret-box.js';
import { claimedFromRow, KyselyDeliveryStore, withClaimContext, type ClaimContextColumns, type LeasedRow } from '../stores/delivery-store.js';
import { recordEndpointHealthSync } from './sqlite-endpoint-health.js';
import type { SqliteHotPath } from './sqlite-hot-path.js';

/** An attempt, unless its id is stored already (a batch completed again: see DeliveryStore.complete). */
const INSERT_ATTEMPT =
  'INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, error_code, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING';
/** A retry: one more attempt made, pending again until its own time, lease given up. */
const RESCHEDULE = `UPDATE deliveries SET status = ${DeliveryStatus.Pending}, attempts = attempts + 1, next_attempt_at = ?, lease_token = NULL, updated_at = ? WHERE id = ? AND lease_token = ?`;
/** Finished (delivered, or failed for good): out of the due index. */
const FINISH = 'UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = NULL, lease_token = NULL, updated_at = ? WHERE id = ? AND lease_token = ?';
/**
 * A claim's lease on one picked row, if it is still due, with what sending it needs that the
 * dispatcher's target cache does not hold: the message's content (null when expunged or deleted)
 * and the endpoint's updatedAt to check that cache against. Read here, by primary key, they cost
 * no extra statements: loading them per claim afterwards was three more queries through Kysely.
 */
const LEASE = `UPDATE deliveries SET status = ${DeliveryStatus.Sending}, next_attempt_at = ?, lease_token = ?, updated_at = ? WHERE id = ? AND status = ${DeliveryStatus.Pending} AND next_attempt_at <= ?
  RETURNING id, msg_id, app_id, endpoint_id, attempts, trigger_type,
    (SELECT m.payload FROM messages m WHERE m.id = deliveries.msg_id AND m.expunged_at IS NULL) AS payload,
    (SELECT m.created_at FROM messages m WHERE m.id = deliveries.msg_id) AS msg_created_at,
    (SELECT e.updated_at FROM endpoints e WHERE e.id = deliveries.endpoint_id) AS endpoint_updated_at`;

/**
 * Leased deliveries are "sending" (status 3, migration 10) until their lease runs out at
 * next_attempt_at. Those whose lease ran out (their dispatcher died or gave up on them) are
 * returned to pending, due since that moment, before a claim reads the due rows: they are then
 * claimed as any due row is, in due order and fairly across endpoints, and the lease token they
 * keep still lets a late outcome of the old lease land, as long as no new claim has taken them.
 */
const UNLEASE = `UPDATE deliveries SET status = ${DeliveryStatus.Pending} WHERE id = ? AND status = ${DeliveryStatus.Sending} AND next_attempt_at <= ?`;
/** Expired leases returned to pending per claim at most; the next claims take the rest. */
const MAX_UNLEASED_PER_CLAIM = 1000;

/** How many due rows a claim looks at per row it may take, so per-endpoint caps can still fill a batch. */
const SCAN_FACTOR = 4;
/** Endpoints with pending deliveries a claim visits at most when it reads endpoint by endpoint. */
const MAX_ENDPOINTS_PER_CLAIM = 1000;

/** Keeps at most `perEndpoint` candidates per endpoint, in order, so one busy endpoint cannot fill the batch. */
function pickPerEndpoint(candidates: readonly { id: number; endpoint_id: string }[], limit: number, perEndpoint: PerEndpointCap): number[] {
  const picked: number[] = [];
  const perEndpointCount = new Map<string, number>();
  const capFor = capOf(perEndpoint);
  for (const row of candidates) {
    const count = perEndpointCount.get(row.endpoint_id) ?? 0;
    if (count >= capFor(row.endpoint_id)) continue;
    perEndpointCount.set(row.endpoint_id, count + 1);
    picked.push(row.id);
    if (picked.length >= limit) break;
  }
  return picked;
}

/**
 * Deliveries on SQLite: the claim (claimDue, below), and attempt recording (with the endpoints'
 * failure tracking, see sqlite-endpoint-health.ts) and the lease of a claim run as prepared
 * statements in one synchronous transaction each (sqlite-hot-path.ts: also how it waits for the
 * write lock); the rest is the dialect-neutral store. Each row is updated by its primary key,
 * which on SQLite costs no more than a batched `id IN (...)` and needs no grouping. A stale lease
 * still matches nothing.
 */
export class SqliteDeliveryStore extends KyselyDeliveryStore {
  readonly #sqlite: SqliteHotPath;

  constructor(db: Kysely<Database>, secretBox: SecretBox, sqlite: SqliteHotPath) {
    super(db, secretBox);
    this.#sqlite = sqlite;
  }

  /**
   * One dispatcher claims at a time here (the process's dispatcher thread). Reads are
   * bounded by rows, not by backlog: one walk of the due index in due order, at most SCAN_FACTOR
   * rows per row wanted, with endpoints passed over (saturated or paced here) and rows over an
   * endpoint's cap left out as they come. When that walk is used up with room left, its rows were
   * mostly the backlog of such endpoints, and other endpoints' due rows may lie behind it: they are
   * then read endpoint by endpoint (#pickByEndpoint). Leaving the passed-over endpoints out in the
   * walk's own query instead made every claim read their whole backlog (78 ms at a million rows).
   */
  override async claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[]): Promise<ClaimedDelivery[]> {
    await this.#returnExpiredLeases(now);
    const budget = limit * SCAN_FACTOR;
    const walked = await this.db
      .selectFrom('deliveries')
      .select(['id', 'endpoint_id'])
      .where('status', '=', DeliveryStatus.Pending)
      .where('next_attempt_at', '<=', now)
      .orderBy('next_attempt_at')
      .limit(budget)
      .execute();
    const skip = new Set(skipEndpoints);
    let picked = pickPerEndpoint(
      walked.filter((row) => !skip.has(row.endpoint_id)),
      limit,
      perEndpoint,
    );
    if (picked.length < limit && walked.length === budget) picked = await this.#pickByEndpoint(now, limit, perEndpoint, skip, walked, picked);
    // The UPDATE re-checks that each picked row is still due, so a concurrent claimer that got
    // there first (its lease moved next_attempt_at into the future) is never overridden.
    return picked.length === 0 ? [] : this.#leasePicked(picked, now, leaseMs);
  }

  /**
   * Adds to `picked` (rows of `walked`) due rows read endpoint by endpoint through the partial
   * index deliveries_due_by_endpoint: the endpoints with pending rows, found by a skip scan (one
   * index seek each, at most MAX_ENDPOINTS_PER_CLAIM of them); of those due now and not passed
   * over, in the order of their oldest due row, each up to what is left of its cap.
   */
  async #pickByEndpoint(now: number, limit: number, perEndpoint: PerEndpointCap, skip: ReadonlySet<string>, walked: readonly { id: number; endpoint_id: string }[], picked: readonly number[]): Promise<number[]> {
    const pending = DeliveryStatus.Pending;
    const { rows: heads } = await sql<{ endpoint_id: string; head: number | null }>`
      WITH RECURSIVE ep(id) AS (
        SELECT (SELECT endpoint_id FROM deliveries WHERE status = ${pending} ORDER BY endpoint_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.endpoint_id FROM deliveries d WHERE d.status = ${pending} AND d.endpoint_id > ep.id ORDER BY d.endpoint_id LIMIT 1)
        FROM ep WHERE ep.id IS NOT NULL
        LIMIT ${MAX_ENDPOINTS_PER_CLAIM}
      )
      SELECT ep.id AS endpoint_id, (SELECT min(d.next_attempt_at) FROM deliveries d WHERE d.status = ${pending} AND d.endpoint_id = ep.id) AS head
      FROM ep WHERE ep.id IS NOT NULL`.execute(this.db);
    const capFor = capOf(perEndpoint);
    const pickedIds = new Set(picked);
    const takenPerEndpoint = new Map<string, number>();
    for (const row of walked) if (pickedIds.has(row.id)) takenPerEndpoint.set(row.endpoint_id, (takenPerEndpoint.get(row.endpoint_id) ?? 0) + 1);
    const result = [...picked];
    const due = heads.filter((h) => h.head !== null && Number(h.head) <= now && !skip.has(h.endpoint_id)).sort((a, b) => Number(a.head) - Number(b.head));
    for (const { endpoint_id: endpointId } of due) {
      if (result.length >= limit) break;
      const taken = takenPerEndpoint.get(endpointId) ?? 0;
      const room = Math.min(capFor(endpointId) - taken, limit - result.length);
      if (room <= 0) continue;
      // Its oldest due rows, among which those the walk already picked.
      const rows = await this.db
        .selectFrom('deliveries')
        .select('id')
        .where('status', '=', pending)
        .where('endpoint_id', '=', endpointId)
        .where('next_attempt_at', '<=', now)
        .orderBy('next_attempt_at')
        .limit(taken + room)
        .execute();
      let added = 0;
      for (const { id } of rows) {
        // Bounded by the room left as well: rows due at the same instant may come in another order.
        if (pickedIds.has(id) || added >= room) continue;
        result.push(id);
        added += 1;
      }
    }
    return result;
  }

  /** Returns "sending" rows whose lease ran out by `now` to pending (see UNLEASE). The read finds none, as a rule. */
  async #returnExpiredLeases(now: number): Promise<void> {
    const expired = await this.db
      .selectFrom('deliveries')
      .select('id')
      .where('status', '=', DeliveryStatus.Sending)
      .where('next_attempt_at', '<=', now)
      .orderBy('next_attempt_at')
      .limit(MAX_UNLEASED_PER_CLAIM)
      .execute();
    if (expired.length === 0) return;
    await this.#sqlite.transaction(() => {
      const unlease = this.#sqlite.statement(UNLEASE);
      for (const { id } of expired) unlease.run(id, now);
    });
  }

  /** The earliest due time: of a pending row, or the end of a "sending" row's lease. */
  override nextDueAt(): Promise<number | null> {
    return this.earliestDueAt(UNFINISHED_DELIVERY_STATUSES);
  }

  /** Due rows: pending ones due by `now`, and "sending" ones whose lease ran out. */
  override backlog(now: number): Promise<BacklogStats> {
    return this.dueBacklog(UNFINISHED_DELIVERY_STATUSES, now);
  }

  /** Leases the picked rows that are still due: their next attempt moves to now + leaseMs under a fresh token. */
  #leasePicked(picked: readonly number[], now: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    const leaseToken = randomUUID();
    return this.#sqlite.transaction(() => {
      const lease = this.#sqlite.statement(LEASE);
      const claimed: ClaimedDelivery[] = [];
      for (const id of picked) {
        const row = lease.get(now + leaseMs, leaseToken, now, id, now) as (LeasedRow & ClaimContextColumns) | undefined;
        if (row) claimed.push(withClaimContext(claimedFromRow(row, leaseToken), row));
      }
      return claimed;
    });
  }

  override async complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }> {
    if (outcomes.length === 0) return { disabledEndpoints: [] };
    return this.#sqlite.transaction(() => {
      const insertAttempt = this.#sqlite.statement(INSERT_ATTEMPT);
      // Outcomes whose attempt was stored already (a repeat) count toward health no more.
      const recorded = outcomes.filter(({ attempt: a }) => insertAttempt.run(a.id, a.msgId, a.endpointId, a.appId, a.url, a.status, a.responseStatusCode, a.response, a.responseDurationMs, a.triggerType, a.errorCode, a.createdAt).changes > 0);
      const now = Date.now();
      for (const o of outcomes) {
        if (o.nextAttemptAt !== null) {
          this.#sqlite.statement(RESCHEDULE).run(o.nextAttemptAt, o.attempt.createdAt, o.deliveryId, o.leaseToken);
        } else {
          const status = o.attempt.status === DeliveryStatus.Success ? DeliveryStatus.Success : DeliveryStatus.Fail;
          this.#sqlite.statement(FINISH).run(status, now, o.deliveryId, o.leaseToken);
        }
      }
      return { disabledEndpoints: recordEndpointHealthSync(this.#sqlite, recorded, policy, now) };
    });
  }
}
