import { sql } from 'kysely';
import { DeliveryStatus } from '../models.js';
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
      // on its endpoint, so publishing never waits for a claim.
      const held = await trx.selectFrom('endpoints').select('id').where('id', 'in', endpointIds).orderBy('id').forNoKeyUpdate().skipLocked().execute();
      const leased = held.length === 0 ? [] : await trx
        .selectFrom('deliveries')
        .select(['endpoint_id', sql<number>`count(*)`.as('leased')])
        .where('endpoint_id', 'in', held.map((e) => e.id))
        .where('lease_token', 'is not', null)
        .where('next_attempt_at', '>', now)
        .where('status', '=', DeliveryStatus.Pending)
        .groupBy('endpoint_id')
        .execute();
      const leasedBy = new Map(leased.map((row) => [row.endpoint_id, Number(row.leased)]));
      // A claim takes at most the per-claim cap (a rate-limited endpoint's burst) and at most what
      // is left of the shared in-flight cap.
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
