/**
 * Failure tracking per endpoint, written with the attempts in the same transaction by whichever
 * dispatcher made them, so every worker sees one streak per endpoint. A row exists once an
 * endpoint has failed; a success ends the streak (consecutive_failures 0, failing_since null).
 */
export const up = `
CREATE TABLE endpoint_health (
  endpoint_id TEXT PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
  consecutive_failures INTEGER NOT NULL,
  failing_since INTEGER,
  last_failure_at INTEGER,
  last_failure_code TEXT,
  recovered_at INTEGER,
  disabled_at INTEGER
);
`;
