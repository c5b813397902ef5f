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
  #queue: Pending[] = [];
  #flushing = false;

  /** `onAccepted` runs after each group commit with what it made durable. */
  constructor(storage: Storage, onAccepted: AcceptedCallback, handoff: DeliveryHandoff | null = null) {
    this.#storage = storage;
    this.#onAccepted = onAccepted;
    this.#handoff = handoff;
  }

  accept(appId: string, input: MessageInput, idempotency: IdempotentResponse | null): Promise<Message> {
    const message: Message = { id: newId('msg'), appId, createdAt: Date.now(), ...input };
    const item: AcceptItem = {
      message,
      idempotency: idempotency ? { scope: idempotency.scope, key: idempotency.key, ...idempotency.render(message) } : null,
    };
    return new Promise<Message>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        // setImmediate lets every request already parsed in this turn of the event loop join the group.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    // Requests whose bodies were still being parsed when the first one arrived join this group if
    // they finish within a few turns of the event loop; stop waiting as soon as none arrives.
    for (let turn = 0; turn < MAX_GATHER_TURNS; turn++) {
      const before = this.#queue.length;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.#queue.length === before) break;
    }
    while (this.#queue.length > 0) {
      const group = this.#queue.splice(0, MAX_GROUP);
      const stats = { messages: 0, deliveries: 0, pending: 0, groupSize: group.length };
      const handedOff: HandedOffDelivery[] = [];
      const handoff = this.#handoff;
      const lease: AcceptLease | null = handoff ? { token: randomUUID(), until: Date.now() + handoff.leaseMs, accepts: (endpoint) => !hasRateLimit(endpoint) && handoff.accepts(endpoint.id) } : null;
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
    this.#flushing = false;
  }
}
