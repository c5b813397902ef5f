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
const RINGS = 0;
const HOLD = 1;

export class CommitBell {
  /** [0]: rings so far; [1]: 1 while the checkpointer asks writers to hold off (holdWriters). */
  readonly #slots: Int32Array;

  /** A bell over `buffer` (8 bytes of shared memory); the same buffer in every thread rings one bell. */
  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.#slots = new Int32Array(buffer, 0, 2);
  }

  /** The number of rings so far: read it before trying the lock, and wait for it to change. */
  rings(): number {
    return Atomics.load(this.#slots, RINGS);
  }

  /** Called after a commit or rollback: wakes every thread waiting for the lock. */
  ring(): void {
    Atomics.add(this.#slots, RINGS, 1);
    Atomics.notify(this.#slots, RINGS);
  }

  /**
   * Resolves when the bell has rung since `seen` was read (at once if it has already), or after
   * `timeoutMs`. Does not block the event loop.
   */
  async after(seen: number, timeoutMs: number): Promise<void> {
    const wait = Atomics.waitAsync(this.#slots, RINGS, seen, timeoutMs);
    if (!wait.async) return;
    // A pending waitAsync does not keep Node's event loop alive; the timer does, so that a thread
    // with nothing else to do (a test's writer, a draining dispatcher) does not exit mid-wait.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([wait.value, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /**
   * Asks hot-path writers not to begin until releaseWriters(): the checkpointer's RESTART needs the
   * write lock, and writers retrying at once would otherwise keep taking it first (see
   * checkpointer-thread.ts). Writers honour the request for a bounded time only.
   */
  holdWriters(): void {
    Atomics.store(this.#slots, HOLD, 1);
  }

  releaseWriters(): void {
    Atomics.store(this.#slots, HOLD, 0);
    this.ring();
  }

  writersHeld(): boolean {
    return Atomics.load(this.#slots, HOLD) === 1;
  }
}
