import type { Kysely } from 'kysely';
import { idLowerBoundAt } from '../../core/ids.js';
import type { Database } from '../db-schema.js';
import { UNFINISHED_DELIVERY_STATUSES } from '../models.js';
import { newRetentionCursor, type RetentionBatchResult, type RetentionCursor, type RetentionStore } from '../storage.js';

/**
 * Deletes expired rows a bounded batch at a time, on both engines. Every delete is one statement
 * (its own short transaction) of the form `DELETE ... WHERE key IN (SELECT key ... ORDER BY
 * <indexed column> LIMIT n)`: neither engine has a portable DELETE ... LIMIT, and the ordered
 * subquery walks an existing index from its low end, where the oldest rows are, so a batch reads
 * about as many rows as it deletes:
 * - attempts and messages by primary key, since ids sort by creation time (core/ids.ts);
 * - deliveries by the (msg_id, endpoint_id) unique index;
 * - idempotency keys by idempotency_keys_expiry.
 *
 * Ages are read from the ids, not from created_at, which no index covers: the time in an id is
 * read from the clock together with created_at, a millisecond or so apart at most.
 *
 * Each walk starts where the sweep's previous batch left it (RetentionCursor): rows it must keep
 * sit at the low end of the walks, and a walk from the oldest row every batch re-read all of them
 * (with 50,000 kept deliveries ahead of 50,000 deletable ones, about 20 times the CPU per row).
 * The messages' walk also stops where this batch's deliveries stopped: past that point every
 * message still has deliveries to delete first, and a walk that filtered them out one by one
 * went on to the cutoff whenever a batch freed fewer messages than its limit (fan-out above 1).
 */
export class KyselyRetentionStore implements RetentionStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async deleteExpiredBatch(cutoff: number, now: number, limit: number, cursor: RetentionCursor = newRetentionCursor()): Promise<RetentionBatchResult> {
    const result: RetentionBatchResult = { messages: 0, deliveries: 0, attempts: 0, idempotencyKeys: 0 };
    if (cutoff > 0) {
      result.attempts = await this.#deleteAttempts(cutoff, limit);
      // Deliveries first: a message goes only once it has none left, so a batch never has to
      // delete an unbounded fan-out of deliveries together with its messages.
      result.deliveries = await this.#deleteFinishedDeliveries(cutoff, limit, cursor);
      // A short batch of deliveries walked to the cutoff; a full one, to the cursor it left.
      const messagesUpTo = result.deliveries < limit ? null : cursor.deliveriesFrom;
      result.messages = await this.#deleteMessagesWithoutDeliveries(cutoff, limit, cursor, messagesUpTo);
    }
    result.idempotencyKeys = await this.#deleteExpiredIdempotencyKeys(now, limit);
    return result;
  }

  /**
   * By their own age, not their message's: an attempt made recently (a manual resend of an old
   * message) outlives its message until it expires itself. Attempts have no foreign key.
   */
  async #deleteAttempts(cutoff: number, limit: number): Promise<number> {
    const db = this.#db;
    const bound = idLowerBoundAt('atmpt', cutoff);
    // No cursor: every attempt below the bound goes, so the walk meets none it must keep.
    const result = await db
      .deleteFrom('attempts')
      .where('id', 'in', db.selectFrom('attempts').select('id').where('id', '<', bound).orderBy('id').limit(limit))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /**
   * Finished (succeeded or failed) deliveries of expired messages, in message order, so the
   * messages they free are the lowest ids: the next step finds them at the start of its walk.
   * Pending deliveries stay: a message is never deleted while a delivery of it may still be sent.
   */
  async #deleteFinishedDeliveries(cutoff: number, limit: number, cursor: RetentionCursor): Promise<number> {
    const db = this.#db;
    const bound = idLowerBoundAt('msg', cutoff);
    // From the last message reached, inclusive: the limit may have cut between its deliveries.
    const from = cursor.deliveriesFrom;
    const deleted = await db
      .deleteFrom('deliveries')
      .where(
        'id',
        'in',
        db
          .selectFrom('deliveries')
          .select('id')
          .where('msg_id', '<', bound)
          .$if(from !== null, (q) => q.where('msg_id', '>=', from!))
          .where('status', 'not in', UNFINISHED_DELIVERY_STATUSES)
          .orderBy('msg_id')
          .limit(limit),
      )
      // Checked again on the row itself: on PostgreSQL, a resend that made the delivery pending
      // after the subquery's snapshot is seen here (the row is re-read once its lock is free).
      .where('status', 'not in', UNFINISHED_DELIVERY_STATUSES)
      .returning('msg_id')
      .execute();
    cursor.deliveriesFrom = highest(deleted.map((row) => row.msg_id)) ?? from;
    return deleted.length;
  }

  /**
   * Expired messages none of whose deliveries is left, from after the last one this sweep
   * deleted up to `upTo` (where this batch's deliveries stopped; null: the cutoff). Messages kept
   * for a pending delivery are passed over once per sweep, and deleted by a later sweep once it
   * finishes.
   *
   * A manual resend of a message deleted at that very moment loses the race: it finds no message
   * (404) if the delete came first, or (PostgreSQL, resend first) the delete waits for its
   * commit and ON DELETE CASCADE removes the new delivery. Both need a resend of a message at the
   * retention's edge within the same few milliseconds.
   */
  async #deleteMessagesWithoutDeliveries(cutoff: number, limit: number, cursor: RetentionCursor, upTo: string | null): Promise<number> {
    const db = this.#db;
    const bound = idLowerBoundAt('msg', cutoff);
    const after = cursor.messagesAfter;
    // LIMIT 1 OFFSET 0 changes nothing for NOT EXISTS, but it keeps PostgreSQL from turning the
    // subquery into an anti join: the planner then reads all of both tables (a hash anti join,
    // ~90 ms per batch at 200k rows) instead of walking the primary key and probing the
    // deliveries index once per message it passes (~2.5 ms, whatever the table size).
    const expired = db
      .selectFrom('messages')
      .select('messages.id')
      .where('messages.id', '<', bound)
      .$if(after !== null, (q) => q.where('messages.id', '>', after!))
      .$if(upTo !== null, (q) => q.where('messages.id', '<=', upTo!))
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('deliveries').select('deliveries.id').whereRef('deliveries.msg_id', '=', 'messages.id').limit(1).offset(0))))
      .orderBy('messages.id')
      .limit(limit);
    const deleted = await db.deleteFrom('messages').where('id', 'in', expired).returning('id').execute();
    cursor.messagesAfter = highest(deleted.map((row) => row.id)) ?? after;
    return deleted.length;
  }

  /**
   * The idempotency store also sweeps expired keys while requests come in; this covers quiet
   * periods, in bounded batches.
   */
  async #deleteExpiredIdempotencyKeys(now: number, limit: number): Promise<number> {
    const result = await this.#db
      .deleteFrom('idempotency_keys')
      .where(({ eb, refTuple, selectFrom }) =>
        eb(refTuple('scope', 'key'), 'in', selectFrom('idempotency_keys').select(['scope', 'key']).where('expires_at', '<=', now).orderBy('expires_at').limit(limit).$asTuple('scope', 'key')),
      )
      // Checked again on the row itself: a reserve may have taken the expired key over meanwhile.
      .where('expires_at', '<=', now)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

/** The greatest of ids of one kind (fixed-length base62 sorts as text; PostgreSQL keys are COLLATE "C"). */
function highest(ids: readonly string[]): string | null {
  let max: string | null = null;
  for (const id of ids) if (max === null || id > max) max = id;
  return max;
}
