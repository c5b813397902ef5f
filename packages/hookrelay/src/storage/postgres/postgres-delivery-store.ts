import type { ClaimedDelivery, PerEndpointCap } from '../storage.js';
import { KyselyDeliveryStore, pickPerEndpoint } from '../stores/delivery-store.js';

/**
 * Claims on PostgreSQL, where several dispatchers (threads or processes) claim from one table at
 * once. The base class's read-then-update would let them read the same due rows, and all but one
 * would then find their UPDATE matching nothing: wasted claims under contention. Here the due
 * candidates are locked FOR UPDATE SKIP LOCKED in the same transaction as the lease, so
 * concurrent claimers walk past each other's rows instead of racing for them.
 */
export class PostgresDeliveryStore extends KyselyDeliveryStore {
  override claimDue(now: number, leaseMs: number, limit: number, perEndpoint: PerEndpointCap, skipEndpoints: readonly string[]): Promise<ClaimedDelivery[]> {
    return this.db.transaction().execute(async (trx) => {
      // Candidates over an endpoint's cap are locked too, until this short transaction commits;
      // another claimer skips them meanwhile, as it would once they are leased.
      const candidates = await this.dueCandidates(trx, now, limit, skipEndpoints).forUpdate().skipLocked().execute();
      const picked = pickPerEndpoint(candidates, limit, perEndpoint);
      return picked.length === 0 ? [] : this.leasePicked(trx, picked, now, leaseMs);
    });
  }
}
