/**
 * "Pending deliveries were just committed": the wake-up from whoever wrote them (an API's group
 * commit, a resend) to every dispatcher that may claim them, in this process or, on PostgreSQL, in
 * any process sharing the database (postgres/postgres-wake-signal.ts). A lost wake-up costs
 * latency, never a delivery: each dispatcher also polls at least once a second.
 */
export interface WakeSignal {
  /** Wakes every subscriber, here and in other processes. Cheap to call often: calls are coalesced. */
  notify(): void;
  /** `wake` runs on every wake-up that reaches this process, its own included; returns the unsubscribe. */
  subscribe(wake: () => void): () => void;
  /** Whether wake-ups from other processes can reach this one now (true when there are none to reach it). */
  readonly connected: boolean;
  close(): Promise<void>;
}

/** Subscribers of one process, woken in turn; what a signal does without a database to carry it. */
export class LocalWakeSignal implements WakeSignal {
  readonly #subscribers = new Set<() => void>();

  get connected(): boolean {
    return true;
  }

  notify(): void {
    // Each subscriber (a dispatcher's wake()) coalesces its own wake-ups; nothing to gain here.
    for (const wake of this.#subscribers) wake();
  }

  subscribe(wake: () => void): () => void {
    // A wrapper per subscription, so subscribing the same function twice needs two unsubscribes.
    const entry = () => wake();
    this.#subscribers.add(entry);
    return () => void this.#subscribers.delete(entry);
  }

  async close(): Promise<void> {
    this.#subscribers.clear();
  }
}
