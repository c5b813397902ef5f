/** Token buckets of endpoints with a rateLimit, shared by every dispatcher on the database. */
export const up = `
CREATE TABLE endpoint_rate_buckets (
  endpoint_id TEXT PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
  tokens REAL NOT NULL,
  refilled_at INTEGER NOT NULL
);
`;
