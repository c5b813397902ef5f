/** A numbered schema change; released migrations are never edited, only followed by new ones. */
export interface Migration {
  version: number;
  name: string;
  /** One or more statements, run as one script. */
  up: string;
}

/**
 * One database connection as the runner needs it. Each engine adapts its driver (better-sqlite3,
 * a pg client) to these two calls, so the bookkeeping below exists once for every engine.
 */
export interface MigrationConnection {
  /** Runs a script of one or more statements without parameters. */
  exec(script: string): Promise<void>;
  /** Runs one query and returns its rows. */
  query(sql: string): Promise<Record<string, unknown>[]>;
}

/**
 * Applies the pending migrations in one transaction and records each in schema_migrations;
 * returns the versions applied. `begin` opens the transaction and takes the engine's migration
 * lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: BEGIN plus an advisory lock), so processes starting
 * together serialise there and the later ones find the work done. The bookkeeping table is created
 * under that lock too: a concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL.
 */
export async function runMigrations(connection: MigrationConnection, migrations: readonly Migration[], begin: readonly string[]): Promise<number[]> {
  for (const statement of begin) await connection.exec(statement);
  try {
    await connection.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
    const done = new Set((await connection.query('SELECT version FROM schema_migrations')).map((row) => Number(row['version'])));
    const applied: number[] = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      await connection.exec(migration.up);
      // Literals from this file's own constants, so no engine-specific parameter syntax is needed.
      await connection.exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (${migration.version}, '${migration.name.replaceAll("'", "''")}', ${Date.now()})`);
      applied.push(migration.version);
    }
    await connection.exec('COMMIT');
    return applied;
  } catch (error) {
    await connection.exec('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
