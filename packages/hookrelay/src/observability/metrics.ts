import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Metrics of the API thread: what was accepted. */
export function createApiMetrics(registry: Registry) {
  return {
    messagesAccepted: new Counter({ name: 'hookrelay_messages_accepted_total', help: 'Messages accepted (durably stored) by the API', registers: [registry] }),
    deliveriesCreated: new Counter({ name: 'hookrelay_deliveries_created_total', help: 'Deliveries created by fan-out of accepted messages', registers: [registry] }),
    ingestGroupSize: new Histogram({
      name: 'hookrelay_ingest_group_size',
      help: 'Messages written per group commit (one transaction, one fsync with HOOKRELAY_SYNC_COMMIT)',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers: [registry],
    }),
  };
}

/** Metrics of a dispatcher: what it sent and how it went. */
export function createDispatcherMetrics(registry: Registry) {
  return {
    attempts: new Counter({
      name: 'hookrelay_attempts_total',
      help: 'Delivery attempts by outcome (success, failure) and response status class (2xx..5xx, or none without a response)',
      labelNames: ['outcome', 'status_class'] as const,
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'hookrelay_delivery_latency_seconds',
      help: 'Time from message acceptance to its successful delivery to an endpoint',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600],
      registers: [registry],
    }),
    attemptDuration: new Histogram({
      name: 'hookrelay_attempt_duration_seconds',
      help: 'Duration of one delivery request',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
      registers: [registry],
    }),
    inFlight: new Gauge({ name: 'hookrelay_deliveries_in_flight', help: 'Delivery requests in flight now', registers: [registry] }),
    endpointsDisabled: new Counter({
      name: 'hookrelay_endpoints_disabled_total',
      help: 'Endpoints disabled by failure tracking after failing for HOOKRELAY_ENDPOINT_DISABLE_AFTER',
      registers: [registry],
    }),
  };
}

export type DispatcherMetrics = ReturnType<typeof createDispatcherMetrics>;

/** Metrics of SQLite's WAL checkpoint thread (storage/sqlite/checkpointer-thread.ts). */
export function createCheckpointMetrics(registry: Registry) {
  const walBytes = new Gauge({ name: 'hookrelay_sqlite_wal_bytes', help: 'Bytes of SQLite write-ahead log in use (it starts over after a RESTART checkpoint)', registers: [registry] });
  const restarts = new Counter({
    name: 'hookrelay_sqlite_wal_restarts_total',
    help: 'RESTART checkpoints run because the WAL passed its limit, by whether the WAL then started over',
    labelNames: ['restarted'] as const,
    registers: [registry],
  });
  const restartHold = new Histogram({
    name: 'hookrelay_sqlite_wal_restart_hold_seconds',
    help: 'How long writers were held off for a RESTART checkpoint (its copy and disk sync)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  return (report: { walBytes: number; restartHoldMs: number | null; restarted: boolean }): void => {
    walBytes.set(report.walBytes);
    if (report.restartHoldMs === null) return;
    restarts.inc({ restarted: String(report.restarted) });
    restartHold.observe(report.restartHoldMs / 1000);
  };
}

/** Backlog gauges are read from the database at scrape time, so they hold across processes. */
export function createBacklogMetrics(registry: Registry, read: () => Promise<{ due: number; oldestDueAgeMs: number }>) {
  let last: Promise<{ due: number; oldestDueAgeMs: number }> | null = null;
  const once = () => (last ??= read().finally(() => setImmediate(() => (last = null))));
  new Gauge({
    name: 'hookrelay_due_backlog',
    help: 'Pending deliveries whose next attempt is due now',
    registers: [registry],
    async collect() {
      this.set((await once()).due);
    },
  });
  new Gauge({
    name: 'hookrelay_oldest_due_age_seconds',
    help: 'Age of the oldest due delivery',
    registers: [registry],
    async collect() {
      this.set((await once()).oldestDueAgeMs / 1000);
    },
  });
}

export function statusClass(statusCode: number): string {
  return statusCode === 0 ? 'none' : `${Math.floor(statusCode / 100)}xx`;
}
