import type { HandedOffDelivery } from '../ingest/delivery-handoff.js';
import type { CapacityChange } from './dispatcher.js';

/** Messages between the API thread (host) and the dispatcher thread. Metrics travel as prom-client JSON. */
export type FromHost = { type: 'wake' } | { type: 'stop' } | { type: 'metrics'; requestId: number } | { type: 'handoff'; deliveries: HandedOffDelivery[] };
export type ToHost =
  | { type: 'ready' }
  | { type: 'stopped' }
  | { type: 'metrics'; requestId: number; metrics: unknown[] }
  | { type: 'capacity'; change: CapacityChange };
