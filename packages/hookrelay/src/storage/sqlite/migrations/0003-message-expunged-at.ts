/**
 * When a message's content was expunged (DELETE .../msg/{id}/content): its payload is then '{}',
 * and this tells that apart from a message whose real payload is {}, so no delivery sends it.
 * A nullable column without a default: SQLite adds it without rewriting the table.
 */
export const up = `
ALTER TABLE messages ADD COLUMN expunged_at INTEGER;
`;
