import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db-schema.js';
import type { DeliveryOutcome, EndpointHealth, HealthPolicy } from '../storage.js';
import { nextEndpointVersion } from './endpoint-version.js';

/** What one batch of outcomes says about one endpoint, in the order the attempts were made. */
export interface BatchStreak {
  /** The last success in the batch, or null. */
  lastSuccessAt: number | null;
  /** Failures after that success (all of the batch's failures when there was none). */
  failures: number;
  firstFailureAt: number | null;
  lastFailureAt: number | null;
  lastFailureCode: string | null;
}

/** Per endpoint, the streak that a batch of outcomes ends with. Refusals without a request (health null) do not count. */
export function summarizeStreaks(outcomes: readonly DeliveryOutcome[]): Map<string, BatchStreak> {
  const streaks = new Map<string, BatchStreak>();
  for (const { attempt, health } of outcomes) {
    if (health === null) continue;
    let streak = streaks.get(attempt.endpointId);
    if (!streak) {
      streak = { lastSuccessAt: null, failures: 0, firstFailureAt: null, lastFailureAt: null, lastFailureCode: null };
      streaks.set(attempt.endpointId, streak);
    }
    if (health === 'success') {
      streak.lastSuccessAt = attempt.createdAt;
      streak.failures = 0;
      streak.firstFailureAt = null;
    } else {
      streak.failures++;
      streak.firstFailureAt ??= attempt.createdAt;
      streak.lastFailureAt = attempt.createdAt;
      streak.lastFailureCode = attempt.errorCode ?? `HTTP_${attempt.responseStatusCode}`;
    }
  }
  return streaks;
}

/** One endpoint's row change for a batch; `planHealthWrites` orders them by endpoint id. */
export type HealthWrite =
  /** Only successes here, and the stored streak is open: it ends. */
  | { kind: 'recover'; endpointId: string; at: number }
  /** A success here, then failures: a new streak starts, whatever was stored. */
  | { kind: 'restart'; endpointId: string; streak: BatchStreak }
  /** Only failures here: they extend the stored streak (or start one). */
  | { kind: 'extend'; endpointId: string; streak: BatchStreak };

/**
 * What a batch writes. `inStreak` tells which of the endpoints that only succeeded here have an
 * open streak stored (the others need no write at all). In endpoint id order, so two workers
 * recording batches for the same endpoints lock their rows in the same order and never deadlock.
 */
export function planHealthWrites(streaks: ReadonlyMap<string, BatchStreak>, inStreak: ReadonlySet<string>): HealthWrite[] {
  const writes: HealthWrite[] = [];
  for (const endpointId of [...streaks.keys()].sort()) {
    const streak = streaks.get(endpointId)!;
    if (streak.failures === 0) {
      if (inStreak.has(endpointId)) writes.push({ kind: 'recover', endpointId, at: streak.lastSuccessAt! });
    } else writes.push({ kind: streak.lastSuccessAt !== null ? 'restart' : 'extend', endpointId, streak });
  }
  return writes;
}

/** Endpoints that only succeeded in the batch: the ones whose stored streak must be looked up. */
export function recoveringEndpoints(streaks: ReadonlyMap<string, BatchStreak>): string[] {
  return [...streaks].filter(([, s]) => s.failures === 0).map(([id]) => id);
}

/** The row a failing batch writes (the columns of an insert, or of a restart). */
export function streakRow(endpointId: string, s: BatchStreak) {
  return { endpoint_id: endpointId, consecutive_failures: s.failures, failing_since: s.firstFailureAt, last_failure_at: s.lastFailureAt, last_failure_code: s.lastFailureCode, recovered_at: s.lastSuccessAt, disabled_at: null };
}

/**
 * Writes a batch's effect on the endpoints' failing streaks (on PostgreSQL right after the
 * statement that records the attempts, which also read `knownInStreak`), and disables endpoints
 * that have failed for longer than the policy allows. Returns the endpoints it disabled.
 *
 * Healthy traffic costs one indexed read per batch and no write: a row is written only for an
 * endpoint that failed in the batch, or whose streak a success in the batch ends.
 */
export async function recordEndpointHealth(trx: Transaction<Database>, outcomes: readonly DeliveryOutcome[], policy: HealthPolicy, now: number, knownInStreak?: ReadonlySet<string>): Promise<string[]> {
  const streaks = summarizeStreaks(outcomes);
  if (streaks.size === 0) return [];
  const recovering = recoveringEndpoints(streaks);
  // Read without a lock: a failure another worker commits meanwhile was made at about the same
  // time as our success, and starts the next streak. (A caller that read it already passes it.)
  const inStreak =
    knownInStreak ??
    new Set(
      recovering.length === 0
        ? []
        : (await trx.selectFrom('endpoint_health').select('endpoint_id').where('endpoint_id', 'in', recovering).where('consecutive_failures', '>', 0).execute()).map((r) => r.endpoint_id),
    );
  const failing: string[] = [];
  const gone = await deletedAmong(trx, [...streaks.keys()].filter((id) => streaks.get(id)!.failures > 0));
  for (const write of planHealthWrites(streaks, inStreak)) {
    // An endpoint deleted while its request was in flight has no health row to keep (and the
    // row's foreign key would fail the whole batch, on every retry).
    if (gone.has(write.endpointId)) continue;
    if (write.kind === 'recover') {
      await trx
        .updateTable('endpoint_health')
        .set({ consecutive_failures: 0, failing_since: null, recovered_at: write.at })
        .where('endpoint_id', '=', write.endpointId)
        .where('consecutive_failures', '>', 0)
        .execute();
      continue;
    }
    const { endpointId, streak: s } = write;
    failing.push(endpointId);
    const row = streakRow(endpointId, s);
    await trx
      .insertInto('endpoint_health')
      .values(row)
      .onConflict((oc) =>
        oc.column('endpoint_id').doUpdateSet((eb) =>
          write.kind === 'restart'
            ? { consecutive_failures: row.consecutive_failures, failing_since: row.failing_since, last_failure_at: row.last_failure_at, last_failure_code: row.last_failure_code, recovered_at: row.recovered_at }
            : {
                consecutive_failures: eb('endpoint_health.consecutive_failures', '+', s.failures),
                failing_since: eb.fn.coalesce('endpoint_health.failing_since', eb.val(s.firstFailureAt)),
                last_failure_at: s.lastFailureAt,
                last_failure_code: s.lastFailureCode,
              },
        ),
      )
      .execute();
  }
  if (policy.disableAfterMs === null || failing.length === 0) return [];
  const due = await trx
    .selectFrom('endpoint_health')
    .select('endpoint_id')
    .where('endpoint_id', 'in', failing)
    .where('failing_since', '<=', now - policy.disableAfterMs)
    .where('disabled_at', 'is', null)
    .orderBy('endpoint_id')
    .execute();
  if (due.length === 0) return [];
  const ids = due.map((r) => r.endpoint_id);
  // updated_at changes so that dispatchers' cached targets see the endpoint as disabled.
  await trx.updateTable('endpoints').set({ disabled: 1, updated_at: nextEndpointVersion(now) }).where('id', 'in', ids).where('disabled', '=', 0).execute();
  await trx.updateTable('endpoint_health').set({ disabled_at: now }).where('endpoint_id', 'in', ids).execute();
  return ids;
}

/** Of these endpoints (those that failed in a batch), the ones deleted meanwhile. */
async function deletedAmong(trx: Transaction<Database>, endpointIds: readonly string[]): Promise<Set<string>> {
  if (endpointIds.length === 0) return new Set();
  const existing = new Set((await trx.selectFrom('endpoints').select('id').where('id', 'in', endpointIds).execute()).map((r) => r.id));
  return new Set(endpointIds.filter((id) => !existing.has(id)));
}

/** The endpoint's failure tracking as the API shows it; an endpoint that never failed has an empty record. */
export async function readEndpointHealth(db: Kysely<Database>, endpointId: string): Promise<EndpointHealth> {
  const row = await db.selectFrom('endpoint_health').selectAll().where('endpoint_id', '=', endpointId).executeTakeFirst();
  return {
    consecutiveFailures: row?.consecutive_failures ?? 0,
    failingSince: row?.failing_since ?? null,
    lastFailureAt: row?.last_failure_at ?? null,
    lastFailureCode: row?.last_failure_code ?? null,
    recoveredAt: row?.recovered_at ?? null,
    disabledAt: row?.disabled_at ?? null,
  };
}

/**
 * An endpoint enabled again gets a fresh start: otherwise its old streak would disable it again
 * at its next failure. Run after the endpoint's own update has committed, not inside it, so the
 * API never holds an endpoint row while waiting for a health row (the dispatcher locks them in
 * the other order).
 */
export async function clearDisabledStreak(db: Kysely<Database>, endpointId: string): Promise<void> {
  await db.updateTable('endpoint_health').set({ consecutive_failures: 0, failing_since: null, disabled_at: null }).where('endpoint_id', '=', endpointId).where('disabled_at', 'is not', null).execute();
}
