import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import type { Database, DeliveryRow } from '../db-schema.js';
import { DeliveryStatus, TriggerType } from '../models.js';
import { capOf, type BacklogStats, type ClaimedDelivery, type CreatedWindow, type DeliveryContext, type DeliveryOutcome, type DeliveryStore, type DeliveryTarget, type EndpointDeliveryCounts, type HealthPolicy, type PerEndpointCap, type ResendOutcome } from '../storage.js';
import type { SecretBox } from '../../secrets/secret-box.js';
import { rateLimitBurst } from '../../core/rate-limit.js';

/** How many due rows a claim looks at per row it may take, so per-endpoint caps can still fill a batch. */
const SCAN_FACTOR = 4;
/** Endpoints with pending deliveries a claim visits at most when it reads endpoint by endpoint. */
const MAX_ENDPOINTS_PER_CLAIM = 1000;

/** Keeps at most `perEndpoint` candidates per endpoint, in order, so one busy endpoint cannot fill the batch. */
export function pickPerEndpoint(candidates: readonly { id: number; endpoint_id: string }[], limit: number, perEndpoint: PerEndpointCap): number[] {
  const picked: number[] = [];
  const perEndpointCount = new Map<string, number>();
  const capFor = capOf(perEndpoint);
  for (const row of candidates) {
    const count = perEndpointCount.get(row.endpoint_id) ?? 0;
    if (count >= capFor(row.endpoint_id)) continue;
    perEndpointCount.set(row.endpoint_id, count + 1);
    picked.push(row.id);
    if (picked.length >= limit) break;
  }
  return picked;
}

/** The columns a lease returns for each row it took. */
export type LeasedRow = Pick<Selectable<DeliveryRow>, 'id' | 'msg_id' | 'app_id' | 'endpoint_id' | 'attempts' | 'trigger_type'>;

export function claimedFromRow(row: LeasedRow, leaseToken: string): ClaimedDelivery {
  return {
    deliveryId: Number(row.id),
    leaseToken,
    msgId: row.msg_id,
    appId: row.app_id,
    endpointId: row.endpoint_id,
    attempts: row.attempts,
    triggerType: row.trigger_type === TriggerType.Manual ? TriggerType.Manual : TriggerType.Scheduled,
  };
}

export abstract class KyselyDeliveryStore implements DeliveryStore {
  readonly #db: Kysely<Database>;
  readonly #secretBox: SecretBox;
  /** Opened secrets by sealed text: decryption happens once per key, not once per delivery. */
  readonly #opened = new Map<string, string>();

  constructor(db: Kysely<Database>, secretBox: SecretBox) {
    this.#db = db;
    this.#secretBox = secretBox;
  }

  /**
   * The claim where one dispatcher claims at a time (SQLite; PostgreSQL overrides it). Reads are
   * bounded by rows, not by backlog: one walk of the due index in due order, at most SCAN_FACTOR
   * rows per row wanted, with endpoints passed over (saturated or paced here) and rows over an
   * endpoint's cap left out as they come. When that walk is used up with room left, its rows were
   * mostly the backlog of such endpoints, and other endpoints' due rows may lie behind it: they are
   * then read endpoint by endpoint (#pickByEndpoint). Leaving the passed-over endpoints out in the
   * walk's own query instead made every claim read their whole backlog (78 ms at a million rows).
   */
  async claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[]): Promise<ClaimedDelivery[]> {
    const budget = limit * SCAN_FACTOR;
    const walked = await this.#db
      .selectFrom('deliveries')
      .select(['id', 'endpoint_id'])
      .where('status', '=', DeliveryStatus.Pending)
      .where('next_attempt_at', '<=', now)
      .orderBy('next_attempt_at')
      .limit(budget)
      .execute();
    const skip = new Set(skipEndpoints);
    let picked = pickPerEndpoint(
      walked.filter((row) => !skip.has(row.endpoint_id)),
      limit,
      perEndpoint,
    );
    if (picked.length < limit && walked.length === budget) picked = await this.#pickByEndpoint(now, limit, perEndpoint, skip, walked, picked);
    // The UPDATE re-checks that each picked row is still due, so a concurrent claimer that got
    // there first (its lease moved next_attempt_at into the future) is never overridden.
    return picked.length === 0 ? [] : this.leasePicked(this.#db, picked, now, leaseMs);
  }

  /**
   * Adds to `picked` (rows of `walked`) due rows read endpoint by endpoint through the partial
   * index deliveries_due_by_endpoint: the endpoints with pending rows, found by a skip scan (one
   * index seek each, at most MAX_ENDPOINTS_PER_CLAIM of them); of those due now and not passed
   * over, in the order of their oldest due row, each up to what is left of its cap.
   */
  async #pickByEndpoint(now: number, limit: number, perEndpoint: PerEndpointCap, skip: ReadonlySet<string>, walked: readonly { id: number; endpoint_id: string }[], picked: readonly number[]): Promise<number[]> {
    const pending = DeliveryStatus.Pending;
    const { rows: heads } = await sql<{ endpoint_id: string; head: number | null }>`
      WITH RECURSIVE ep(id) AS (
        SELECT (SELECT endpoint_id FROM deliveries WHERE status = ${pending} ORDER BY endpoint_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.endpoint_id FROM deliveries d WHERE d.status = ${pending} AND d.endpoint_id > ep.id ORDER BY d.endpoint_id LIMIT 1)
        FROM ep WHERE ep.id IS NOT NULL
        LIMIT ${MAX_ENDPOINTS_PER_CLAIM}
      )
      SELECT ep.id AS endpoint_id, (SELECT min(d.next_attempt_at) FROM deliveries d WHERE d.status = ${pending} AND d.endpoint_id = ep.id) AS head
      FROM ep WHERE ep.id IS NOT NULL`.execute(this.#db);
    const capFor = capOf(perEndpoint);
    const pickedIds = new Set(picked);
    const takenPerEndpoint = new Map<string, number>();
    for (const row of walked) if (pickedIds.has(row.id)) takenPerEndpoint.set(row.endpoint_id, (takenPerEndpoint.get(row.endpoint_id) ?? 0) + 1);
    const result = [...picked];
    const due = heads.filter((h) => h.head !== null && Number(h.head) <= now && !skip.has(h.endpoint_id)).sort((a, b) => Number(a.head) - Number(b.head));
    for (const { endpoint_id: endpointId } of due) {
      if (result.length >= limit) break;
      const taken = takenPerEndpoint.get(endpointId) ?? 0;
      const room = Math.min(capFor(endpointId) - taken, limit - result.length);
      if (room <= 0) continue;
      // Its oldest due rows, among which those the walk already picked.
      const rows = await this.#db
        .selectFrom('deliveries')
        .select('id')
        .where('status', '=', pending)
        .where('endpoint_id', '=', endpointId)
        .where('next_attempt_at', '<=', now)
        .orderBy('next_attempt_at')
        .limit(taken + room)
        .execute();
      let added = 0;
      for (const { id } of rows) {
        // Bounded by the room left as well: rows due at the same instant may come in another order.
        if (pickedIds.has(id) || added >= room) continue;
        result.push(id);
        added += 1;
      }
    }
    return result;
  }

  /** The database, for engine subclasses' own statements. */
  protected get db(): Kysely<Database> {
    return this.#db;
  }

  /** Leases the picked rows that are still due: their next attempt moves to now + leaseMs under a fresh token. */
  protected async leasePicked(db: Kysely<Database>, picked: readonly number[], now: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    const leaseToken = randomUUID();
    const rows = await db
      .updateTable('deliveries')
      .set({ next_attempt_at: now + leaseMs, lease_token: leaseToken, updated_at: now })
      .where('id', 'in', picked)
      .where('status', '=', DeliveryStatus.Pending)
      .where('next_attempt_at', '<=', now)
      .returning(['id', 'msg_id', 'app_id', 'endpoint_id', 'attempts', 'trigger_type'])
      .execute();
    return rows.map((row) => claimedFromRow(row, leaseToken));
  }

  async loadTargets(endpointIds: readonly string[], now: number): Promise<Map<string, DeliveryTarget>> {
    const targets = new Map<string, DeliveryTarget>();
    if (endpointIds.length === 0) return targets;
    const [endpoints, secrets] = await Promise.all([
      this.#db.selectFrom('endpoints').select(['id', 'url', 'headers', 'disabled', 'updated_at', 'rate_limit']).where('id', 'in', endpointIds).execute(),
      this.#db
        .selectFrom('endpoint_secrets')
        .select(['endpoint_id', 'key_sealed', 'expires_at'])
        .where('endpoint_id', 'in', endpointIds)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .orderBy('id', 'desc')
        .execute(),
    ]);
    for (const e of endpoints) {
      targets.set(e.id, {
        updatedAt: e.updated_at,
        rateLimit: e.rate_limit !== null && e.rate_limit > 0 ? e.rate_limit : null,
        validUntil: Number.MAX_SAFE_INTEGER,
        url: e.url,
        headers: JSON.parse(e.headers) as Record<string, string>,
        disabled: e.disabled === 1,
        secrets: [],
      });
    }
    // Current key (expires_at null) first, then rotated-out keys newest first.
    secrets.sort((a, b) => (a.expires_at === null ? 0 : 1) - (b.expires_at === null ? 0 : 1));
    for (const s of secrets) {
      const target = targets.get(s.endpoint_id);
      if (!target) continue;
      target.secrets.push(this.#open(s.key_sealed));
      if (s.expires_at !== null) target.validUntil = Math.min(target.validUntil, s.expires_at);
    }
    return targets;
  }

  async loadContext(msgIds: readonly string[], endpointIds: readonly string[], now: number): Promise<DeliveryContext> {
    if (msgIds.length === 0) return { messages: new Map(), endpoints: new Map() };
    const [messages, endpoints] = await Promise.all([
      // An expunged message is left out as if deleted: the dispatcher records the delivery as a
      // final failed attempt (HOOKRELAY_GONE) instead of sending '{}' where the event's body was.
      this.#db.selectFrom('messages').select(['id', 'payload', 'created_at']).where('id', 'in', msgIds).where('expunged_at', 'is', null).execute(),
      this.loadTargets(endpointIds, now),
    ]);
    const context: DeliveryContext = { messages: new Map(), endpoints };
    for (const m of messages) context.messages.set(m.id, { payload: m.payload, createdAt: m.created_at });
    return context;
  }

  #open(sealed: string): string {
    let plain = this.#opened.get(sealed);
    if (plain === undefined) {
      plain = this.#secretBox.open(sealed);
      if (this.#opened.size > 10_000) this.#opened.clear();
      this.#opened.set(sealed, plain);
    }
    return plain;
  }

  /** Engine-specific: SQLite runs prepared statements in one synchronous transaction, PostgreSQL one statement over arrays. */
  abstract complete(outcomes: readonly DeliveryOutcome[], policy: HealthPolicy): Promise<{ disabledEndpoints: string[] }>;

  async release(claims: readonly { deliveryId: number; leaseToken: string }[]): Promise<void> {
    const now = Date.now();
    await this.defer(claims.map((claim) => ({ ...claim, dueAt: now })));
  }

  async defer(deferrals: readonly { deliveryId: number; leaseToken: string; dueAt: number }[]): Promise<void> {
    if (deferrals.length === 0) return;
    const now = Date.now();
    await this.#db.transaction().execute(async (trx) => {
      for (const d of deferrals) {
        await trx
          .updateTable('deliveries')
          .set({ next_attempt_at: d.dueAt, lease_token: null, updated_at: now })
          .where('id', '=', d.deliveryId)
          .where('lease_token', '=', d.leaseToken)
          .execute();
      }
    });
  }

  async takeSendTokens(endpointId: string, ratePerSecond: number, want: number, now: number): Promise<number> {
    const capacity = rateLimitBurst(ratePerSecond);
    return this.#db.transaction().execute(async (trx) => {
      await trx.insertInto('endpoint_rate_buckets').values({ endpoint_id: endpointId, tokens: capacity, refilled_at: now }).onConflict((oc) => oc.column('endpoint_id').doNothing()).execute();
      // The refill and the take are one transaction: on PostgreSQL the first UPDATE holds the row
      // lock until commit, on SQLite the transaction holds the write lock, so two dispatchers can
      // never spend the same tokens.
      const refilled = await trx
        .updateTable('endpoint_rate_buckets')
        .set((eb) => ({
          tokens: sql<number>`CASE WHEN ${eb.ref('tokens')} + (${now} - ${eb.ref('refilled_at')}) * ${ratePerSecond} / 1000.0 > ${capacity} THEN ${capacity} ELSE ${eb.ref('tokens')} + (${now} - ${eb.ref('refilled_at')}) * ${ratePerSecond} / 1000.0 END`,
          refilled_at: sql<number>`CASE WHEN ${eb.ref('refilled_at')} > ${now} THEN ${eb.ref('refilled_at')} ELSE ${now} END`,
        }))
        .where('endpoint_id', '=', endpointId)
        .returning('tokens')
        .executeTakeFirstOrThrow();
      const granted = Math.max(0, Math.min(want, Math.floor(Number(refilled.tokens) + 1e-9)));
      if (granted > 0) {
        await trx
          .updateTable('endpoint_rate_buckets')
          .set((eb) => ({ tokens: eb('tokens', '-', granted) }))
          .where('endpoint_id', '=', endpointId)
          .execute();
      }
      return granted;
    });
  }

  async resend(appId: string, msgId: string, endpointId: string, now: number): Promise<ResendOutcome> {
    const db = this.#db;
    // One statement reads the message and writes the delivery, so a message expunged (or deleted)
    // before it gets nothing written. An expunge committed while it runs can still slip past on
    // PostgreSQL; the dispatcher then records that delivery as a failed HOOKRELAY_GONE attempt.
    // The casts give PostgreSQL the parameters' types, which an INSERT ... SELECT does not infer.
    const result = await db
      .insertInto('deliveries')
      .columns(['msg_id', 'endpoint_id', 'app_id', 'status', 'attempts', 'next_attempt_at', 'lease_token', 'trigger_type', 'created_at', 'updated_at'])
      .expression(
        db
          .selectFrom('messages')
          .select((eb) => [
            'id',
            eb.cast<string>(eb.val(endpointId), 'text').as('endpoint_id'),
            'app_id',
            eb.cast<number>(eb.val(DeliveryStatus.Pending), 'integer').as('status'),
            eb.cast<number>(eb.val(0), 'integer').as('attempts'),
            eb.cast<number>(eb.val(now), 'bigint').as('next_attempt_at'),
            eb.cast<string | null>(eb.val(null), 'text').as('lease_token'),
            eb.cast<number>(eb.val(TriggerType.Manual), 'integer').as('trigger_type'),
            eb.cast<number>(eb.val(now), 'bigint').as('created_at'),
            eb.cast<number>(eb.val(now), 'bigint').as('updated_at'),
          ])
          .where('app_id', '=', appId)
          .where('id', '=', msgId)
          .where('expunged_at', 'is', null),
      )
      .onConflict((oc) =>
        oc.columns(['msg_id', 'endpoint_id']).doUpdateSet({
          status: DeliveryStatus.Pending,
          attempts: 0,
          next_attempt_at: now,
          lease_token: null,
          trigger_type: TriggerType.Manual,
          updated_at: now,
        }),
      )
      .executeTakeFirst();
    if (Number(result.numInsertedOrUpdatedRows ?? 0) > 0) return 'scheduled';
    const message = await db.selectFrom('messages').select('expunged_at').where('app_id', '=', appId).where('id', '=', msgId).executeTakeFirst();
    return message ? 'expunged' : 'gone';
  }

  async countByEndpoint(endpointId: string, now: number, window: CreatedWindow): Promise<EndpointDeliveryCounts> {
    // A claim leaves the status pending and sets a lease; the lease is live while next_attempt_at
    // (its expiry) is in the future, the same test the PostgreSQL claim uses to count live leases.
    const leased = sql`lease_token IS NOT NULL AND next_attempt_at > ${now}`;
    const countWhere = (condition: RawBuilder<unknown>) => sql<number | string>`count(CASE WHEN ${condition} THEN 1 END)`;
    let query = this.#db
      .selectFrom('deliveries')
      .select([
        countWhere(sql`status = ${DeliveryStatus.Success}`).as('success'),
        countWhere(sql`status = ${DeliveryStatus.Fail}`).as('fail'),
        countWhere(sql`status = ${DeliveryStatus.Pending} AND NOT (${leased})`).as('pending'),
        countWhere(sql`status = ${DeliveryStatus.Pending} AND ${leased}`).as('sending'),
      ])
      .where('endpoint_id', '=', endpointId);
    if (window.since !== null) query = query.where('created_at', '>=', window.since);
    if (window.until !== null) query = query.where('created_at', '<=', window.until);
    const row = await query.executeTakeFirstOrThrow();
    // PostgreSQL's count is a bigint, which pg returns as a string.
    return { success: Number(row.success), fail: Number(row.fail), pending: Number(row.pending), sending: Number(row.sending) };
  }

  async nextDueAt(): Promise<number | null> {
    const row = await this.#db
      .selectFrom('deliveries')
      .select('next_attempt_at')
      .where('status', '=', DeliveryStatus.Pending)
      .orderBy('next_attempt_at')
      .limit(1)
      .executeTakeFirst();
    return row?.next_attempt_at ?? null;
  }

  async backlog(now: number): Promise<BacklogStats> {
    const row = await this.#db
      .selectFrom('deliveries')
      .select((eb) => [eb.fn.countAll<number>().as('due'), eb.fn.min('next_attempt_at').as('oldest')])
      .where('status', '=', DeliveryStatus.Pending)
      .where('next_attempt_at', '<=', now)
      .executeTakeFirstOrThrow();
    const oldest = row.oldest === null ? null : Number(row.oldest);
    return { due: Number(row.due), oldestDueAgeMs: oldest === null ? 0 : Math.max(0, now - oldest) };
  }
}
