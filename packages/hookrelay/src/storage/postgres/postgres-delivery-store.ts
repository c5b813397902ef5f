import { sql } from 'kysely';
import type { ClaimedDelivery, PerEndpointCap, SharedEndpointCap } from '../storage.js';
import { KyselyDeliveryStore, pickPerEndpoint } from '../stores/delivery-store.js';

/**
 * Claims on PostgreSQL, where several dispatchers (threads or processes) claim from one table at
 * once.
 *
 * The base class's read-then-update would let them read the same due rows, and all but one would
 * then find their UPDATE matching nothing: wasted claims under contention. Here the due candidates
 * are locked FOR UPDATE SKIP LOCKED in the same transaction as the lease, so concurrent claimers
 * walk past each other's rows instead of racing for them.
 *
 * The per-endpoint cap holds across all dispatchers together: a claim counts the endpoint's live
 * leases (every dispatcher's requests in flight, and outcomes not yet written) and takes only
 * what is left of the cap. Two claimers must not count the same endpoint at once, or both would
 * fill the same free slots: each first locks the endpoint rows it claims for, skipping endpoints
 * another claimer holds at that moment (that claimer is serving them).
 */
export class PostgresDeliveryStore extends KyselyDeliveryStore {
  override claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[], shared?: SharedEndpointCap): Promise<ClaimedDelivery[]> {
    const capOf = typeof perEndpoint === 'number' ? () => perEndpoint : perEndpoint;
    return this.db.transaction().execute(async (trx) => {
      // Candidates over an endpoint's cap are locked too, until this short transaction commits;
      // another claimer skips them meanwhile, as it would once they are leased.
      const candidates = await this.dueCandidates(trx, now, limit, skipEndpoints).forUpdate().skipLocked().execute();
      if (candidates.length === 0) return [];
      const endpointIds = [...new Set(candidates.map((c) => c.endpoint_id))].sort();
      // FOR NO KEY UPDATE does not conflict with the FOR KEY SHARE that inserting a delivery takes
      // on its endpoint, so publishing never waits for a claim. Each held endpoint's live leases
      // are counted in the same round trip, from the small partial index deliveries_leased (only
      // pending rows ever carry a lease token).
      const held = await trx
        .selectFrom('endpoints')
        .select((eb) => [
          'endpoints.id',
          eb
            .selectFrom('deliveries')
            .select(sql<number>`count(*)`.as('n'))
            .whereRef('deliveries.endpoint_id', '=', 'endpoints.id')
            .where('deliveries.lease_token', 'is not', null)
            .where('deliveries.next_attempt_at', '>', now)
            .as('leased'),
        ])
        .where('endpoints.id', 'in', endpointIds)
        .orderBy('endpoints.id')
        .forNoKeyUpdate()
        .skipLocked()
        .execute();
      const leasedBy = new Map(held.map((row) => [row.id, Number(row.leased ?? 0)]));
      const free = new Map(held.map((e) => [e.id, Math.max(0, Math.min(capOf(e.id), (shared?.inFlight ?? capOf(e.id)) - (leasedBy.get(e.id) ?? 0)))]));
      const picked = pickPerEndpoint(candidates, limit, (endpointId) => free.get(endpointId) ?? 0);
      if (shared) {
        const wanted = new Map<string, number>();
        for (const c of candidates) wanted.set(c.endpoint_id, (wanted.get(c.endpoint_id) ?? 0) + 1);
        for (const [endpointId, count] of wanted) if (count > (free.get(endpointId) ?? 0)) shared.passedOver.add(endpointId);
      }
      return picked.length === 0 ? [] : this.leasePicked(trx, picked, now, leaseMs);
    });
  }
}
