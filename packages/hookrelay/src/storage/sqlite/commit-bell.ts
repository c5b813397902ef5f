/**
 * Tells the threads of one process that share a SQLite file when one of them has let go of the
 * write lock, so that a thread waiting for it begins at once instead of at its next poll.
 *
 * SQLite's lock is still the only lock: the bell is a counter in shared memory that a hot-path
 * transaction increments (and wakes waiters on) after its COMMIT or ROLLBACK. A waiter reads the
 * counter before it tries BEGIN and, when the lock is busy, waits until the counter moves or a
 * fallback interval passes (other writers, such as Kysely's transactions or another process, do not
 * ring). Polling alone cost the API thread 1.5-2.5 ms per collision with the dispatcher's outcome
 * writes, which hold the lock for well under a millisecond: the timer's granularity, not the work.
 */
export class CommitBell {
  readonly #count: Int32Array;

  /** A bell over `buffer` (4 bytes of shared memory); the same buffer in every thread rings one bell. */
  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.#count = new Int32Array(buffer, 0, 1);
  }

  /** The number of rings so far: read it before trying the lock, and wait for it to change. */
  rings(): number {
    return Atomics.load(this.#count, 0);
  }

  /** Called after a commit or rollback: wakes every thread waiting for the lock. */
  ring(): void {
    Atomics.add(this.#count, 0, 1);
    Atomics.notify(this.#count, 0);
  }

  /**
   * Resolves when the bell has rung since `seen` was read (at once if it has already), or after
   * `timeoutMs`. Does not block the event loop.
   */
  async after(seen: number, timeoutMs: number): Promise<void> {
    const wait = Atomics.waitAsync(this.#count, 0, seen, timeoutMs);
    if (wait.async) await wait.value;
  }
}
