import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db-schema.js';
import { DeliveryStatus } from '../models.js';
import type { ClaimedDelivery, PerEndpointCap, SharedEndpointCap } from '../storage.js';
import { claimedFromRow, KyselyDeliveryStore, pickPerEndpoint } from '../stores/delivery-store.js';

/**
 * Claims on PostgreSQL, where several dispatchers (threads or processes) claim from one table at
 * once, and where each endpoint's in-flight cap holds across all of them together.
 *
 * A claim is one short transaction. It walks the due index once, without row locks, then takes a
 * transaction-scoped advisory lock per endpoint among the candidates (`pg_try_advisory_xact_lock`,
 * which never waits), counting each one's live leases (every dispatcher's requests in flight, and
 * outcomes not yet written) in the same query. Endpoints another claimer holds at that moment are
 * skipped: that claimer is serving them. Of the held endpoints' candidates it leases, by primary
 * key, what is left of each cap. So two claimers never count the same endpoint's free slots at
 * once. Should the candidates have gone stale between the read and the locks (another claimer
 * leased some of them first), the held endpoints' due rows are read again under the locks.
 *
 * Advisory locks rather than row locks on `endpoints`: a row lock is a write to the row, and
 * beside the FOR KEY SHARE that every delivery insert takes on its endpoint (the foreign key) it
 * would make PostgreSQL create a MultiXact per overlap. Advisory locks touch no row, and
 * publishing never meets them.
 */
/** First key of the claim locks (pg_try_advisory_xact_lock(class, hashtext(endpoint id))): arbitrary, fixed. */
export const CLAIM_LOCK_CLASS = 1_213_025;
const MAX_ENDPOINTS_PER_CLAIM = 64;

export class PostgresDeliveryStore extends KyselyDeliveryStore {
  override claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[], shared?: SharedEndpointCap): Promise<ClaimedDelivery[]> {
    const capOf = typeof perEndpoint === 'number' ? () => perEndpoint : perEndpoint;
    const inFlightCap = (endpointId: string) => shared?.inFlight ?? capOf(endpointId);
    return this.db.transaction().execute(async (trx) => {
      // One walk of the due index, without row locks: the rows a claim may lease are those of the
      // endpoints it then holds, which no other claimer touches meanwhile.
      const candidates = await this.dueCandidates(trx, now, limit, skipEndpoints).execute();
      if (candidates.length === 0) return [];
      // Endpoints in due order, at most MAX_ENDPOINTS_PER_CLAIM (each lock lasts until commit, and
      // the server's lock table is finite).
      const endpointIds = [...new Set(candidates.map((c) => c.endpoint_id))].slice(0, MAX_ENDPOINTS_PER_CLAIM);
      const held = await trx
        .selectFrom('endpoints')
        .select((eb) => [
          'endpoints.id',
          // From the small partial index deliveries_leased: only pending rows carry a lease token.
          eb
            .selectFrom('deliveries')
            .select(sql<number>`count(*)`.as('n'))
            .whereRef('deliveries.endpoint_id', '=', 'endpoints.id')
            .where('deliveries.lease_token', 'is not', null)
            .where('deliveries.next_attempt_at', '>', now)
            .as('leased'),
        ])
        .where('endpoints.id', 'in', endpointIds)
        // A volatile condition: evaluated once per listed endpoint, after the list is made.
        .where(sql<boolean>`pg_try_advisory_xact_lock(${CLAIM_LOCK_CLASS}, hashtext(endpoints.id))`)
        .execute();
      const free = new Map(held.map((e) => [e.id, Math.max(0, Math.min(capOf(e.id), inFlightCap(e.id) - Number(e.leased ?? 0)))]));
      const picked = pickPerEndpoint(candidates, limit, (endpointId) => free.get(endpointId) ?? 0);
      if (shared) {
        // Due work left behind at endpoints whose cap is full: a request of ours to one of them
        // finishing is worth a new claim. (Endpoints another claimer holds are that claimer's.)
        const wanted = new Map<string, number>();
        for (const c of candidates) wanted.set(c.endpoint_id, (wanted.get(c.endpoint_id) ?? 0) + 1);
        for (const [endpointId, count] of wanted) if (free.has(endpointId) && count > free.get(endpointId)!) shared.passedOver.add(endpointId);
      }
      const leaseToken = randomUUID();
      const rows = picked.length === 0 ? [] : await this.#lease(trx, picked, now, leaseMs, leaseToken);
      // The candidates were read before the locks were taken: a claimer that held one of these
      // endpoints meanwhile may have leased some of them (or a resend holds a row). The endpoints
      // are ours now, so their other due rows are read afresh; otherwise this claim would come back
      // short, and its dispatcher go idle, while work sits due at endpoints nobody else is claiming.
      const took = new Map<string, number>();
      for (const row of rows) took.set(row.endpoint_id, (took.get(row.endpoint_id) ?? 0) + 1);
      const room = (endpointId: string) => (free.get(endpointId) ?? 0) - (took.get(endpointId) ?? 0);
      const stale = rows.length < picked.length;
      const roomy = [...free.keys()].filter((endpointId) => room(endpointId) > 0);
      if (stale && rows.length < limit && roomy.length > 0) {
        const fresh = await this.dueCandidates(trx, now, limit - rows.length, []).where('endpoint_id', 'in', roomy).where('id', 'not in', picked).execute();
        const more = pickPerEndpoint(fresh, limit - rows.length, room);
        if (more.length > 0) rows.push(...(await this.#lease(trx, more, now, leaseMs, leaseToken)));
      }
      return rows.map((row) => claimedFromRow(row, leaseToken));
    });
  }

  /**
   * Leases picked rows by primary key, re-checked as still due; a row some other writer holds (a
   * resend, say) is skipped rather than waited for.
   */
  #lease(trx: Transaction<Database>, picked: readonly number[], now: number, leaseMs: number, leaseToken: string) {
    return trx
      .updateTable('deliveries')
      .set({ next_attempt_at: now + leaseMs, lease_token: leaseToken, updated_at: now })
      .where('id', 'in', trx.selectFrom('deliveries').select('id').where('id', 'in', picked).where('status', '=', DeliveryStatus.Pending).where('next_attempt_at', '<=', now).forUpdate().skipLocked())
      .returning(['id', 'msg_id', 'app_id', 'endpoint_id', 'attempts', 'trigger_type'])
      .execute();
  }
}
