/**
 * As sqlite/migrations/0004-endpoint-health.ts, plus an index that only PostgreSQL needs: there,
 * several worker processes share each endpoint's concurrency cap, and a claim counts the
 * endpoint's live leases. Only leased rows are in it, so it stays small whatever the history.
 */
export const up = `
CREATE TABLE endpoint_health (
  endpoint_id TEXT COLLATE "C" PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
  consecutive_failures INTEGER NOT NULL,
  failing_since BIGINT,
  last_failure_at BIGINT,
  last_failure_code TEXT,
  recovered_at BIGINT,
  disabled_at BIGINT
);
CREATE INDEX deliveries_leased ON deliveries (endpoint_id, next_attempt_at) WHERE lease_token IS NOT NULL;
`;
