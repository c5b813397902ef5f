/** Token buckets of endpoints with a rateLimit, shared by every dispatcher on the database. */
export const up = `
CREATE TABLE endpoint_rate_buckets (
  endpoint_id TEXT COLLATE "C" PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
  tokens DOUBLE PRECISION NOT NULL,
  refilled_at BIGINT NOT NULL
);
`;
