import type { Kysely } from 'kysely';
import type { Database, IdempotencyKeyRow } from '../db-schema.js';
import type { IdempotencyStore, StoredResponse } from '../storage.js';

/**
 * A reservation still without a response after this long belongs to a request that died (crash,
 * killed process): a retry with the same request takes it over instead of waiting out the TTL.
 */
export const STALE_RESERVATION_MS = 60_000;

/** Attempts at the insert/replace race before giving the caller what is stored. */
const MAX_RACES = 5;

export class KyselyIdempotencyStore implements IdempotencyStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async reserve(scope: string, key: string, requestHash: string, now: number, ttlMs: number): Promise<StoredResponse | null> {
    // Expired rows are removed in batches by the retention sweeper; one met here is replaced below.
    const fresh = { request_hash: requestHash, status_code: null, response_body: null, created_at: now, expires_at: now + ttlMs };
    let row: IdempotencyKeyRow | undefined;
    // Every step is a single conditional statement, so two concurrent reservers (even in two
    // processes) cannot both win: the loser re-reads and reports what the winner stored.
    for (let race = 0; race < MAX_RACES; race++) {
      const inserted = await this.#db
        .insertInto('idempotency_keys')
        .values({ scope, key, ...fresh })
        .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
        .executeTakeFirst();
      if ((inserted.numInsertedOrUpdatedRows ?? 0n) > 0n) return null;

      row = await this.#db.selectFrom('idempotency_keys').selectAll().where('scope', '=', scope).where('key', '=', key).executeTakeFirst();
      if (!row) continue; // deleted (abandoned or swept) in between: insert again

      const expired = row.expires_at <= now;
      const stale = row.status_code === null && row.request_hash === requestHash && row.created_at <= now - STALE_RESERVATION_MS;
      if (!expired && !stale) return stored(row);

      const taken = await this.#db
        .updateTable('idempotency_keys')
        .set(fresh)
        .where('scope', '=', scope)
        .where('key', '=', key)
        .where('created_at', '=', row.created_at)
        .where('request_hash', '=', row.request_hash)
        .executeTakeFirst();
      if (taken.numUpdatedRows > 0n) return null;
    }
    if (!row) throw new Error('idempotency key reservation kept racing');
    return stored(row);
  }

  async complete(scope: string, key: string, statusCode: number, body: string): Promise<void> {
    await this.#db.updateTable('idempotency_keys').set({ status_code: statusCode, response_body: body }).where('scope', '=', scope).where('key', '=', key).execute();
  }

  async abandon(scope: string, key: string): Promise<void> {
    // Only an unfinished reservation: a completed response must keep replaying.
    await this.#db.deleteFrom('idempotency_keys').where('scope', '=', scope).where('key', '=', key).where('status_code', 'is', null).execute();
  }
}

function stored(row: IdempotencyKeyRow): StoredResponse {
  return { requestHash: row.request_hash, statusCode: row.status_code, body: row.response_body };
}
