import type { Application, Attempt, Endpoint, EndpointSecret, EventType, ListPage, Message, Metadata, PageRequest, TriggerType } from './models.js';

/**
 * The storage adapter interface. The API, the ingest path and the dispatcher depend on this only;
 * the engine is picked once, in the entry point (storage/open-storage.ts). Methods that find
 * nothing return null; unique violations throw HookrelayError('conflict').
 */
export interface Storage {
  readonly engine: 'sqlite' | 'postgres';
  readonly applications: ApplicationStore;
  readonly endpoints: EndpointStore;
  readonly eventTypes: EventTypeStore;
  readonly messages: MessageStore;
  readonly attempts: AttemptStore;
  readonly deliveries: DeliveryStore;
  readonly ingest: IngestStore;
  readonly apiKeys: ApiKeyStore;
  readonly idempotency: IdempotencyStore;
  readonly retention: RetentionStore;
  /** Throws when the database cannot answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface ApplicationFields {
  name: string;
  uid: string | null;
  rateLimit: number | null;
  metadata: Metadata;
}

export interface ApplicationStore {
  create(fields: ApplicationFields): Promise<Application>;
  /** By id (`app_...`) or by uid. */
  find(idOrUid: string): Promise<Application | null>;
  list(page: PageRequest): Promise<ListPage<Application>>;
  update(id: string, fields: ApplicationFields): Promise<Application>;
  /** Deletes the application with its endpoints, messages, deliveries and attempts. */
  delete(id: string): Promise<boolean>;
}

export interface EndpointFields {
  url: string;
  uid: string | null;
  description: string;
  disabled: boolean;
  filterTypes: string[] | null;
  channels: string[] | null;
  rateLimit: number | null;
  metadata: Metadata;
  version: number;
}

export interface EndpointStore {
  /** `secret` is the plain `whsec_` key; it is encrypted before it is written. */
  create(appId: string, fields: EndpointFields, headers: Record<string, string>, secret: string): Promise<Endpoint>;
  /** By id (`ep_...`) or uid, within the application. */
  find(appId: string, idOrUid: string): Promise<Endpoint | null>;
  list(appId: string, page: PageRequest): Promise<ListPage<Endpoint>>;
  update(appId: string, id: string, fields: EndpointFields): Promise<Endpoint>;
  setHeaders(appId: string, id: string, headers: Record<string, string>): Promise<Endpoint>;
  delete(appId: string, id: string): Promise<boolean>;
  /**
   * Whether this store's master key opens the secrets already stored (tried on the newest one);
   * true when none is stored yet.
   */
  secretsReadable(): Promise<boolean>;
  /** Failure tracking of an endpoint of the application; null when the endpoint is unknown. */
  health(appId: string, idOrUid: string): Promise<EndpointHealth | null>;
  /** Current key first, then rotated-out keys still inside their grace period. */
  secrets(endpointId: string, now: number): Promise<EndpointSecret[]>;
  /** Makes `newSecret` current; the previous current key keeps signing until now + graceMs. */
  rotateSecret(endpointId: string, newSecret: string, graceMs: number): Promise<void>;
}

export interface EventTypeFields {
  description: string;
  archived: boolean;
  deprecated: boolean;
  schemas: unknown | null;
  featureFlag: string | null;
  groupName: string | null;
}

export interface EventTypeStore {
  create(name: string, fields: EventTypeFields): Promise<EventType>;
  find(name: string): Promise<EventType | null>;
  list(page: PageRequest & { includeArchived: boolean }): Promise<ListPage<EventType>>;
  /** Creates when absent (PUT semantics); `created` tells which. */
  upsert(name: string, fields: EventTypeFields): Promise<{ eventType: EventType; created: boolean }>;
  update(name: string, fields: EventTypeFields): Promise<EventType>;
  archive(name: string): Promise<boolean>;
}

export interface MessageListFilter {
  eventTypes?: string[];
  channel?: string;
  /** Only messages carrying this tag. */
  tag?: string;
  /** epoch ms: only messages created before / after. */
  before?: number;
  after?: number;
}

export interface MessageStore {
  /** By id (`msg_...`) or by eventId, within the application. */
  find(appId: string, idOrEventId: string): Promise<Message | null>;
  list(appId: string, page: PageRequest, filter: MessageListFilter): Promise<ListPage<Message>>;
  /** The messages of the application among `ids` (by id only), in no particular order; unknown ids are left out. */
  findMany(appId: string, ids: readonly string[]): Promise<Message[]>;
  /**
   * Replaces the stored payload with `{}` and marks the message expunged, so no later delivery of
   * it is sent (DeliveryStore.loadContext leaves it out). False when the message is unknown.
   * Expunging twice is harmless.
   */
  expungeContent(appId: string, msgId: string, now: number): Promise<boolean>;
}

export interface AttemptListFilter {
  status?: number;
  /**
   * Svix's StatusCodeClass: 0 for attempts without a response (status code 0 to 99), otherwise
   * the first code of a hundred (200: 200 to 299).
   */
  statusCodeClass?: number;
  before?: number;
  after?: number;
  endpointId?: string;
  /** Filters on the attempt's message: its event type is one of these, it has this channel, this tag. */
  eventTypes?: string[];
  channel?: string;
  tag?: string;
}

export interface AttemptStore {
  listByEndpoint(appId: string, endpointId: string, page: PageRequest, filter: AttemptListFilter): Promise<ListPage<Attempt>>;
  listByMessage(appId: string, msgId: string, page: PageRequest, filter: AttemptListFilter): Promise<ListPage<Attempt>>;
  find(appId: string, msgId: string, attemptId: string): Promise<Attempt | null>;
}

/** A claimed delivery, with what the dispatcher needs to send it. */
export interface ClaimedDelivery {
  deliveryId: number;
  leaseToken: string;
  msgId: string;
  appId: string;
  endpointId: string;
  /** Attempts made before this one. */
  attempts: number;
  triggerType: TriggerType;
  /**
   * Set by engines whose claim reads them in the same round trip (both engines): the message's
   * content (null when it was expunged or deleted) and the endpoint's updatedAt, against which a
   * dispatcher's cached target is checked. Absent: loadContext reads them.
   */
  content?: { payload: string; createdAt: number } | null;
  endpointUpdatedAt?: number;
}

export interface DeliveryTarget {
  updatedAt: number;
  /** Sends per second at most (Svix's endpoint rateLimit), or null for no limit. */
  rateLimit: number | null;
  /** When the earliest rotated-out key stops signing: a cached target is stale from then on. */
  validUntil: number;
  url: string;
  headers: Record<string, string>;
  disabled: boolean;
  /** Plain `whsec_` keys: current first, then rotated-out keys still in their grace period. */
  secrets: string[];
}

export interface DeliveryContext {
  messages: Map<string, { payload: string; createdAt: number }>;
  endpoints: Map<string, DeliveryTarget>;
}

export interface DeliveryOutcome {
  deliveryId: number;
  leaseToken: string;
  attempt: Attempt;
  /** What the attempt says about the endpoint's health; null when no request was made (a refusal). */
  health: 'success' | 'failure' | null;
  /** epoch ms of the next attempt, or null when the delivery is finished (success or given up). */
  nextAttemptAt: number | null;
}

/** What the API accepted, to be written with its deliveries in one transaction. */
export interface AcceptItem {
  message: Message;
  /** When the request carried an Idempotency-Key: its completed response, written atomically. */
  idempotency: { scope: string; key: string; statusCode: number; body: string } | null;
}

/** A delivery created by fan-out; `leased` when it was written already claimed (see AcceptLease). */
export interface AcceptedDelivery {
  deliveryId: number;
  endpointId: string;
  endpointUpdatedAt: number;
  leased: boolean;
}

export type AcceptOutcome = { ok: true; deliveries: AcceptedDelivery[] } | { ok: false; error: Error };

/**
 * Lets the writer hand deliveries straight to a dispatcher in the same process: deliveries to
 * endpoints that `accepts` are written already leased (as if claimed), so the dispatcher can send
 * them from memory without a claim query. If it dies first, the lease runs out and any claimer
 * takes them, as after any crash.
 */
export interface AcceptLease {
  token: string;
  until: number;
  accepts(endpoint: Endpoint): boolean;
}

/** Picks the endpoints (of the message's application, not disabled) a message goes to. */
export type FanOut = (endpoints: readonly Endpoint[], message: Message) => readonly Endpoint[];

export interface IngestStore {
  /**
   * Writes each message and one pending delivery per endpoint that `fanOut` picks, due at
   * message.createdAt, all in as few transactions as possible (group commit). A duplicate eventId
   * or a vanished application fails that item alone.
   */
  acceptBatch(items: readonly AcceptItem[], fanOut: FanOut, lease?: AcceptLease | null): Promise<AcceptOutcome[]>;
}

export interface BacklogStats {
  /** Pending deliveries whose next attempt is due now. */
  due: number;
  /** Age in ms of the oldest due delivery (0 when none). */
  oldestDueAgeMs: number;
}

/** An endpoint's deliveries by state (Svix's EndpointStats). */
export interface EndpointDeliveryCounts {
  success: number;
  /** Failed after their last attempt. */
  fail: number;
  /** Waiting for their first attempt or a retry (due or not), and held by no dispatcher. */
  pending: number;
  /** Held by a dispatcher whose lease has not run out. */
  sending: number;
}

/** Bounds on the deliveries' created_at, epoch ms, both inclusive; null: unbounded. */
export interface CreatedWindow {
  since: number | null;
  until: number | null;
}

/** Failure tracking: when an endpoint whose every attempt fails is disabled. */
export interface HealthPolicy {
  /** Disable after this long without a success since the first failure; null: never. */
  disableAfterMs: number | null;
}

/** An endpoint's current failing streak (epoch ms timestamps). */
export interface EndpointHealth {
  consecutiveFailures: number;
  failingSince: number | null;
  lastFailureAt: number | null;
  lastFailureCode: string | null;
  recoveredAt: number | null;
  disabledAt: number | null;
}

/** The per-endpoint cap that every dispatcher on the database shares (see DeliveryStore.claimDue). */
export interface SharedEndpointCap {
  /** Requests in flight to one endpoint at most, over all dispatchers. */
  inFlight: number;
  passedOver: Set<string>;
  /**
   * Set by engines that learn it in the claim's own round trip (PostgreSQL), when the claim took
   * nothing: when the next pending delivery falls due, null if none is. Left undefined otherwise,
   * and the dispatcher asks DeliveryStore.nextDueAt.
   */
  nextDueAt?: number | null;
}

/** How many deliveries a claim may take from one endpoint: one cap for all, or some endpoints' own. */
export type PerEndpointCap = number | { fallback: number; byEndpoint: ReadonlyMap<string, number> };

export function capOf(perEndpoint: PerEndpointCap): (endpointId: string) => number {
  if (typeof perEndpoint === 'number') return () => perEndpoint;
  return (endpointId) => perEndpoint.byEndpoint.get(endpointId) ?? perEndpoint.fallback;
}

/** What a resend did: `scheduled`, or nothing because the content was `expunged` or the message is `gone`. */
export type ResendOutcome = 'scheduled' | 'expunged' | 'gone';

export interface DeliveryStore {
  /**
   * Claims up to `limit` due deliveries under a lease: each one's next attempt moves to
   * now + leaseMs, so a claimer that dies lets them fall due again. At most `perEndpoint` are taken
   * from one endpoint, and endpoints in `skipEndpoints` (saturated here) are passed over.
   * Engines where several dispatchers share each endpoint's in-flight cap (PostgreSQL) also count
   * the endpoint's live leases against `shared.inFlight` (default: the per-claim cap), and add to
   * `shared.passedOver` the endpoints whose due deliveries they left behind for that reason.
   */
  claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[], shared?: SharedEndpointCap): Promise<ClaimedDelivery[]>;
  /** Endpoint targets with plain signing keys, and when each was last changed. */
  loadTargets(endpointIds: readonly string[], now: number): Promise<Map<string, DeliveryTarget>>;
  /**
   * Payloads and endpoint targets (with plain signing keys) for a batch of claims. Messages whose
   * content was expunged are left out, as deleted ones are: nothing of theirs is sent any more.
   */
  loadContext(msgIds: readonly string[], endpointIds: readonly string[], now: number): Promise<DeliveryContext>;
  /**
   * Records attempts, moves deliveries on and updates the endpoints' failing streaks, in one
   * transaction; stale leases are ignored. Returns the endpoints that the policy disabled.
   *
   * A batch may be completed again after an error, whole or with more outcomes added: the error
   * may have come after the commit (a lost acknowledgement), so an attempt whose id is stored
   * already is left as it is and counts toward its endpoint's health no more, and a delivery whose
   * lease the first call gave up matches nothing. The repeat cannot fail on what the first call
   * stored, and each attempt is recorded, and counted, once. (Endpoints the first call disabled
   * are not returned again.)
   */
  complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }>;
  /** Gives claimed deliveries back, due at once (graceful shutdown). */
  release(claims: readonly { deliveryId: number; leaseToken: string }[]): Promise<void>;
  /** Gives claimed deliveries back, each due at its own time, without counting an attempt. */
  defer(deferrals: readonly { deliveryId: number; leaseToken: string; dueAt: number }[]): Promise<void>;
  /**
   * Takes up to `want` sends from the endpoint's token bucket, which refills at `ratePerSecond`
   * and is shared by every dispatcher on the database; returns how many were granted.
   */
  takeSendTokens(endpointId: string, ratePerSecond: number, want: number, now: number): Promise<number>;
  /**
   * Schedules a manual resend of a message to an endpoint, due now. Nothing is written when the
   * message's content was expunged (there is nothing to send) or the message no longer exists.
   */
  resend(appId: string, msgId: string, endpointId: string, now: number): Promise<ResendOutcome>;
  /**
   * The endpoint's deliveries created within `window`, by state at `now`. A delivery whose lease
   * ran out counts as pending: its claimer is presumed gone and any other may take it.
   */
  countByEndpoint(endpointId: string, now: number, window: CreatedWindow): Promise<EndpointDeliveryCounts>;
  /** epoch ms of the earliest pending next attempt, or null. */
  nextDueAt(): Promise<number | null>;
  backlog(now: number): Promise<BacklogStats>;
}

export interface ApiKeyStore {
  create(name: string, keyHash: string): Promise<{ id: string }>;
  existsByHash(keyHash: string): Promise<boolean>;
  count(): Promise<number>;
}

export interface StoredResponse {
  requestHash: string;
  statusCode: number | null;
  body: string | null;
}

export interface IdempotencyStore {
  /**
   * Reserves `key` in `scope` for a request; returns null if it was free (the caller proceeds),
   * or what is stored under it (statusCode null: still in progress).
   */
  reserve(scope: string, key: string, requestHash: string, now: number, ttlMs: number): Promise<StoredResponse | null>;
  complete(scope: string, key: string, statusCode: number, body: string): Promise<void>;
  /** Frees a reservation whose request failed, so the client may retry with the same key. */
  abandon(scope: string, key: string): Promise<void>;
}

/** What one retention batch removed; all zero means nothing expired is left. */
export interface RetentionBatchResult {
  messages: number;
  deliveries: number;
  attempts: number;
  idempotencyKeys: number;
}

/**
 * How far the batches of one sweep have walked, by id: the next batch starts there rather than
 * at the oldest row. Rows a sweep must keep (a message whose delivery is still pending, and that
 * delivery) are then walked past once per sweep instead of once per batch. Start each sweep
 * with newRetentionCursor(): rows kept by one sweep may be deletable by the next.
 */
export interface RetentionCursor {
  /** Deliveries: the highest message id a deleted delivery had (a message's others may remain). */
  deliveriesFrom: string | null;
  /** Messages: the highest id deleted so far. */
  messagesAfter: string | null;
}

export function newRetentionCursor(): RetentionCursor {
  return { deliveriesFrom: null, messagesAfter: null };
}

export interface RetentionStore {
  /**
   * Deletes one batch of expired data, at most `limit` rows of each kind, each kind in a short
   * transaction of its own: attempts made before `cutoff` (epoch ms), finished deliveries of
   * messages created before it, those messages once none of their deliveries is left (a message
   * with a pending delivery stays), and idempotency keys expired at `now`. A `cutoff` of 0 keeps
   * messages and attempts. Starts where `cursor` says and advances it past what it walked;
   * without one, each call starts from the oldest rows.
   */
  deleteExpiredBatch(cutoff: number, now: number, limit: number, cursor?: RetentionCursor): Promise<RetentionBatchResult>;
}
