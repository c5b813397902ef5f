import type { Logger } from 'pino';
import { newId } from '../core/ids.js';
import { DeliveryStatus, type Attempt } from '../storage/models.js';
import { TriggerType } from '../storage/models.js';
import type { ClaimedDelivery, DeliveryContext, DeliveryOutcome, DeliveryTarget, SharedEndpointCap, Storage } from '../storage/storage.js';
import type { HandedOffDelivery } from '../ingest/delivery-handoff.js';
import { nextRetryDelay, parseRetryAfter } from '../retry/retry-schedule.js';
import { rateLimitBurst, rateLimitPauseMs } from '../core/rate-limit.js';
import { buildWebhookHeaders } from '../signing/webhook-headers.js';
import type { SendResult, WebhookSender } from '../transport/webhook-sender.js';
import { statusClass, type DispatcherMetrics } from '../observability/metrics.js';
import { deliveryStartMarginMs, OUTCOME_FLUSH_MS } from './start-margin.js';

export interface DispatcherOptions {
  storage: Storage;
  sender: Pick<WebhookSender, 'send'>;
  metrics: DispatcherMetrics;
  logger: Logger;
  retryScheduleMs: readonly number[];
  leaseMs: number;
  /**
   * The longest one request can take (HOOKRELAY_REQUEST_TIMEOUT). A delivery waiting in memory is
   * started only while its lease still covers that and the outcome's write: otherwise its lease
   * could lapse mid-request and another claim send it again.
   */
  requestTimeoutMs?: number;
  /** Requests in flight at most, over all endpoints. */
  maxInFlight: number;
  /** Requests in flight to one endpoint at most: a hanging endpoint holds only this many slots. */
  endpointConcurrency: number;
  sendSvixHeaders: boolean;
  /** Failure tracking: disable an endpoint whose attempts have all failed for this long; null: never. */
  disableFailingEndpointsAfterMs?: number | null;
  /** Refuse to send to http:// URLs (endpoints created before the setting was turned on). */
  requireHttps?: boolean;
  /** Upper bound on how long the loop sleeps without a wake-up: catches work written by others. */
  idlePollMs?: number;
  /** Told when the dispatcher can or cannot take more work, overall or for one endpoint. */
  onCapacity?: (change: CapacityChange) => void;
}

export type CapacityChange = { endpointId: string; saturated: boolean } | { endpointId: null; saturated: boolean };

interface Job {
  claim: ClaimedDelivery;
  context: DeliveryContext;
  leaseUntil: number;
  /** It waited in memory for a slot: its endpoint may have changed meanwhile (#currentTarget). */
  queued?: boolean;
}

/** Fewer free slots than this and the loop waits for sends to finish before claiming again. */
const MIN_CLAIM = 16;
const MAX_CLAIM = 500;
/**
 * A batch this large (or half of maxInFlight, if smaller) is written without waiting out
 * OUTCOME_FLUSH_MS: unwritten outcomes hold slots (see #unsettled), so waiting longer would only
 * stall the claim loop. Half leaves the other half for requests while a batch fills.
 */
const OUTCOME_FLUSH_MAX = 500;
/**
 * A delivery that waited in memory re-reads its endpoint's target (URL, headers, keys, disabled,
 * deleted) before it is sent, at most this often per endpoint: a queue builds when an endpoint is
 * slow, which is when its owner re-points or disables it.
 */
const TARGET_RECHECK_MS = 1_000;
/** Longest wait between claim retries while claims fail (the database is away). */
const CLAIM_RETRY_MAX_MS = 5_000;

/**
 * The claim loop. It claims due deliveries in batches under a lease, sends them with at most
 * `endpointConcurrency` in flight per endpoint, and writes the outcomes back in batches. It sleeps
 * until woken (new work), until the earliest scheduled retry is due, or at most idlePollMs.
 */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #idlePollMs: number;
  #running = false;
  #loopDone: Promise<void> = Promise.resolve();
  #inFlight = 0;
  readonly #perEndpoint = new Map<string, number>();
  /** Claimed beyond an endpoint's free slots; started as its requests finish. */
  readonly #waiting = new Map<string, Job[]>();
  #outcomes: DeliveryOutcome[] = [];
  /**
   * Outcomes recorded but not yet written, in the buffer or in a write under way. They count
   * against maxInFlight like requests in flight: if this process dies, each of them is a delivery
   * that was sent but will be sent again, so maxInFlight bounds the duplicates a crash can cause.
   */
  #unsettled = 0;
  #flushScheduled = false;
  #flushTimer: NodeJS.Timeout | undefined;
  readonly #flushAt: number;
  /** How long outcomes wait to be written with others (OUTCOME_FLUSH_MS, by engine). */
  readonly #flushMs: number;
  /** Lease a waiting delivery must have left to be started (see DispatcherOptions.requestTimeoutMs). */
  readonly #startMarginMs: number;
  /** Handoffs being taken (their targets loading): stop() waits for them. */
  readonly #takingHandoffs = new Set<Promise<void>>();
  #flushing: Promise<void> = Promise.resolve();
  /** Writes of outcomes failed in a row (logged with each failure). */
  #flushFailures = 0;
  #wakeUp: (() => void) | null = null;
  #woken = false;
  #waitingTotal = 0;
  readonly #reportedSaturated = new Set<string>();
  #reportedFull = false;
  /** Endpoint targets of handed-off deliveries, valid while the endpoint's updatedAt matches. */
  readonly #targets = new Map<string, DeliveryTarget>();
  /**
   * Why the last claim pass may have left due work behind: endpoints passed over at their cap, or
   * too few free slots overall. Only then does a finished request wake the loop; otherwise every
   * response would cost a claim query that finds nothing (new work wakes the loop by itself).
   */
  #passedOver = new Set<string>();
  /** What the last claim said of the next due time, when its engine says it (SharedEndpointCap.nextDueAt). */
  #nextDueFromClaim: number | null | undefined;
  #slotsExhausted = false;
  /** When each endpoint's target was last re-read for waiting deliveries, and the re-reads under way. */
  readonly #targetCheckedAt = new Map<string, number>();
  readonly #targetChecks = new Map<string, Promise<void>>();
  /** Endpoints a re-read found deleted: what waited for them is refused, not sent. */
  readonly #deletedEndpoints = new Set<string>();
  /** Claims failed in a row: the retry waits longer each time, up to CLAIM_RETRY_MAX_MS. */
  #claimFailures = 0;
  /** Rate-limited endpoints this dispatcher leaves alone until their tokens have refilled. */
  readonly #pacedUntil = new Map<string, number>();
  /** Claim caps of rate-limited endpoints: a claim takes no more than one burst of them. */
  readonly #rateCaps = new Map<string, number>();

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.#idlePollMs = options.idlePollMs ?? 1_000;
    this.#flushAt = Math.max(1, Math.min(OUTCOME_FLUSH_MAX, Math.floor(options.maxInFlight / 2)));
    this.#flushMs = OUTCOME_FLUSH_MS[options.storage.engine];
    this.#startMarginMs = deliveryStartMarginMs(options.requestTimeoutMs, options.leaseMs);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loopDone = this.#loop().catch((error: unknown) => {
      this.#o.logger.fatal({ err: error }, 'dispatcher loop crashed');
      throw error;
    });
  }

  /** New work may be due: claim now instead of at the next timer. */
  wake(): void {
    this.#woken = true;
    const wakeUp = this.#wakeUp;
    this.#wakeUp = null;
    wakeUp?.();
  }

  /** Stops claiming, lets in-flight requests finish, gives back what was claimed but not started. */
  async stop(): Promise<void> {
    this.#running = false;
    this.wake();
    await this.#loopDone;
    // A handoff whose targets were loading when stop() began starts or releases its deliveries
    // once loaded (it sees #running false and gives them back): wait for that before releasing.
    await Promise.allSettled([...this.#takingHandoffs]);
    const unstarted = [...this.#waiting.values()].flat().map((job) => job.claim);
    this.#waiting.clear();
    this.#waitingTotal = 0;
    await this.#o.storage.deliveries.release(unstarted);
    while (this.#inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    await this.#flushing;
    await this.#flush();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      this.#woken = false;
      const free = this.#o.maxInFlight - this.#inFlight - this.#waitingTotal - this.#unsettled;
      let claimed = 0;
      this.#slotsExhausted = free < Math.min(MIN_CLAIM, this.#o.maxInFlight);
      if (!this.#slotsExhausted) {
        try {
          claimed = await this.#claimAndStart(Math.min(free, MAX_CLAIM));
          this.#claimFailures = 0;
        } catch (error) {
          // Backs off while the database is away, so an outage costs a log line every few seconds;
          // a wake-up (e.g. the wake signal reconnecting) cuts the wait short.
          const retryInMs = Math.min(CLAIM_RETRY_MAX_MS, 500 * 2 ** this.#claimFailures++);
          this.#o.logger.error({ err: error, retryInMs }, 'claiming deliveries failed; retrying');
          await this.#sleep(retryInMs);
          continue;
        }
        if (claimed === Math.min(free, MAX_CLAIM)) continue; // a full batch: more is probably due
      }
      if (this.#woken || !this.#running) continue;
      // Out of slots: a finishing request wakes the loop, so there is nothing to poll for.
      await this.#sleep(this.#slotsExhausted ? this.#idlePollMs : await this.#idleDelay(claimed));
    }
  }

  async #idleDelay(claimed: number): Promise<number> {
    if (claimed > 0) return 0;
    const nextDue = this.#nextDueFromClaim !== undefined ? this.#nextDueFromClaim : await this.#o.storage.deliveries.nextDueAt().catch(() => null);
    const now = Date.now();
    const paced = Math.min(...this.#pacedUntil.values());
    if (nextDue === null) return Math.min(this.#idlePollMs, Math.max(0, paced - now));
    if (nextDue > now) return Math.min(this.#idlePollMs, nextDue - now, Math.max(0, paced - now));
    // Due work that this pass did not claim belongs to endpoints it passed over: saturated ones
    // wake the loop when a request finishes, paced ones when their tokens have refilled.
    return Math.min(this.#idlePollMs, Math.max(0, paced - now));
  }

  #sleep(ms: number): Promise<void> {
    // A wake-up that came while this pass was running must not be lost to the sleep.
    if (ms <= 0 || this.#woken) return new Promise((resolve) => setImmediate(resolve));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wakeUp = null;
        resolve();
      }, ms);
      this.#wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Whether a delivery to this endpoint would start at once (the handoff's admission test). */
  accepts(endpointId: string): boolean {
    return this.#running && !this.#isFull() && !this.#isSaturated(endpointId);
  }

  #isFull(): boolean {
    return this.#inFlight + this.#waitingTotal + this.#unsettled >= this.#o.maxInFlight;
  }

  #isSaturated(endpointId: string): boolean {
    return (this.#perEndpoint.get(endpointId) ?? 0) >= this.#o.endpointConcurrency || this.#waiting.has(endpointId);
  }

  #reportCapacity(endpointId: string): void {
    const report = this.#o.onCapacity;
    if (!report) return;
    const saturated = this.#isSaturated(endpointId);
    if (saturated !== this.#reportedSaturated.has(endpointId)) {
      if (saturated) this.#reportedSaturated.add(endpointId);
      else this.#reportedSaturated.delete(endpointId);
      report({ endpointId, saturated });
    }
    this.#reportFull();
  }

  #reportFull(): void {
    const full = this.#isFull();
    if (full !== this.#reportedFull && this.#o.onCapacity) {
      this.#reportedFull = full;
      this.#o.onCapacity({ endpointId: null, saturated: full });
    }
  }

  /**
   * The targets of a batch's endpoints, from the cache where the entry's updatedAt is the one the
   * delivery was claimed or handed off with and no rotated-out key has expired since; the rest are
   * read. A map per batch: trimming the cache cannot take a target from under a queued delivery.
   */
  async #targetsFor(deliveries: readonly { endpointId: string; endpointUpdatedAt?: number }[], now: number): Promise<Map<string, DeliveryTarget>> {
    const batch = new Map<string, DeliveryTarget>();
    const stale = new Set<string>();
    for (const d of deliveries) {
      const cached = this.#targets.get(d.endpointId);
      if (cached && cached.updatedAt === d.endpointUpdatedAt && cached.validUntil > now) batch.set(d.endpointId, cached);
      else stale.add(d.endpointId);
    }
    if (stale.size === 0) return batch;
    const loaded = await this.#o.storage.deliveries.loadTargets([...stale], now);
    if (this.#targets.size + loaded.size > 50_000) this.#targets.clear();
    for (const id of stale) {
      const target = loaded.get(id);
      if (target) {
        this.#targets.set(id, target);
        batch.set(id, target);
      } else this.#targets.delete(id);
    }
    return batch;
  }

  /**
   * Deliveries the ingestor wrote already leased to this dispatcher: sent from memory, with no
   * claim query. Endpoint targets come from a cache checked against the endpoint's updatedAt.
   */
  acceptHandoff(deliveries: readonly HandedOffDelivery[]): Promise<void> {
    const taking = this.#takeHandoff(deliveries);
    this.#takingHandoffs.add(taking);
    return taking.finally(() => this.#takingHandoffs.delete(taking));
  }

  async #takeHandoff(deliveries: readonly HandedOffDelivery[]): Promise<void> {
    const giveBack = (ds: readonly HandedOffDelivery[]) => this.#o.storage.deliveries.release(ds.map((d) => ({ deliveryId: d.deliveryId, leaseToken: d.leaseToken })));
    if (!this.#running) return giveBack(deliveries);
    const now = Date.now();
    const endpoints = await this.#targetsFor(deliveries, now);
    // stop() may have begun while the targets loaded: it has released what was waiting, so these
    // go back too rather than start (or wait) after it.
    if (!this.#running) return giveBack(deliveries);
    const context: DeliveryContext = { messages: new Map(), endpoints };
    for (const d of deliveries) context.messages.set(d.msgId, { payload: d.payload, createdAt: d.createdAt });
    const overflow: HandedOffDelivery[] = [];
    for (const d of deliveries) {
      // The ingestor admits a group's deliveries against what it last heard of this dispatcher's
      // capacity, which lags (another thread) and, within one group, does not see the group's own
      // earlier admissions. What cannot start now waits only if there is room to wait; the rest is
      // given back to the database, due now, for the claim loop.
      if (!this.#canStartOrWait(d.endpointId)) {
        overflow.push(d);
        continue;
      }
      const claim: ClaimedDelivery = { deliveryId: d.deliveryId, leaseToken: d.leaseToken, msgId: d.msgId, appId: d.appId, endpointId: d.endpointId, attempts: 0, triggerType: TriggerType.Scheduled };
      this.#startOrQueue({ claim, context, leaseUntil: d.leaseUntil });
    }
    if (overflow.length > 0) {
      await giveBack(overflow);
      this.wake();
    }
  }

  /** Room to start a delivery to this endpoint now, or to queue one for it (at most one cap's worth, within maxInFlight). */
  #canStartOrWait(endpointId: string): boolean {
    if ((this.#perEndpoint.get(endpointId) ?? 0) < this.#o.endpointConcurrency) return true;
    return !this.#isFull() && (this.#waiting.get(endpointId)?.length ?? 0) < this.#o.endpointConcurrency;
  }

  async #claimAndStart(limit: number): Promise<number> {
    const now = Date.now();
    const skip: string[] = [];
    for (const [endpointId, count] of this.#perEndpoint) {
      if (count >= this.#o.endpointConcurrency) skip.push(endpointId);
    }
    this.#passedOver = new Set(skip);
    for (const [endpointId, until] of this.#pacedUntil) {
      if (until > now) skip.push(endpointId);
      else this.#pacedUntil.delete(endpointId);
    }
    const cap = { fallback: this.#o.endpointConcurrency, byEndpoint: this.#rateCaps };
    // The store adds endpoints whose cap other dispatchers fill (PostgreSQL): a request of ours to
    // one of them finishing frees a slot, so it wakes the loop as for our own saturated ones.
    const shared: SharedEndpointCap = { inFlight: this.#o.endpointConcurrency, passedOver: this.#passedOver };
    const claims = await this.#o.storage.deliveries.claimDue(now, this.#o.leaseMs, limit, cap, skip, shared);
    const leaseUntil = now + this.#o.leaseMs;
    this.#nextDueFromClaim = shared.nextDueAt;
    if (claims.length === 0) return 0;
    let startable: ClaimedDelivery[];
    let context: DeliveryContext;
    try {
      context = await this.#contextFor(claims, now);
      startable = await this.#withinRateLimits(claims, context, now);
    } catch (error) {
      // The rows are leased already: give them back (best effort) so that they do not wait out
      // the lease because a read after the claim failed.
      await this.#o.storage.deliveries.release(claims).catch(() => undefined);
      throw error;
    }
    for (const claim of startable) this.#startOrQueue({ claim, context, leaseUntil });
    return claims.length;
  }

  /** What sending a claimed batch needs, read only where the claim did not bring it along. */
  async #contextFor(claims: readonly ClaimedDelivery[], now: number): Promise<DeliveryContext> {
    if (claims.some((c) => c.content === undefined || c.endpointUpdatedAt === undefined)) {
      return this.#o.storage.deliveries.loadContext([...new Set(claims.map((c) => c.msgId))], [...new Set(claims.map((c) => c.endpointId))], now);
    }
    const messages = new Map<string, { payload: string; createdAt: number }>();
    for (const c of claims) if (c.content) messages.set(c.msgId, c.content);
    return { messages, endpoints: await this.#targetsFor(claims, now) };
  }

  /**
   * Keeps the claims that rate-limited endpoints have tokens for (the buckets are in the database,
   * shared by every dispatcher) and gives the rest back. The endpoint is then left alone for one
   * burst's refill, so a backlog is paced, not claimed and released over and over.
   */
  async #withinRateLimits(claims: readonly ClaimedDelivery[], context: DeliveryContext, now: number): Promise<ClaimedDelivery[]> {
    const free: ClaimedDelivery[] = [];
    const limited = new Map<string, ClaimedDelivery[]>();
    for (const claim of claims) {
      const rate = context.endpoints.get(claim.endpointId)?.rateLimit ?? null;
      if (rate === null) {
        this.#rateCaps.delete(claim.endpointId);
        free.push(claim);
        continue;
      }
      this.#rateCaps.set(claim.endpointId, Math.min(this.#o.endpointConcurrency, Math.ceil(rateLimitBurst(rate))));
      const group = limited.get(claim.endpointId) ?? [];
      group.push(claim);
      limited.set(claim.endpointId, group);
    }
    const giveBack: ClaimedDelivery[] = [];
    for (const [endpointId, group] of limited) {
      const rate = context.endpoints.get(endpointId)!.rateLimit!;
      const granted = await this.#o.storage.deliveries.takeSendTokens(endpointId, rate, group.length, now);
      free.push(...group.slice(0, granted));
      giveBack.push(...group.slice(granted));
      this.#pacedUntil.set(endpointId, now + rateLimitPauseMs(rate));
    }
    if (giveBack.length > 0) await this.#o.storage.deliveries.release(giveBack);
    return free;
  }

  #startOrQueue(job: Job): void {
    const endpointId = job.claim.endpointId;
    const active = this.#perEndpoint.get(endpointId) ?? 0;
    if (active >= this.#o.endpointConcurrency) {
      const queue = this.#waiting.get(endpointId) ?? [];
      job.queued = true;
      queue.push(job);
      this.#waiting.set(endpointId, queue);
      this.#waitingTotal++;
      this.#reportCapacity(endpointId);
      return;
    }
    this.#perEndpoint.set(endpointId, active + 1);
    this.#inFlight++;
    this.#o.metrics.inFlight.inc();
    this.#reportCapacity(endpointId);
    void this.#deliver(job).finally(() => this.#finished(endpointId));
  }

  #finished(endpointId: string): void {
    this.#inFlight--;
    this.#o.metrics.inFlight.dec();
    const remaining = (this.#perEndpoint.get(endpointId) ?? 1) - 1;
    if (remaining === 0) this.#perEndpoint.delete(endpointId);
    else this.#perEndpoint.set(endpointId, remaining);
    const queue = this.#waiting.get(endpointId);
    let next = queue?.shift();
    // A job whose lease no longer covers a whole request and its outcome's write is left to
    // lapse: a claim will take it afresh, rather than this dispatcher sending it while the lease
    // runs out and another claim sends it again.
    while (next && next.leaseUntil - Date.now() < this.#startMarginMs) {
      this.#waitingTotal--;
      next = queue?.shift();
    }
    if (queue && queue.length === 0) this.#waiting.delete(endpointId);
    if (next) {
      this.#waitingTotal--;
      this.#startOrQueue(next);
    } else {
      this.#reportCapacity(endpointId);
      if (this.#slotsExhausted || this.#passedOver.has(endpointId)) this.wake();
    }
  }

  async #deliver({ claim, context, queued }: Job): Promise<void> {
    const message = context.messages.get(claim.msgId);
    const known = context.endpoints.get(claim.endpointId);
    const target = queued ? await this.#currentTarget(claim.endpointId, known) : known;
    const startedAt = Date.now();
    const refusal = this.#refusal(message, target);
    if (refusal || !message || !target) {
      // Nothing a retry could change: recorded as a final failed attempt without a request.
      const result: SendResult = { statusCode: 0, body: `${refusal!.code}: ${refusal!.reason}`, durationMs: 0, retryAfter: undefined, errorCode: refusal!.code };
      this.#record(claim, target?.url ?? '', result, message?.createdAt ?? startedAt, false);
      return;
    }
    const headers = buildWebhookHeaders({
      msgId: claim.msgId,
      timestampSeconds: Math.floor(startedAt / 1000),
      payload: message.payload,
      secrets: target.secrets,
      customHeaders: target.headers,
      sendSvixHeaders: this.#o.sendSvixHeaders,
    });
    const result = await this.#o.sender.send(target.url, headers, message.payload);
    this.#record(claim, target.url, result, message.createdAt, true);
  }

  /**
   * The target a delivery that waited in memory is sent with: re-read from the database if that
   * was not done in the last TARGET_RECHECK_MS (one read per endpoint at a time), then the newest
   * version known. Undefined when the endpoint was deleted. A failed re-read keeps what is known.
   */
  async #currentTarget(endpointId: string, known: DeliveryTarget | undefined): Promise<DeliveryTarget | undefined> {
    if (Date.now() - (this.#targetCheckedAt.get(endpointId) ?? 0) >= TARGET_RECHECK_MS) {
      let check = this.#targetChecks.get(endpointId);
      if (!check) {
        check = this.#o.storage.deliveries
          .loadTargets([endpointId], Date.now())
          .then(
            (loaded) => {
              const fresh = loaded.get(endpointId);
              if (fresh) this.#targets.set(endpointId, fresh);
              else {
                this.#targets.delete(endpointId);
                if (this.#deletedEndpoints.size > 10_000) this.#deletedEndpoints.clear();
                this.#deletedEndpoints.add(endpointId);
              }
            },
            (error: unknown) => this.#o.logger.warn({ err: error, endpointId }, 're-reading an endpoint for its waiting deliveries failed; sending with what was read before'),
          )
          .finally(() => {
            if (this.#targetCheckedAt.size > 50_000) this.#targetCheckedAt.clear();
            this.#targetCheckedAt.set(endpointId, Date.now());
            this.#targetChecks.delete(endpointId);
          });
        this.#targetChecks.set(endpointId, check);
      }
      await check;
    }
    if (this.#deletedEndpoints.has(endpointId)) return undefined;
    const cached = this.#targets.get(endpointId);
    return cached && (!known || cached.updatedAt > known.updatedAt) ? cached : known;
  }

  #refusal(message: unknown, target: DeliveryTarget | undefined): { code: string; reason: string } | null {
    // Deleted since the claim (application or endpoint removed): nothing left to deliver.
    if (!message || !target) return { code: 'HOOKRELAY_GONE', reason: 'the message or the endpoint no longer exists' };
    if (target.disabled) return { code: 'HOOKRELAY_ENDPOINT_DISABLED', reason: 'the endpoint is disabled' };
    if (this.#o.requireHttps && !target.url.startsWith('https:')) return { code: 'HOOKRELAY_HTTPS_REQUIRED', reason: 'HOOKRELAY_REQUIRE_HTTPS is on and the endpoint URL is not https' };
    if (target.secrets.length === 0) return { code: 'HOOKRELAY_NO_SECRET', reason: 'the endpoint has no signing secret' };
    return null;
  }

  #record(claim: ClaimedDelivery, url: string, result: SendResult, messageCreatedAt: number, retryable: boolean): void {
    const succeeded = result.statusCode >= 200 && result.statusCode < 300;
    const now = Date.now();
    const attemptsMade = claim.attempts + 1;
    let nextAttemptAt: number | null = null;
    if (!succeeded && retryable) {
      const retryAfterMs = result.statusCode === 429 || result.statusCode === 503 ? parseRetryAfter(result.retryAfter, now) : null;
      const { delayMs } = nextRetryDelay(this.#o.retryScheduleMs, attemptsMade, retryAfterMs);
      nextAttemptAt = delayMs === null ? null : now + delayMs;
    }
    const attempt: Attempt = {
      id: newId('atmpt', now),
      msgId: claim.msgId,
      endpointId: claim.endpointId,
      appId: claim.appId,
      url,
      // An attempt is a finished request: it succeeded or failed, as in Svix (whose status filter on
      // attempt lists finds failed attempts while retries are still to come). Whether the delivery
      // will be tried again is the delivery's state, not the attempt's.
      status: succeeded ? DeliveryStatus.Success : DeliveryStatus.Fail,
      responseStatusCode: result.statusCode,
      response: result.body,
      responseDurationMs: result.durationMs,
      triggerType: claim.triggerType,
      errorCode: result.errorCode,
      createdAt: now,
    };
    this.#o.metrics.attempts.inc({ outcome: succeeded ? 'success' : 'failure', status_class: statusClass(result.statusCode) });
    this.#o.metrics.attemptDuration.observe(result.durationMs / 1000);
    if (succeeded) this.#o.metrics.deliveryLatency.observe(Math.max(0, now - messageCreatedAt) / 1000);
    else this.#o.logger.info({ msgId: claim.msgId, endpointId: claim.endpointId, status: result.statusCode, errorCode: result.errorCode, attempt: attemptsMade, nextAttemptAt }, 'delivery attempt failed');
    this.#outcomes.push({ deliveryId: claim.deliveryId, leaseToken: claim.leaseToken, attempt, nextAttemptAt, health: retryable ? (succeeded ? 'success' : 'failure') : null });
    this.#unsettled++;
    this.#scheduleFlush();
  }

  /**
   * Outcomes are written in batches: one transaction per OUTCOME_FLUSH_MS of the engine, or as
   * soon as #flushAt outcomes wait. On SQLite each write takes the single write lock, which the
   * API's group commits also need, so fewer and larger transactions leave the API waiting less.
   * Until written, a delivery stays leased.
   */
  #scheduleFlush(): void {
    if (this.#outcomes.length === this.#flushAt) {
      clearTimeout(this.#flushTimer);
      this.#flushScheduled = false;
      this.#flushing = this.#flushing.then(() => this.#flush());
      return;
    }
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#flushTimer = setTimeout(() => {
      this.#flushScheduled = false;
      this.#flushing = this.#flushing.then(() => this.#flush());
    }, this.#flushMs);
  }

  async #flush(): Promise<void> {
    const outcomes = this.#outcomes;
    if (outcomes.length === 0) return;
    this.#outcomes = [];
    try {
      const { disabledEndpoints } = await this.#o.storage.deliveries.complete(outcomes, { disableAfterMs: this.#o.disableFailingEndpointsAfterMs ?? null });
      this.#unsettled -= outcomes.length;
      if (this.#flushFailures > 0) this.#o.logger.info({ count: outcomes.length, failedWrites: this.#flushFailures }, 'recording attempts succeeded again');
      this.#flushFailures = 0;
      for (const endpointId of disabledEndpoints) {
        this.#targets.delete(endpointId);
        // Deliveries waiting for it re-read it (and find it disabled) before they would be sent.
        this.#targetCheckedAt.delete(endpointId);
        this.#o.metrics.endpointsDisabled.inc();
        this.#o.logger.warn({ endpointId, disableAfterMs: this.#o.disableFailingEndpointsAfterMs }, 'endpoint disabled: every attempt has failed for longer than HOOKRELAY_ENDPOINT_DISABLE_AFTER');
      }
      // A retry may now be due sooner than the loop planned to look again. Slots were freed: on
      // PostgreSQL an endpoint's cap counts leases until their outcome is written, so this, not the
      // response, is when a passed-over endpoint can take more.
      if (this.#slotsExhausted || outcomes.some((o) => o.nextAttemptAt !== null || this.#passedOver.has(o.attempt.endpointId))) this.wake();
      this.#reportFull();
    } catch (error) {
      // The leases still hold these deliveries; when they lapse the deliveries are tried again
      // (at-least-once). Keep the outcomes for the next flush meanwhile, with those that come
      // since: the error may have come after the commit, and completing a batch again records
      // each attempt once (DeliveryStore.complete), so the repeat cannot fail on what is stored.
      // (err.code in the log: the database's own error code.)
      this.#flushFailures++;
      this.#o.logger.error({ err: error, count: outcomes.length, failedWrites: this.#flushFailures }, 'recording attempts failed; will retry');
      this.#outcomes.unshift(...outcomes);
      setTimeout(() => this.#scheduleFlush(), 500).unref();
    }
  }
}
