import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely } from 'kysely';
import type { Database } from '../db-schema.js';

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
  /** better-sqlite3's transaction wrapper, made once: it runs its argument between BEGIN IMMEDIATE and COMMIT. */
  readonly #immediate: (work: () => unknown) => unknown;

  constructor(db: Kysely<Database>, connection: BetterSqlite3.Database) {
    this.#db = db;
    this.#connection = connection;
    this.#immediate = connection.transaction((work: () => unknown) => work()).immediate;
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
   * connection. IMMEDIATE takes the write lock up front, waiting for the other thread's commit
   * (busy_timeout) instead of failing on a lock upgrade.
   */
  transaction<T>(work: () => T): Promise<T> {
    return this.#db.connection().execute(async () => this.#immediate(work) as T);
  }
}
