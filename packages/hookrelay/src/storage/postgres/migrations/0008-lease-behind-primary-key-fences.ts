import { deriveFrom } from './derive-from.js';
import { up as migration6 } from './0006-claim-by-primary-keys.js';

/**
 * hookrelay_claim as migration 6 made it, with the three places that read picked rows by id
 * fenced so that the primary key is the only index their plan can use.
 *
 * Migration 6 kept the lease's condition `d.id = p.id AND d.status = 1 AND d.next_attempt_at <=
 * p_now` inside its LATERAL subquery. Over nearly empty, never-analysed tables (a fresh database
 * on a server with autovacuum off) the primary key and the partial index deliveries_due cost the
 * same, and a cached plan could pick deliveries_due: every lease then walked all due rows and
 * filtered them by id. On such a server 5 benchmark runs of 16 (2 workers) made 1,100 to 2,300
 * deliveries/s instead of about 4,000; in the one auto_explain watched, the slow leases it logged
 * took 55 ms on average, against 4 ms in the runs beside it (docs/benchmarks.md). Now each
 * subquery has the id condition alone and returns status and due time, which the enclosing query
 * checks; FOR UPDATE returns the row's latest version, so that check sees what the lease updates.
 *
 * Derived from migration 6's text rather than written out again: released migrations never change,
 * and each replacement below must match exactly once, so the change is the three statements shown.
 * CREATE OR REPLACE keeps the function in place for workers of the previous release that call it
 * during a rolling upgrade; parameters and result are unchanged.
 */
const REPLACEMENTS: readonly (readonly [string, string])[] = [
  [
    `-- Dropped and created, not replaced: the result gains a column (next_due_at).
DROP FUNCTION hookrelay_claim(BIGINT, BIGINT, TEXT, INTEGER, TEXT[], INTEGER, TEXT[], INTEGER[], INTEGER, INTEGER);
CREATE FUNCTION hookrelay_claim(`,
    'CREATE OR REPLACE FUNCTION hookrelay_claim(',
  ],
  // The lease of the picked rows.
  [
    `      CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d WHERE d.id = p.id AND d.status = 1 AND d.next_attempt_at <= p_now
        OFFSET 0 FOR UPDATE SKIP LOCKED
      ) x
    )`,
    `      CROSS JOIN LATERAL (
        SELECT d.id, d.status, d.next_attempt_at FROM deliveries d WHERE d.id = p.id
        OFFSET 0 FOR UPDATE SKIP LOCKED
      ) x
      WHERE x.status = 1 AND x.next_attempt_at <= p_now
    )`,
  ],
  // The room left at each held endpoint after the first lease.
  [
    `f.free - (SELECT count(*) FROM deliveries t WHERE t.id = ANY (leased) AND t.endpoint_id = f.endpoint_id) AS left_over`,
    `f.free - (
        SELECT count(*) FROM unnest(leased) AS q(id)
        CROSS JOIN LATERAL (SELECT t.endpoint_id FROM deliveries t WHERE t.id = q.id OFFSET 0) t
        WHERE t.endpoint_id = f.endpoint_id
      ) AS left_over`,
  ],
  // The lease of rows read afresh at those endpoints.
  [
    `        SELECT d.id FROM deliveries d
        WHERE d.id IN (SELECT fr.id FROM fresh fr WHERE fr.k <= fr.left_over ORDER BY fr.next_attempt_at LIMIT p_limit - cardinality(leased))
          AND d.status = 1 AND d.next_attempt_at <= p_now
        FOR UPDATE SKIP LOCKED`,
    `        SELECT x.id FROM (
          SELECT fr.id FROM fresh fr WHERE fr.k <= fr.left_over ORDER BY fr.next_attempt_at LIMIT p_limit - cardinality(leased)
        ) q
        CROSS JOIN LATERAL (
          SELECT d.id, d.status, d.next_attempt_at FROM deliveries d WHERE d.id = q.id
          OFFSET 0 FOR UPDATE SKIP LOCKED
        ) x
        WHERE x.status = 1 AND x.next_attempt_at <= p_now`,
  ],
];

export const up = deriveFrom(migration6, REPLACEMENTS, 'migration 8 (from 6)');
