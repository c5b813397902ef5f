import type { Storage } from '../storage/storage.js';

/**
 * Outcomes wait this long at most before they are written, by engine.
 *
 * SQLite: each transaction writes every page it touched to the WAL (the attempt indexes by
 * endpoint and by message, the deliveries rows) and takes the one write lock the API's group
 * commits also need, so its cost grows with the number of transactions more than with their size.
 * 20 ms batches cost about 3 us less per delivery than 5 ms ones (session 2); 50 ms ones 3-5 % less
 * of Hookrelay's CPU than 20 ms ones, with fewer WAL frames; 100 ms ones no less than 50 ms ones
 * (bench/compare-cpu.js, 1,000 msg/s, session 10).
 *
 * PostgreSQL: an endpoint's concurrency cap counts leases until their outcome is written, so a
 * longer wait lowers what one endpoint can take; its commits cost no lock the API waits for.
 */
export const OUTCOME_FLUSH_MS: Readonly<Record<Storage['engine'], number>> = { sqlite: 50, postgres: 20 };

const LONGEST_OUTCOME_FLUSH_MS = Math.max(OUTCOME_FLUSH_MS.sqlite, OUTCOME_FLUSH_MS.postgres);

/** What the start margin allows for writing an outcome once its batch is due. */
const OUTCOME_WRITE_MS = 1_000;

/**
 * The lease a delivery waiting in memory must have left to be started: the request
 * (HOOKRELAY_REQUEST_TIMEOUT), the outcome's batching delay, and a second for its write; but never
 * more than half the lease, or a lease barely longer than that would leave nothing able to wait.
 * Without a request timeout (tests of the loop alone), a quarter of the lease stands for it.
 */
export function deliveryStartMarginMs(requestTimeoutMs: number | undefined, leaseMs: number): number {
  return Math.min((requestTimeoutMs ?? leaseMs / 4) + LONGEST_OUTCOME_FLUSH_MS + OUTCOME_WRITE_MS, leaseMs / 2);
}

/**
 * The shortest lease that still covers a whole request of a delivery that waited in memory: one at
 * least as long as the request timeout plus the start margin above. While the margin is capped at
 * half the lease, that is a lease of twice the timeout (the margin is then at least the timeout);
 * beyond 2 x timeout + 2,100 ms the margin is the full timeout + 1,050 ms and the condition holds
 * too. HOOKRELAY_LEASE is refused below this (config.ts).
 */
export function minimumLeaseMs(requestTimeoutMs: number): number {
  return 2 * requestTimeoutMs;
}

/** Whether a lease covers a request started at the start margin (see minimumLeaseMs). */
export function leaseCoversRequest(leaseMs: number, requestTimeoutMs: number): boolean {
  return leaseMs >= requestTimeoutMs + deliveryStartMarginMs(requestTimeoutMs, leaseMs);
}
