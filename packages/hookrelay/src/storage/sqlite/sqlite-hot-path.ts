import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely } from 'kysely';
import type { Database } from '../db-schema.js';
import type { CommitBell } from './commit-bell.js';

/** How long a transaction waiting for the write lock sleeps between tries when no bell rings. */
const LOCK_POLL_MS = 1;
/**
 * How long a transaction holds off at most while the checkpointer asks writers to (commit-bell.ts):
 * long enough for a RESTART checkpoint's copy and sync, short enough that a checkpointer that
 * never lets go cannot stall the writers.
 */
const CHECKPOINT_DEFER_MAX_MS = 1_000;

/**
 * Runs the statements of the per-message hot path (publish, attempt recording) on better-sqlite3
 * directly. Through Kysely every query is built, compiled and awaited anew, which cost about a
 * third as much CPU as SQLite's own work for these statements; here each is prepared once per
 * connection and a whole group runs synchronously in one transaction.
 *
 * Kysely's SQLite driver serialises its queries and transactions on this one connection with a
 * mutex, and a Kysely transaction can be waiting between two of its statements. So a hot-path
 * transaction takes that mutex first (Kysely's `connection()`): it never lands inside another
 * transaction, and none lands inside it.
 */
export class SqliteHotPath {
  readonly #db: Kysely<Database>;
  readonly #connection: BetterSqlite3.Database;
  readonly #statements = new Map<string, BetterSqlite3.Statement>();
  /** The connection's busy_timeout: how long a hot-path transaction may wait for the write lock. */
  readonly #busyTimeoutMs: number;
  readonly #bell: CommitBell | null;
  readonly #pollMs: number;

  /**
   * `bell`: shared with the other threads of this process that write to the same file (see
   * commit-bell.ts); a waiting transaction then begins as soon as one of theirs ends, and polls
   * every `pollMs` only for writers that do not ring it.
   */
  constructor(db: Kysely<Database>, connection: BetterSqlite3.Database, bell: CommitBell | null = null, pollMs = LOCK_POLL_MS) {
    this.#db = db;
    this.#connection = connection;
    this.#busyTimeoutMs = Number(connection.pragma('busy_timeout', { simple: true }));
    this.#bell = bell;
    this.#pollMs = pollMs;
  }

  /** The statement for `sql`, prepared on first use (the tables exist only once migrations ran). */
  statement(sql: string): BetterSqlite3.Statement {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#connection.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * Runs `work` in BEGIN IMMEDIATE ... COMMIT (rolled back if it throws) while holding Kysely's
   * connection. IMMEDIATE takes the write lock up front instead of failing on a lock upgrade.
   *
   * While the other thread holds the write lock, this waits without blocking its event loop.
   * SQLite's own busy handler sleeps the thread for 1, 2, 5, 10, 15 ms and more in turn, and does
   * not wake when the lock is freed; with both threads committing often (and, on a busy machine,
   * a lock holder preempted now and then) the API and the dispatcher spent a tenth of their time
   * asleep there, with their requests waiting. Here a busy lock is tried again on the next turn
   * of the event loop, then when the bell says another thread's transaction ended, or every
   * millisecond without a bell, up to the connection's busy_timeout in all. While the
   * checkpointer asks writers to hold off (a RESTART checkpoint wants the lock), it does not try
   * until the checkpointer lets go, for CHECKPOINT_DEFER_MAX_MS at most.
   */
  async transaction<T>(work: () => T): Promise<T> {
    return this.#db.connection().execute(async () => {
      const giveUpAt = Date.now() + this.#busyTimeoutMs;
      const deferAtMostUntil = Date.now() + CHECKPOINT_DEFER_MAX_MS;
      for (let attempt = 0; ; attempt++) {
        const rings = this.#bell?.rings() ?? 0;
        const deferring = this.#bell !== null && this.#bell.writersHeld() && Date.now() < deferAtMostUntil;
        if (!deferring && this.#tryBegin(attempt > 0 && Date.now() >= giveUpAt)) break;
        if (attempt === 0 && !deferring) await new Promise((resolve) => setImmediate(resolve));
        else if (this.#bell) await this.#bell.after(rings, Math.min(this.#pollMs, Math.max(1, (deferring ? deferAtMostUntil : giveUpAt) - Date.now())));
        else await new Promise((resolve) => setTimeout(resolve, this.#pollMs));
      }
      try {
        const result = work();
        this.statement('COMMIT').run();
        return result;
      } catch (error) {
        if (this.#connection.inTransaction) this.statement('ROLLBACK').run();
        throw error;
      } finally {
        this.#bell?.ring();
      }
    });
  }

  /** BEGIN IMMEDIATE without waiting for the write lock: false when another connection holds it. */
  #tryBegin(lastAttempt: boolean): boolean {
    this.statement('PRAGMA busy_timeout = 0').get();
    try {
      this.statement('BEGIN IMMEDIATE').run();
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_BUSY' && !lastAttempt) return false;
      throw error;
    } finally {
      this.statement(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`).get();
    }
  }
}
