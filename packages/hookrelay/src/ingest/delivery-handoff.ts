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
  /** Whether the dispatcher would start a delivery to this endpoint now. */
  accepts(endpointId: string): boolean;
  handOff(deliveries: HandedOffDelivery[]): void;
}
