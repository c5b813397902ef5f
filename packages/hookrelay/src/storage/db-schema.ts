/**
 * Row shapes of the database tables, as Kysely sees them (snake_case, epoch-ms integers, JSON
 * columns as text). Nothing outside src/storage imports these: the domain types are in models.ts.
 */
import type { Generated } from 'kysely';

export interface ApplicationRow {
  id: string;
  uid: string | null;
  name: string;
  rate_limit: number | null;
  metadata: string;
  created_at: number;
  updated_at: number;
}

export interface EndpointRow {
  id: string;
  app_id: string;
  uid: string | null;
  url: string;
  description: string;
  disabled: number;
  /** JSON array, or null for "all event types". */
  filter_types: string | null;
  channels: string | null;
  rate_limit: number | null;
  metadata: string;
  headers: string;
  version: number;
  created_at: number;
  updated_at: number;
}

export interface EndpointSecretRow {
  id: Generated<number>;
  endpoint_id: string;
  /** AES-256-GCM sealed `whsec_` key (secrets/secret-box.ts). */
  key_sealed: string;
  created_at: number;
  /** null for the current key; when the grace period of a rotated-out key ends otherwise. */
  expires_at: number | null;
}

export interface EventTypeRow {
  name: string;
  description: string;
  archived: number;
  deprecated: number;
  schemas: string | null;
  feature_flag: string | null;
  group_name: string | null;
  created_at: number;
  updated_at: number;
}

export interface MessageRow {
  id: string;
  app_id: string;
  event_type: string;
  event_id: string | null;
  /** '{}' once the content was expunged (expunged_at set). */
  payload: string;
  channels: string | null;
  tags: string | null;
  created_at: number;
  /** When the payload was expunged; null while it is the original. Tells an expunged '{}' from a real one. */
  expunged_at: number | null;
}

/** One message to one endpoint: the unit the dispatcher claims, sends and retries. */
export interface DeliveryRow {
  id: Generated<number>;
  msg_id: string;
  endpoint_id: string;
  app_id: string;
  /** DeliveryStatus: 0 success, 1 pending, 2 failed for good. */
  status: number;
  attempts: number;
  /** When the next attempt is due (or the lease of a claimed one ends); null once finished. */
  next_attempt_at: number | null;
  /** Set by a claim; completion must present it, so a claimer whose lease ran out cannot overwrite. */
  lease_token: string | null;
  trigger_type: number;
  created_at: number;
  updated_at: number;
}

export interface AttemptRow {
  id: string;
  msg_id: string;
  endpoint_id: string;
  app_id: string;
  url: string;
  status: number;
  response_status_code: number;
  response: string;
  response_duration_ms: number;
  trigger_type: number;
  error_code: string | null;
  created_at: number;
}

export interface ApiKeyRow {
  id: string;
  name: string;
  key_hash: string;
  created_at: number;
}

export interface IdempotencyKeyRow {
  scope: string;
  key: string;
  request_hash: string;
  status_code: number | null;
  response_body: string | null;
  created_at: number;
  expires_at: number;
}

/** A token bucket per rate-limited endpoint: tokens refill at rateLimit per second up to a small burst. */
export interface EndpointRateBucketRow {
  endpoint_id: string;
  tokens: number;
  refilled_at: number;
}

/** One endpoint's current failing streak, shared by every dispatcher (see migration 0004). */
export interface EndpointHealthRow {
  endpoint_id: string;
  consecutive_failures: number;
  failing_since: number | null;
  last_failure_at: number | null;
  last_failure_code: string | null;
  /** When a success last ended a failing streak. */
  recovered_at: number | null;
  /** When failure tracking disabled the endpoint; cleared when the endpoint is enabled again. */
  disabled_at: number | null;
}

export interface Database {
  applications: ApplicationRow;
  endpoints: EndpointRow;
  endpoint_secrets: EndpointSecretRow;
  event_types: EventTypeRow;
  messages: MessageRow;
  deliveries: DeliveryRow;
  attempts: AttemptRow;
  api_keys: ApiKeyRow;
  idempotency_keys: IdempotencyKeyRow;
  endpoint_rate_buckets: EndpointRateBucketRow;
  endpoint_health: EndpointHealthRow;
}
