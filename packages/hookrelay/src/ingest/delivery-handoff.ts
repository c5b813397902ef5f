/**
 * The fast path from acceptance to sending, when a dispatcher runs in the same process: the
 * ingestor writes deliveries already leased to it and passes them over in memory, so they are sent
 * without a claim query. Endpoints the dispatcher cannot take now (at their concurrency cap) are
 * written as ordinary pending deliveries and claimed later.
 */
export interface HandedOffDelivery {
  deliveryId: number;
  leaseToken: string;
  leaseUntil: number;
  msgId: string;
  appId: string;
  endpointId: string;
  endpointUpdatedAt: number;
  payload: string;
  createdAt: number;
}

export interface DeliveryHandoff {
  readonly leaseMs: number;
  /**
   * Deliveries to one endpoint that one group hands over at most: what the dispatcher can start
   * and queue for it. `accepts` answers from the dispatcher's last report, which does not count the
   * group's own earlier admissions; the rest of a burst is written pending, for the claim loop.
   */
  readonly endpointLimit: number;
  /** Whether the dispatcher would start a delivery to this endpoint now. */
  accepts(endpointId: string): boolean;
  handOff(deliveries: HandedOffDelivery[]): void;
}
