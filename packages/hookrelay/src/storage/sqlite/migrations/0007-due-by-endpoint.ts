/**
 * The due deliveries by endpoint, for a claim whose walk in due order is used up by the backlog of
 * endpoints it passes over (sqlite-delivery-store.ts, #pickByEndpoint): it finds the endpoints with
 * pending rows by a skip scan of this index and reads each one's oldest due rows from it, so its
 * cost grows with the endpoints, not with their backlog. SQLite only: PostgreSQL's claim is its own
 * function. (Versions 5 and 6 are PostgreSQL's alone.)
 */
export const up = `
CREATE INDEX deliveries_due_by_endpoint ON deliveries (endpoint_id, next_attempt_at) WHERE status = 1;
`;
