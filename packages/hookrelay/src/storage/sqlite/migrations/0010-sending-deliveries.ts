/**
 * Leased deliveries get a status of their own on SQLite: 3, "sending" (Svix's MessageStatus).
 * A delivery handed off or claimed is written with it, and one small index holds those rows by
 * lease expiry, instead of both due indexes (deliveries_due, deliveries_due_by_endpoint) holding
 * them at a due time in the future where no claim reads. Each delivery then writes two index
 * entries fewer on its way through (bench/sqlite-schema-variants.js: about 3 µs per delivery at
 * throughput, 8-10 % fewer WAL frames when groups are small). A claim first returns expired
 * "sending" rows to pending (sqlite-delivery-store.ts), so crash recovery goes through the claim's
 * usual paths. Rows leased before this migration (status 1 with a lease token) stay valid: they
 * become due when their lease runs out, as before. PostgreSQL keeps its leases in status 1.
 */
export const up = `
CREATE INDEX deliveries_sending ON deliveries (next_attempt_at) WHERE status = 3;
`;
