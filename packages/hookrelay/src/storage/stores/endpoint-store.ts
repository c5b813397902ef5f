import type { Kysely } from 'kysely';
import { hasPrefix, newId } from '../../core/ids.js';
import { notFound } from '../../core/errors.js';
import type { SecretBox } from '../../secrets/secret-box.js';
import type { Database, EndpointRow } from '../db-schema.js';
import type { Endpoint, EndpointSecret, ListPage, PageRequest } from '../models.js';
import type { EndpointFields, EndpointHealth, EndpointStore } from '../storage.js';
import { clearDisabledStreak, readEndpointHealth } from './endpoint-health-store.js';
import { mapConstraintErrors } from './constraint-violation.js';
import { endpointFromRow } from './endpoint-row.js';
import { applyPageQuery, paginate } from './paginate.js';
import { nextEndpointVersion } from './endpoint-version.js';

const UID_TAKEN = 'An endpoint with this uid already exists in this application';

function fieldColumns(fields: EndpointFields) {
  return {
    uid: fields.uid,
    url: fields.url,
    description: fields.description,
    disabled: fields.disabled ? 1 : 0,
    filter_types: fields.filterTypes ? JSON.stringify(fields.filterTypes) : null,
    channels: fields.channels ? JSON.stringify(fields.channels) : null,
    rate_limit: fields.rateLimit,
    metadata: JSON.stringify(fields.metadata),
    version: fields.version,
  };
}

export class KyselyEndpointStore implements EndpointStore {
  readonly #db: Kysely<Database>;
  readonly #secretBox: SecretBox;

  constructor(db: Kysely<Database>, secretBox: SecretBox) {
    this.#db = db;
    this.#secretBox = secretBox;
  }

  async create(appId: string, fields: EndpointFields, headers: Record<string, string>, secret: string): Promise<Endpoint> {
    const now = Date.now();
    const row: EndpointRow = { id: newId('ep', now), app_id: appId, ...fieldColumns(fields), headers: JSON.stringify(headers), created_at: now, updated_at: now };
    const sealed = this.#secretBox.seal(secret);
    await mapConstraintErrors(
      () =>
        this.#db.transaction().execute(async (trx) => {
          await trx.insertInto('endpoints').values(row).execute();
          await trx.insertInto('endpoint_secrets').values({ endpoint_id: row.id, key_sealed: sealed, created_at: now, expires_at: null }).execute();
        }),
      UID_TAKEN,
      'Application',
    );
    return endpointFromRow(row);
  }

  async find(appId: string, idOrUid: string): Promise<Endpoint | null> {
    const column = hasPrefix(idOrUid, 'ep') ? 'id' : 'uid';
    const row = await this.#db.selectFrom('endpoints').selectAll().where('app_id', '=', appId).where(column, '=', idOrUid).executeTakeFirst();
    return row ? endpointFromRow(row) : null;
  }

  list(appId: string, page: PageRequest): Promise<ListPage<Endpoint>> {
    // Svix lists endpoints newest first.
    return paginate(page, 'descending', (e) => e.id, async (query) => {
      const rows = await applyPageQuery(this.#db.selectFrom('endpoints').selectAll().where('app_id', '=', appId), 'id', query).execute();
      return rows.map(endpointFromRow);
    });
  }

  async update(appId: string, id: string, fields: EndpointFields): Promise<Endpoint> {
    const row = await mapConstraintErrors(
      () =>
        this.#db
          .updateTable('endpoints')
          .set({ ...fieldColumns(fields), updated_at: nextEndpointVersion(Date.now()) })
          .where('app_id', '=', appId)
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst(),
      UID_TAKEN,
    );
    if (!row) throw notFound('Endpoint');
    if (!fields.disabled) await clearDisabledStreak(this.#db, row.id);
    return endpointFromRow(row);
  }

  async secretsReadable(): Promise<boolean> {
    const newest = await this.#db.selectFrom('endpoint_secrets').select('key_sealed').orderBy('id', 'desc').limit(1).executeTakeFirst();
    if (!newest) return true;
    try {
      this.#secretBox.open(newest.key_sealed);
      return true;
    } catch {
      return false;
    }
  }

  async health(appId: string, idOrUid: string): Promise<EndpointHealth | null> {
    const endpoint = await this.find(appId, idOrUid);
    return endpoint ? readEndpointHealth(this.#db, endpoint.id) : null;
  }

  async setHeaders(appId: string, id: string, headers: Record<string, string>): Promise<Endpoint> {
    const row = await this.#db
      .updateTable('endpoints')
      .set({ headers: JSON.stringify(headers), updated_at: nextEndpointVersion(Date.now()) })
      .where('app_id', '=', appId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw notFound('Endpoint');
    return endpointFromRow(row);
  }

  async delete(appId: string, id: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const owned = await trx.selectFrom('endpoints').select('id').where('app_id', '=', appId).where('id', '=', id).executeTakeFirst();
      if (!owned) return false;
      // Attempts carry no foreign key; without this they would outlive their endpoint forever.
      await trx.deleteFrom('attempts').where('endpoint_id', '=', id).execute();
      await trx.deleteFrom('deliveries').where('endpoint_id', '=', id).execute();
      await trx.deleteFrom('endpoint_secrets').where('endpoint_id', '=', id).execute();
      await trx.deleteFrom('endpoint_health').where('endpoint_id', '=', id).execute();
      await trx.deleteFrom('endpoints').where('id', '=', id).execute();
      return true;
    });
  }

  async secrets(endpointId: string, now: number): Promise<EndpointSecret[]> {
    const rows = await this.#db
      .selectFrom('endpoint_secrets')
      .select(['key_sealed', 'created_at', 'expires_at'])
      .where('endpoint_id', '=', endpointId)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .orderBy('id', 'desc')
      .execute();
    // The current key first, then rotated-out keys newest first (ids grow with each rotation).
    rows.sort((a, b) => (a.expires_at === null ? 0 : 1) - (b.expires_at === null ? 0 : 1));
    return rows.map((r) => ({ key: this.#secretBox.open(r.key_sealed), createdAt: r.created_at, expiresAt: r.expires_at }));
  }

  async rotateSecret(endpointId: string, newSecret: string, graceMs: number): Promise<void> {
    const now = Date.now();
    const sealed = this.#secretBox.seal(newSecret);
    await mapConstraintErrors(
      () =>
        this.#db.transaction().execute(async (trx) => {
          // Keys whose grace already ended can never sign again: drop them while we are here.
          await trx.deleteFrom('endpoint_secrets').where('endpoint_id', '=', endpointId).where('expires_at', '<=', now).execute();
          await trx.updateTable('endpoint_secrets').set({ expires_at: now + Math.max(0, graceMs) }).where('endpoint_id', '=', endpointId).where('expires_at', 'is', null).execute();
          await trx.insertInto('endpoint_secrets').values({ endpoint_id: endpointId, key_sealed: sealed, created_at: now, expires_at: null }).execute();
          // Dispatchers cache signing keys per endpoint version (updated_at): a rotation is a change.
          await trx.updateTable('endpoints').set({ updated_at: nextEndpointVersion(now) }).where('id', '=', endpointId).execute();
        }),
      'Secret rotation conflicted with another write',
      'Endpoint',
    );
  }
}
