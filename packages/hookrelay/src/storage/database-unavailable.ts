/**
 * Errors that say the database cannot be reached or will not serve now, rather than that a query
 * was wrong: the API answers them 503 `unavailable`, so that clients retry, instead of a 500.
 * node-postgres puts the SQLSTATE, or Node's network error code, in `code`.
 */
const UNAVAILABLE_CODES = new Set([
  // connection_exception and its subclasses
  '08000', '08001', '08003', '08004', '08006',
  // admin_shutdown (pg_terminate_backend, a server shutting down), crash_shutdown, cannot_connect_now (starting up)
  '57P01', '57P02', '57P03',
  // too_many_connections
  '53300',
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);

/** node-postgres's own errors for a connection that went away or never came, which carry no code. */
const UNAVAILABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  if (typeof message !== 'string') return false;
  // object_not_in_prerequisite_state is also raised for other reasons; only this one is an outage
  // (ALTER DATABASE ... ALLOW_CONNECTIONS false, as during maintenance).
  if (code === '55000') return message.includes('not currently accepting connections');
  return UNAVAILABLE_MESSAGES.test(message);
}
