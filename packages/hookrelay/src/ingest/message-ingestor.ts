import { randomUUID } from 'node:crypto';
import { newId } from '../core/ids.js';
import type { DeliveryHandoff, HandedOffDelivery } from './delivery-handoff.js';
import type { Endpoint, Message } from '../storage/models.js';
import type { AcceptItem, AcceptLease, Storage } from '../storage/storage.js';
import { fanOutMessage } from './fan-out.js';

export interface MessageInput {
  eventType: string;
  /** The payload serialized once; these exact bytes are stored and sent. */
  payload: string;
  eventId: string | null;
  channels: string[] | null;
  tags: string[] | null;
}

export interface IdempotentResponse {
  scope: string;
  key: string;
  /** Renders the HTTP response for the accepted message; stored in the same transaction. */
  render(message: Message): { statusCode: number; body: string };
}

export interface MessageAccepter {
  /** Resolves once the message and its deliveries are committed. Throws HookrelayError (duplicate_event_id, not_found). */
  accept(appId: string, input: MessageInput, idempotency: IdempotentResponse | null): Promise<Message>;
}

export interface AcceptedStats {
  messages: number;
  deliveries: number;
  /** Deliveries written as pending (not handed off): the claim loop must be woken for them. */
  pending: number;
  groupSize: number;
}

export type AcceptedCallback = (stats: AcceptedStats) => void;

/**
 * Rate-limited endpoints are never handed over: their sends wait for tokens, and a delivery that
 * waits in memory could outlive its lease. The claim loop paces them instead.
 */
function hasRateLimit(endpoint: Endpoint): boolean {
  return endpoint.rateLimit !== null && endpoint.rateLimit > 0;
}

/**
 * The handoff's admission test for one group: the dispatcher must take the endpoint now, and the
 * group hands over no more than `endpointLimit` deliveries to it (a burst to one endpoint would
 * otherwise all be handed over on the strength of one free slot).
 */
function admission(handoff: DeliveryHandoff): (endpoint: Endpoint) => boolean {
  const admitted = new Map<string, number>();
  return (endpoint) => {
    if (hasRateLimit(endpoint) || !handoff.accepts(endpoint.id)) return false;
    const count = admitted.get(endpoint.id) ?? 0;
    if (count >= handoff.endpointLimit) return false;
    admitted.set(endpoint.id, count + 1);
    return true;
  };
}

interface Pending {
  item: AcceptItem;
  resolve: (message: Message) => void;
  reject: (error: Error) => void;
}

/** Largest group written in one transaction; bigger bursts are split so one commit stays short. */
const MAX_GROUP = 1000;
/** How many event-loop turns a group may wait for more arrivals before it commits. */
const MAX_GATHER_TURNS = 4;

/**
 * Accepts messages with group commit: requests that arrive while a commit is being written wait
 * for the next one and share it. Each caller's promise resolves only after its message and its
 * deliveries are durable, so a 202 always means "stored". With synchronous commits (fsync) this
 * turns one fsync per message into one per group.
 */
export class MessageIngestor implements MessageAccepter {
  readonly #storage: Storage;
  readonly #onAccepted: AcceptedCallback;
  readonly #handoff: DeliveryHandoff | null;
  readonly #groupsInFlight: number;
  #queue: Pending[] = [];
  /** A group is gathering arrivals (turns of the event loop) before it is taken from the queue. */
  #gathering = false;
  /** Groups taken from the queue whose write has not finished. */
  #writing = 0;

  /**
   * `onAccepted` runs after each group commit with what it made durable. `groupsInFlight` groups
   * may be written at once: 1 on SQLite (one writer, and a write blocks this thread anyway); more
   * on PostgreSQL, where a group's round trips would otherwise hold back every request that
   * arrives meanwhile, and the server flushes concurrent commits together.
   */
  constructor(storage: Storage, onAccepted: AcceptedCallback, handoff: DeliveryHandoff | null = null, groupsInFlight = 1) {
    this.#storage = storage;
    this.#onAccepted = onAccepted;
    this.#handoff = handoff;
    this.#groupsInFlight = Math.max(1, groupsInFlight);
  }

  accept(appId: string, input: MessageInput, idempotency: IdempotentResponse | null): Promise<Message> {
    const message: Message = { id: newId('msg'), appId, createdAt: Date.now(), ...input };
    const item: AcceptItem = {
      message,
      idempotency: idempotency ? { scope: idempotency.scope, key: idempotency.key, ...idempotency.render(message) } : null,
    };
    return new Promise<Message>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#startGroup(true);
    });
  }

  /**
   * Starts the next group if one may be written now. A group started by an arrival gathers first:
   * setImmediate lets every request already parsed in this turn of the event loop join it, and
   * those whose bodies were still being parsed join if they finish within a few turns. A group
   * started because a write finished takes what waited meanwhile at once.
   */
  #startGroup(gather: boolean): void {
    if (this.#gathering || this.#writing >= this.#groupsInFlight || this.#queue.length === 0) return;
    this.#gathering = true;
    setImmediate(() => void this.#gatherAndWrite(gather));
  }

  async #gatherAndWrite(gather: boolean): Promise<void> {
    for (let turn = 0; gather && turn < MAX_GATHER_TURNS; turn++) {
      const before = this.#queue.length;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.#queue.length === before) break;
    }
    this.#gathering = false;
    const group = this.#queue.splice(0, MAX_GROUP);
    this.#writing += 1;
    // With a free slot, the next group gathers while this one is written (PostgreSQL).
    this.#startGroup(true);
    try {
      await this.#write(group);
    } finally {
      this.#writing -= 1;
      this.#startGroup(false);
    }
  }

  /** Writes one group and settles each of its callers' promises. */
  async #write(group: readonly Pending[]): Promise<void> {
    const stats = { messages: 0, deliveries: 0, pending: 0, groupSize: group.length };
    const handedOff: HandedOffDelivery[] = [];
    const handoff = this.#handoff;
    const lease: AcceptLease | null = handoff ? { token: randomUUID(), until: Date.now() + handoff.leaseMs, accepts: admission(handoff) } : null;
    try {
      const outcomes = await this.#storage.ingest.acceptBatch(group.map((p) => p.item), fanOutMessage, lease);
      outcomes.forEach((outcome, i) => {
        const pending = group[i]!;
        if (!outcome.ok) return pending.reject(outcome.error);
        const message = pending.item.message;
        stats.messages += 1;
        stats.deliveries += outcome.deliveries.length;
        for (const d of outcome.deliveries) {
          if (!d.leased || !lease) {
            stats.pending += 1;
            continue;
          }
          handedOff.push({
            deliveryId: d.deliveryId,
            leaseToken: lease.token,
            leaseUntil: lease.until,
            msgId: message.id,
            appId: message.appId,
            endpointId: d.endpointId,
            endpointUpdatedAt: d.endpointUpdatedAt,
            payload: message.payload,
            createdAt: message.createdAt,
          });
        }
        pending.resolve(message);
      });
    } catch (error) {
      for (const pending of group) pending.reject(error as Error);
    }
    if (handedOff.length > 0) handoff!.handOff(handedOff);
    this.#onAccepted(stats);
  }
}
