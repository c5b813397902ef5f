import { newId } from '../core/ids.js';
import type { Message } from '../storage/models.js';
import type { AcceptItem, Storage } from '../storage/storage.js';
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
  readonly #onAccepted: (messages: number, deliveries: number, groupSize: number) => void;
  #queue: Pending[] = [];
  #flushing = false;

  /** `onAccepted` runs after each group commit with what it made durable. */
  constructor(storage: Storage, onAccepted: (messages: number, deliveries: number, groupSize: number) => void) {
    this.#storage = storage;
    this.#onAccepted = onAccepted;
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
      let accepted = 0;
      let messages = 0;
      try {
        const outcomes = await this.#storage.ingest.acceptBatch(group.map((p) => p.item), fanOutMessage);
        outcomes.forEach((outcome, i) => {
          const pending = group[i]!;
          if (outcome.ok) {
            accepted += outcome.deliveries;
            messages += 1;
            pending.resolve(pending.item.message);
          } else {
            pending.reject(outcome.error);
          }
        });
      } catch (error) {
        for (const pending of group) pending.reject(error as Error);
      }
      this.#onAccepted(messages, accepted, group.length);
    }
    this.#flushing = false;
  }
}
