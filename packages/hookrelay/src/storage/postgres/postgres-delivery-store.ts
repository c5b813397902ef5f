import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { DeliveryStatus } from '../models.js';
import type { Attempt } from '../models.js';
import type { ClaimedDelivery, DeliveryOutcome, HealthPolicy, PerEndpointCap, SharedEndpointCap } from '../storage.js';
import { claimedFromRow, KyselyDeliveryStore, withClaimContext } from '../stores/delivery-store.js';
import { planHealthWrites, recordEndpointHealth, recoveringEndpoints, summarizeStreaks } from '../stores/endpoint-health-store.js';

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
   * A batch of outcomes as one statement, from arrays, whatever its size: the attempts inserted,
   * the deliveries moved on (due again for a retry, or finished), and the stored streaks read of
   * the endpoints that only succeeded. Health writes, needed only when an endpoint failed in the
   * batch or its streak ended, follow in a transaction of their own: a crash between the two costs
   * that batch's share of a streak, never an attempt or a delivery's state.
   */
  override async complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }> {
    if (outcomes.length === 0) return { disabledEndpoints: [] };
    const streaks = summarizeStreaks(outcomes);
    const recovering = recoveringEndpoints(streaks);
    const now = Date.now();
    const of = <T>(field: (attempt: Attempt) => T) => outcomes.map((o) => field(o.attempt));
    const { rows } = await sql<{ endpoint_id: string }>`
      WITH recorded AS (
        INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, error_code, created_at)
        SELECT * FROM unnest(
          ${of((a) => a.id)}::text[], ${of((a) => a.msgId)}::text[], ${of((a) => a.endpointId)}::text[], ${of((a) => a.appId)}::text[],
          ${of((a) => a.url)}::text[], ${of((a) => a.status)}::integer[], ${of((a) => a.responseStatusCode)}::integer[], ${of((a) => a.response)}::text[],
          ${of((a) => a.responseDurationMs)}::integer[], ${of((a) => a.triggerType)}::integer[], ${of((a) => a.errorCode)}::text[], ${of((a) => a.createdAt)}::bigint[]
        )
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
      )
      SELECT endpoint_id FROM endpoint_health WHERE endpoint_id = ANY (${recovering}::text[]) AND consecutive_failures > 0`.execute(this.db);
    const inStreak = new Set(rows.map((r) => r.endpoint_id));
    if (planHealthWrites(streaks, inStreak).length === 0) return { disabledEndpoints: [] };
    const disabledEndpoints = await this.db.transaction().execute((trx) => recordEndpointHealth(trx, outcomes, policy, now, inStreak));
    return { disabledEndpoints };
  }
}
