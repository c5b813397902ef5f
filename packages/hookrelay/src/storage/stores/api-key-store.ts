import type { Kysely } from 'kysely';
import { newId } from '../../core/ids.js';
import type { Database } from '../db-schema.js';
import type { ApiKeyStore } from '../storage.js';
import { mapConstraintErrors } from './constraint-violation.js';

/** API keys are stored as sha256 hashes only; the plain key exists once, in the creator's hands. */
export class KyselyApiKeyStore implements ApiKeyStore {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(name: string, keyHash: string): Promise<{ id: string }> {
    const now = Date.now();
    const id = newId('key', now);
    await mapConstraintErrors(() => this.#db.insertInto('api_keys').values({ id, name, key_hash: keyHash, created_at: now }).execute(), 'This API key already exists');
    return { id };
  }

  async existsByHash(keyHash: string): Promise<boolean> {
    const row = await this.#db.selectFrom('api_keys').select('id').where('key_hash', '=', keyHash).executeTakeFirst();
    return row !== undefined;
  }

  async count(): Promise<number> {
    const row = await this.#db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number | string | bigint>().as('n')).executeTakeFirstOrThrow();
    // PostgreSQL returns count(*) as a bigint string; SQLite as a number.
    return Number(row.n);
  }
}
