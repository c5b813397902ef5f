/** Core outbound delivery schema. Timestamps are epoch milliseconds; JSON columns are text. */
export const up = `
CREATE TABLE applications (
  id TEXT PRIMARY KEY,
  uid TEXT UNIQUE,
  name TEXT NOT NULL,
  rate_limit INTEGER,
  metadata TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE endpoints (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
  uid TEXT,
  url TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  disabled INTEGER NOT NULL DEFAULT 0,
  filter_types TEXT,
  channels TEXT,
  rate_limit INTEGER,
  metadata TEXT NOT NULL DEFAULT '{}',
  headers TEXT NOT NULL DEFAULT '{}',
  version INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_by_app ON endpoints (app_id, id);

CREATE TABLE endpoint_secrets (
  id INTEGER PRIMARY KEY,
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  key_sealed TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER
);
CREATE INDEX endpoint_secrets_by_endpoint ON endpoint_secrets (endpoint_id);

CREATE TABLE event_types (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  archived INTEGER NOT NULL DEFAULT 0,
  deprecated INTEGER NOT NULL DEFAULT 0,
  schemas TEXT,
  feature_flag TEXT,
  group_name TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
  event_type TEXT NOT NULL,
  event_id TEXT,
  payload TEXT NOT NULL,
  channels TEXT,
  tags TEXT,
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_unique_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX messages_by_app ON messages (app_id, id);

CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  app_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  lease_token TEXT,
  trigger_type INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (msg_id, endpoint_id)
);
-- The claim query walks this in due order; endpoint_id is included so skipping saturated
-- endpoints needs no table lookups.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, endpoint_id) WHERE status = 1;
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id);

CREATE TABLE attempts (
  id TEXT PRIMARY KEY,
  msg_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  app_id TEXT NOT NULL,
  url TEXT NOT NULL,
  status INTEGER NOT NULL,
  response_status_code INTEGER NOT NULL,
  response TEXT NOT NULL,
  response_duration_ms INTEGER NOT NULL,
  trigger_type INTEGER NOT NULL,
  error_code TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX attempts_by_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_by_msg ON attempts (msg_id, id);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status_code INTEGER,
  response_body TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
`;
