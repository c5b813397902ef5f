import { sql, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import type { Database, DeliveryRow } from '../db-schema.js';
import { DeliveryStatus, TriggerType, UNFINISHED_DELIVERY_STATUSES } from '../models.js';
import { type BacklogStats, type ClaimedDelivery, type CreatedWindow, type DeliveryContext, type DeliveryOutcome, type DeliveryStore, type DeliveryTarget, type EndpointDeliveryCounts, type HealthPolicy, type PerEndpointCap, type ResendOutcome, type SharedEndpointCap } from '../storage.js';
import type { SecretBox } from '../../secrets/secret-box.js';
import { rateLimitBurst } from '../../core/rate-limit.js';

/** The columns a lease returns for each row it took. */
export type LeasedRow = Pick<Selectable<DeliveryRow>, 'id' | 'msg_id' | 'app_id' | 'endpoint_id' | 'attempts' | 'trigger_type'>;

/** What a claim can read in the same statement as its lease (ClaimedDelivery.content, endpointUpdatedAt). */
export interface ClaimContextColumns {
  /** Null when the message's content was expunged (or the message is gone). */
  payload: string | null;
  msg_created_at: number | string | null;
  endpoint_updated_at: number | string | null;
}

/**
 * Sets what the claim read alongside its lease on `claim`. An endpoint without an updatedAt (gone,
 * which its deliveries' foreign key should have prevented) leaves it unset, so the dispatcher
 * reads the batch's context afresh rather than trust a cached target.
 */
export function withClaimContext(claim: ClaimedDelivery, row: ClaimContextColumns): ClaimedDelivery {
  claim.content = row.payload === null || row.msg_created_at === null ? null : { payload: row.payload, createdAt: Number(row.msg_created_at) };
  if (row.endpoint_updated_at !== null) claim.endpointUpdatedAt = Number(row.endpoint_updated_at);
  return claim;
}

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
   * Claims under a lease (DeliveryStore.claimDue): each engine's own, SQLite's with one dispatcher
   * claiming at a time, PostgreSQL's with several sharing each endpoint's cap.
   */
  abstract claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[], shared?: SharedEndpointCap): Promise<ClaimedDelivery[]>;

  /** The database, for engine subclasses' own statements. */
  protected get db(): Kysely<Database> {
    return this.#db;
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
          // Pending again: on SQLite a leased row is "sending" (status 3); on PostgreSQL it stays 1.
          .set({ status: DeliveryStatus.Pending, next_attempt_at: d.dueAt, lease_token: null, updated_at: now })
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
    // A claim sets a lease, and the status "sending" on SQLite or leaves it pending on PostgreSQL;
    // the lease is live while next_attempt_at (its expiry) is in the future, the same test the
    // PostgreSQL claim uses to count live leases. An expired lease is a pending delivery.
    const leased = sql`lease_token IS NOT NULL AND next_attempt_at > ${now}`;
    const unfinished = sql`status IN (${sql.join(UNFINISHED_DELIVERY_STATUSES)})`;
    const countWhere = (condition: RawBuilder<unknown>) => sql<number | string>`count(CASE WHEN ${condition} THEN 1 END)`;
    let query = this.#db
      .selectFrom('deliveries')
      .select([
        countWhere(sql`status = ${DeliveryStatus.Success}`).as('success'),
        countWhere(sql`status = ${DeliveryStatus.Fail}`).as('fail'),
        countWhere(sql`${unfinished} AND NOT (${leased})`).as('pending'),
        countWhere(sql`${unfinished} AND ${leased}`).as('sending'),
      ])
      .where('endpoint_id', '=', endpointId);
    if (window.since !== null) query = query.where('created_at', '>=', window.since);
    if (window.until !== null) query = query.where('created_at', '<=', window.until);
    const row = await query.executeTakeFirstOrThrow();
    // PostgreSQL's count is a bigint, which pg returns as a string.
    return { success: Number(row.success), fail: Number(row.fail), pending: Number(row.pending), sending: Number(row.sending) };
  }

  async nextDueAt(): Promise<number | null> {
    return this.earliestDueAt([DeliveryStatus.Pending]);
  }

  async backlog(now: number): Promise<BacklogStats> {
    return this.dueBacklog([DeliveryStatus.Pending], now);
  }

  /**
   * The earliest next_attempt_at of rows in `statuses`: a due time, or a lease's end. Each status
   * is read on its own, so that each uses its own partial index.
   */
  protected async earliestDueAt(statuses: readonly DeliveryStatus[]): Promise<number | null> {
    const rows = await Promise.all(
      statuses.map((status) => this.#db.selectFrom('deliveries').select('next_attempt_at').where('status', '=', status).orderBy('next_attempt_at').limit(1).executeTakeFirst()),
    );
    const times = rows.flatMap((row) => (row?.next_attempt_at === null || row?.next_attempt_at === undefined ? [] : [Number(row.next_attempt_at)]));
    return times.length === 0 ? null : Math.min(...times);
  }

  /** Rows in `statuses` due by `now` and the oldest one's age, each status read on its own (as earliestDueAt). */
  protected async dueBacklog(statuses: readonly DeliveryStatus[], now: number): Promise<BacklogStats> {
    const rows = await Promise.all(
      statuses.map((status) =>
        this.#db
          .selectFrom('deliveries')
          .select((eb) => [eb.fn.countAll<number>().as('due'), eb.fn.min('next_attempt_at').as('oldest')])
          .where('status', '=', status)
          .where('next_attempt_at', '<=', now)
          .executeTakeFirstOrThrow(),
      ),
    );
    const oldest = rows.flatMap((row) => (row.oldest === null ? [] : [Number(row.oldest)]));
    return { due: rows.reduce((total, row) => total + Number(row.due), 0), oldestDueAgeMs: oldest.length === 0 ? 0 : Math.max(0, now - Math.min(...oldest)) };
  }
}
