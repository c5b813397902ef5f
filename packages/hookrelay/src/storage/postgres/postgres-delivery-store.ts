import { sql } from 'kysely';
import type { ClaimedDelivery, PerEndpointCap, SharedEndpointCap } from '../storage.js';
import { KyselyDeliveryStore, pickPerEndpoint } from '../stores/delivery-store.js';

/**
 * Claims on PostgreSQL, where several dispatchers (threads or processes) claim from one table at
 * once, and where each endpoint's in-flight cap holds across all of them together.
 *
 * A claim is one short transaction. It first takes a transaction-scoped advisory lock per endpoint
 * that has due work (`pg_try_advisory_xact_lock`, which never waits), counting each one's live
 * leases (every dispatcher's requests in flight, and outcomes not yet written) in the same query.
 * Endpoints another claimer holds at that moment are skipped: that claimer is serving them. Only then are due rows read, of the held
 * endpoints alone, and leased up to what is left of each cap. So two claimers never count the
 * same endpoint's free slots at once, and never lock each other's candidate rows: no claimer
 * leaves due rows locked but untaken for another to walk past.
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
      // Endpoints with due work, earliest due first, at most MAX_ENDPOINTS_PER_CLAIM of them (each
      // holds a lock until commit, and the server's lock table is finite).
      const due = trx
        .selectFrom(this.dueCandidates(trx, now, limit, skipEndpoints).as('due'))
        .select('due.endpoint_id')
        .groupBy('due.endpoint_id')
        .orderBy(sql`min(due.id)`)
        .limit(MAX_ENDPOINTS_PER_CLAIM);
      const held = await trx
        .selectFrom(due.as('e'))
        .select((eb) => [
          'e.endpoint_id as id',
          // From the small partial index deliveries_leased: only pending rows carry a lease token.
          eb
            .selectFrom('deliveries')
            .select(sql<number>`count(*)`.as('n'))
            .whereRef('deliveries.endpoint_id', '=', 'e.endpoint_id')
            .where('deliveries.lease_token', 'is not', null)
            .where('deliveries.next_attempt_at', '>', now)
            .as('leased'),
        ])
        // A volatile condition is never pushed into the subquery: it runs once per listed endpoint.
        .where(sql<boolean>`pg_try_advisory_xact_lock(${CLAIM_LOCK_CLASS}, hashtext(e.endpoint_id))`)
        .execute();
      const free = new Map(held.map((e) => [e.id, Math.max(0, Math.min(capOf(e.id), inFlightCap(e.id) - Number(e.leased ?? 0)))]));
      const serving = held.filter((e) => free.get(e.id)! > 0).map((e) => e.id);
      // Due work left behind at endpoints whose cap is full: a request of ours to one of them
      // finishing is worth a new claim. (Endpoints another claimer holds are that claimer's to serve.)
      if (shared) for (const e of held) if (free.get(e.id) === 0) shared.passedOver.add(e.id);
      if (serving.length === 0) return [];
      // SKIP LOCKED still: a row may be locked by a writer that is not a claimer (a resend, say).
      const candidates = await this.dueCandidates(trx, now, limit, []).where('endpoint_id', 'in', serving).forUpdate().skipLocked().execute();
      const picked = pickPerEndpoint(candidates, limit, (endpointId) => free.get(endpointId) ?? 0);
      if (shared) {
        const wanted = new Map<string, number>();
        for (const c of candidates) wanted.set(c.endpoint_id, (wanted.get(c.endpoint_id) ?? 0) + 1);
        for (const [endpointId, count] of wanted) if (count > free.get(endpointId)!) shared.passedOver.add(endpointId);
      }
      return picked.length === 0 ? [] : this.leasePicked(trx, picked, now, leaseMs);
    });
  }
}
