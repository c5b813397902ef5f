import type { DeliveryOutcome, HealthPolicy } from '../storage.js';
import { planHealthWrites, recoveringEndpoints, streakRow, summarizeStreaks } from '../stores/endpoint-health-store.js';
import type { SqliteHotPath } from './sqlite-hot-path.js';
import { NEXT_ENDPOINT_VERSION_SQL } from '../stores/endpoint-version.js';

const IN_STREAK = 'SELECT 1 FROM endpoint_health WHERE endpoint_id = ? AND consecutive_failures > 0';
const RECOVER = 'UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL, recovered_at = ? WHERE endpoint_id = ? AND consecutive_failures > 0';
const RESTART = `INSERT INTO endpoint_health (endpoint_id, consecutive_failures, failing_since, last_failure_at, last_failure_code, recovered_at, disabled_at)
  VALUES (@endpoint_id, @consecutive_failures, @failing_since, @last_failure_at, @last_failure_code, @recovered_at, NULL)
  ON CONFLICT (endpoint_id) DO UPDATE SET consecutive_failures = excluded.consecutive_failures, failing_since = excluded.failing_since,
    last_failure_at = excluded.last_failure_at, last_failure_code = excluded.last_failure_code, recovered_at = excluded.recovered_at`;
const EXTEND = `INSERT INTO endpoint_health (endpoint_id, consecutive_failures, failing_since, last_failure_at, last_failure_code, recovered_at, disabled_at)
  VALUES (@endpoint_id, @consecutive_failures, @failing_since, @last_failure_at, @last_failure_code, NULL, NULL)
  ON CONFLICT (endpoint_id) DO UPDATE SET consecutive_failures = endpoint_health.consecutive_failures + excluded.consecutive_failures,
    failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), last_failure_at = excluded.last_failure_at, last_failure_code = excluded.last_failure_code`;
const DUE_TO_DISABLE = 'SELECT 1 FROM endpoint_health WHERE endpoint_id = ? AND failing_since <= ? AND disabled_at IS NULL';
const DISABLE_ENDPOINT = `UPDATE endpoints SET disabled = 1, updated_at = ${NEXT_ENDPOINT_VERSION_SQL} WHERE id = ? AND disabled = 0`;
const MARK_DISABLED = 'UPDATE endpoint_health SET disabled_at = ? WHERE endpoint_id = ?';
const ENDPOINT_EXISTS = 'SELECT 1 FROM endpoints WHERE id = ?';

/**
 * recordEndpointHealth (stores/endpoint-health-store.ts) as prepared statements, for SQLite's
 * synchronous attempt-recording transaction: the same plan, one indexed lookup per endpoint that
 * only succeeded, and writes only for failing or recovering endpoints. Must run inside that
 * transaction. Returns the endpoints it disabled.
 */
export function recordEndpointHealthSync(sqlite: SqliteHotPath, outcomes: readonly DeliveryOutcome[], policy: HealthPolicy, now: number): string[] {
  const streaks = summarizeStreaks(outcomes);
  if (streaks.size === 0) return [];
  const inStreak = new Set(recoveringEndpoints(streaks).filter((id) => sqlite.statement(IN_STREAK).get(id) !== undefined));
  const failing: string[] = [];
  for (const write of planHealthWrites(streaks, inStreak)) {
    if (write.kind === 'recover') {
      sqlite.statement(RECOVER).run(write.at, write.endpointId);
      continue;
    }
    // As in recordEndpointHealth: an endpoint deleted while its request was in flight is skipped,
    // or its health row's foreign key would fail the batch on every retry.
    if (sqlite.statement(ENDPOINT_EXISTS).get(write.endpointId) === undefined) continue;
    failing.push(write.endpointId);
    const { disabled_at: _unset, recovered_at, ...row } = streakRow(write.endpointId, write.streak);
    if (write.kind === 'restart') sqlite.statement(RESTART).run({ ...row, recovered_at });
    else sqlite.statement(EXTEND).run(row);
  }
  if (policy.disableAfterMs === null) return [];
  const disabled = failing.filter((id) => sqlite.statement(DUE_TO_DISABLE).get(id, now - policy.disableAfterMs!) !== undefined);
  for (const id of disabled) {
    // updated_at changes so that the dispatcher's cached target sees the endpoint as disabled.
    sqlite.statement(DISABLE_ENDPOINT).run(now, now, id);
    sqlite.statement(MARK_DISABLED).run(now, id);
  }
  return disabled;
}
