/**
 * As sqlite/migrations/0003-message-expunged-at.ts. A nullable column without a default is a
 * catalog change in PostgreSQL: no table rewrite, the lock is held only for an instant.
 */
export const up = `
ALTER TABLE messages ADD COLUMN expunged_at BIGINT;
`;
