import { HookrelayError, notFound } from '../../core/errors.js';

/**
 * Engine error codes for constraint violations. better-sqlite3 puts the extended result code in
 * `code`; node-postgres puts the SQLSTATE there. Matching on codes keeps the stores free of
 * engine-specific message parsing.
 */
const UNIQUE_CODES = new Set(['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_PRIMARYKEY', '23505']);
const FOREIGN_KEY_CODES = new Set(['SQLITE_CONSTRAINT_FOREIGNKEY', '23503']);
/** PostgreSQL text cannot hold U+0000 (22021); SQLite stores it, so only PostgreSQL raises these. */
const UNSTORABLE_TEXT_CODES = new Set(['22021', '22P05']);

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

export function isUniqueViolation(error: unknown): boolean {
  return UNIQUE_CODES.has(codeOf(error) as string);
}

export function isForeignKeyViolation(error: unknown): boolean {
  return FOREIGN_KEY_CODES.has(codeOf(error) as string);
}

/** The database refused a string it cannot store (PostgreSQL and the NUL character): the client's input, not a fault. */
export function isUnstorableText(error: unknown): boolean {
  return UNSTORABLE_TEXT_CODES.has(codeOf(error) as string);
}

/**
 * Runs a write and turns constraint violations into API errors: a unique violation becomes
 * `conflict` with `conflictDetail`; a foreign-key violation means the parent row vanished
 * between the caller's lookup and the write, which the client sees as that parent not found.
 */
export async function mapConstraintErrors<T>(write: () => Promise<T>, conflictDetail: string, parent?: string): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (isUniqueViolation(error)) throw new HookrelayError('conflict', conflictDetail, { cause: error });
    if (parent !== undefined && isForeignKeyViolation(error)) throw notFound(parent);
    throw error;
  }
}
