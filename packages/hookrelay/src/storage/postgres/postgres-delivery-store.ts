import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db-schema.js';
import { DeliveryStatus } from '../models.js';
import type { Attempt } from '../models.js';
import type { ClaimedDelivery, DeliveryOutcome, HealthPolicy, PerEndpointCap, SharedEndpointCap } from '../storage.js';
import { claimedFromRow, KyselyDeliveryStore, withClaimContext } from '../stores/delivery-store.js';
import { recordEndpointHealth, recoveringEndpoints, summarizeStreaks, type BatchStreak } from '../stores/endpoint-health-store.js';

/**
 * Claims on PostgreSQL, where several dispatchers (threads or processes) claim from one table at
 * once, and where each endpoint's in-flight cap holds across all of them together.
 *
 * A claim is one call of the server-side function hookrelay_claim (as migrations/0006-claim-by-
 * primary-keys.ts defines it now; 0005 was the first version), so one round trip and one implicit
 * transaction. It walks the due index once, without row locks,
 * then takes a transaction-scoped advisory lock per endpoint among the first 64 candidates (`pg_try_advisory_xact_lock`,
 * which never waits), then counts each held one's live leases (every dispatcher's requests in
 * flight, and outcomes not yet written) in the next statement, whose snapshot is taken with the
 * locks held (migration 9 says why). Endpoints another claimer holds at that moment are
 * skipped: that claimer is serving them. Of the held endpoints' candidates it leases, by primary
 * key, what is left of each cap. So two claimers never count the same endpoint's free slots at
 * once. Should the candidates have gone stale between the read and the locks (another claimer
 * leased some of them first), the held endpoints' due rows are read again under the locks. The
 * same answer carries each claimed message's payload and its endpoint's updatedAt, which saves
 * the dispatcher the reads of loadContext, and, when it leased nothing, the next due time.
 * Every query in it reads by primary key or in an index's own order, whatever the statistics
 * (migrations 6 and 8 say why).
 *
 * Advisory locks rather than row locks on `endpoints`: a row lock is a write to the row, and
 * beside the FOR KEY SHARE that every delivery insert takes on its endpoint (the foreign key) it
 * would make PostgreSQL create a MultiXact per overlap. Advisory locks touch no row, and
 * publishing never meets them.
 */
/** First key of the claim locks (pg_try_advisory_xact_lock(class, hashtext(endpoint id))): arbitrary, fixed. */
export const CLAIM_LOCK_CLASS = 1_213_025;

/**
 * A row of hookrelay_claim(): a leased delivery; or (passed_over) an endpoint left behind at its
 * cap; or (passed_over, endpoint_id null) when a claim that leased nothing says the next due time.
 */
interface ClaimFunctionRow {
  passed_over: boolean;
  delivery_id: number | null;
  msg_id: string | null;
  app_id: string | null;
  endpoint_id: string | null;
  attempts: number | null;
  trigger_type: number | null;
  payload: string | null;
  msg_created_at: number | null;
  endpoint_updated_at: number | null;
  /** Only on the row of a claim that leased nothing (passed_over, no endpoint). */
  next_due_at: number | null;
}

export class PostgresDeliveryStore extends KyselyDeliveryStore {
  override async claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[], shared?: SharedEndpointCap): Promise<ClaimedDelivery[]> {
    const fallback = typeof perEndpoint === 'number' ? perEndpoint : perEndpoint.fallback;
    const own = typeof perEndpoint === 'number' ? [] : [...perEndpoint.byEndpoint];
    const leaseToken = randomUUID();
    // One statement, so one implicit transaction: the advisory locks last until it ends.
    const { rows } = await sql<ClaimFunctionRow>`SELECT * FROM hookrelay_claim(${now}, ${leaseMs}, ${leaseToken}, ${limit}, ${[...skipEndpoints]}::text[], ${fallback}, ${own.map(([id]) => id)}::text[], ${own.map(([, cap]) => cap)}::integer[], ${shared?.inFlight ?? null}::integer, ${CLAIM_LOCK_CLASS})`.execute(this.db);
    const claims: ClaimedDelivery[] = [];
    for (const row of rows) {
      if (row.passed_over) {
        if (row.endpoint_id === null) {
          if (shared) shared.nextDueAt = row.next_due_at === null ? null : Number(row.next_due_at);
        } else shared?.passedOver.add(row.endpoint_id);
        continue;
      }
      const claim = claimedFromRow({ id: row.delivery_id!, msg_id: row.msg_id!, app_id: row.app_id!, endpoint_id: row.endpoint_id!, attempts: row.attempts!, trigger_type: row.trigger_type! }, leaseToken);
      claims.push(withClaimContext(claim, row));
    }
    return claims;
  }

  /**
   * A batch of outcomes, atomically: nothing of it is written if any part fails, so the dispatcher
   * may simply complete it again (see DeliveryStore.complete). The attempts are inserted and the
   * deliveries moved on (due again for a retry, or finished) by one statement, from arrays,
   * whatever the batch's size. An attempt whose id is stored already (the batch was committed
   * before, but its acknowledgement was lost) is skipped, and so is its health.
   *
   * A batch in which no endpoint failed (healthy traffic) is that one statement alone, which also
   * ends the stored streaks of the endpoints that succeeded (#completeHealthy). One where an
   * endpoint failed writes its health after that statement, in the same transaction
   * (#completeFailing).
   */
  override async complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }> {
    if (outcomes.length === 0) return { disabledEndpoints: [] };
    const streaks = summarizeStreaks(outcomes);
    const now = Date.now();
    if ([...streaks.values()].every((s) => s.failures === 0)) {
      await this.#completeHealthy(outcomes, now);
      return { disabledEndpoints: [] };
    }
    return { disabledEndpoints: await this.db.transaction().execute((trx) => this.#completeFailing(trx, outcomes, streaks, policy, now)) };
  }

  /**
   * One statement, so one implicit transaction. The recovering endpoints' rows, if their streak is
   * open, are locked in endpoint id order before they are written (as planHealthWrites orders
   * them), so two batches ending the same streaks never deadlock; healthy traffic locks none. Only
   * successes whose attempt this statement inserted end a streak: a repeat of a committed batch
   * must not end a streak that a failure has opened since.
   */
  async #completeHealthy(outcomes: readonly DeliveryOutcome[], now: number): Promise<void> {
    const successes = outcomes.filter((o) => o.health === 'success').map((o) => o.attempt.id);
    await sql`
      WITH ${recordAndMove(outcomes, now)},
      recovering AS (
        SELECT h.endpoint_id, r.at FROM endpoint_health h
        JOIN (SELECT endpoint_id, max(created_at) AS at FROM recorded WHERE id = ANY (${successes}::text[]) GROUP BY endpoint_id) r ON r.endpoint_id = h.endpoint_id
        -- After the moves (counting reads them all): rows are locked in the order that the failing
        -- path and an endpoint's deletion take them, deliveries then health, so neither deadlocks.
        WHERE h.consecutive_failures > 0 AND (SELECT count(*) FROM moved) >= 0
        ORDER BY h.endpoint_id
        FOR UPDATE OF h
      )
      UPDATE endpoint_health h SET consecutive_failures = 0, failing_since = NULL, recovered_at = r.at
      FROM recovering r WHERE h.endpoint_id = r.endpoint_id AND h.consecutive_failures > 0`.execute(this.db);
  }

  /**
   * In the caller's transaction: the same statement, which also reads the stored streaks of the
   * endpoints that only succeeded and names the attempts that were stored already, then the health
   * writes. As many statements as when the health writes had a transaction of their own.
   */
  async #completeFailing(trx: Transaction<Database>, outcomes: readonly DeliveryOutcome[], streaks: ReadonlyMap<string, BatchStreak>, policy: HealthPolicy, now: number): Promise<string[]> {
    const { rows } = await sql<{ in_streak: string | null; stored: string | null }>`
      WITH ${recordAndMove(outcomes, now)}
      SELECT endpoint_id AS in_streak, NULL AS stored FROM endpoint_health WHERE endpoint_id = ANY (${recoveringEndpoints(streaks)}::text[]) AND consecutive_failures > 0
      UNION ALL
      SELECT NULL, o.id FROM unnest(${outcomes.map((o) => o.attempt.id)}::text[]) AS o(id) WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.id = o.id)`.execute(trx);
    const stored = new Set(rows.flatMap((r) => (r.stored === null ? [] : [r.stored])));
    if (stored.size === 0) return recordEndpointHealth(trx, outcomes, policy, now, new Set(rows.flatMap((r) => (r.in_streak === null ? [] : [r.in_streak]))));
    // A repeat: only the attempts recorded now count, and their streaks are read again (those
    // read above were of the whole batch's endpoints).
    return recordEndpointHealth(trx, outcomes.filter((o) => !stored.has(o.attempt.id)), policy, now);
  }
}

/**
 * The CTEs `recorded` (the attempts inserted, skipping ids stored already; it returns their id,
 * endpoint and time) and `moved` (the deliveries moved on, returning their ids; a lease that ran
 * out, or that this same batch gave up before, matches nothing).
 */
function recordAndMove(outcomes: readonly DeliveryOutcome[], now: number) {
  const of = <T>(field: (attempt: Attempt) => T) => outcomes.map((o) => field(o.attempt));
  return sql`recorded AS (
        INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, error_code, created_at)
        SELECT * FROM unnest(
          ${of((a) => a.id)}::text[], ${of((a) => a.msgId)}::text[], ${of((a) => a.endpointId)}::text[], ${of((a) => a.appId)}::text[],
          ${of((a) => a.url)}::text[], ${of((a) => a.status)}::integer[], ${of((a) => a.responseStatusCode)}::integer[], ${of((a) => a.response)}::text[],
          ${of((a) => a.responseDurationMs)}::integer[], ${of((a) => a.triggerType)}::integer[], ${of((a) => a.errorCode)}::text[], ${of((a) => a.createdAt)}::bigint[]
        )
        ON CONFLICT (id) DO NOTHING
        RETURNING id, endpoint_id, created_at
      ), moved AS (
        UPDATE deliveries d SET
          status = CASE WHEN o.next_attempt_at IS NULL THEN o.final_status ELSE d.status END,
          attempts = d.attempts + 1,
          next_attempt_at = o.next_attempt_at,
          lease_token = NULL,
          updated_at = CASE WHEN o.next_attempt_at IS NULL THEN ${now}::bigint ELSE o.attempted_at END
        FROM unnest(
          ${outcomes.map((o) => o.deliveryId)}::bigint[], ${outcomes.map((o) => o.leaseToken)}::text[], ${outcomes.map((o) => o.nextAttemptAt)}::bigint[],
          ${outcomes.map((o) => (o.attempt.status === DeliveryStatus.Success ? DeliveryStatus.Success : DeliveryStatus.Fail))}::integer[], ${of((a) => a.createdAt)}::bigint[]
        ) AS o(id, lease_token, next_attempt_at, final_status, attempted_at)
        -- A lease that ran out and was taken again matches nothing: the newer claim's outcome counts.
        WHERE d.id = o.id AND d.lease_token = o.lease_token
        RETURNING d.id
      )`;
}
