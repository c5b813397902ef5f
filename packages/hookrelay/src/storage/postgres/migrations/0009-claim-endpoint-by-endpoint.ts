import { deriveFrom } from './derive-from.js';
import { up as migration8 } from './0008-lease-behind-primary-key-fences.js';

/**
 * hookrelay_claim as migration 8 made it, with a walk of the due index that no backlog can make
 * long: as SQLite's claim does since its migration 7 (docs/delivery.md, "Backlogs").
 *
 * Migration 8's first query walked the due index in due order, filtering out the endpoints the
 * worker passes over (saturated or paced) as it went, until it had 4 candidates per row wanted. A
 * backlog of due rows at a passed-over endpoint was read by every claim: with
 * `bench/claim-behind-backlog.js`, 3 ms per claim behind 10,000 such rows, 18 ms behind 200,000,
 * 90 ms behind a million (a slow endpoint sent 100 messages a second has 360,000 in an hour), on
 * every worker's every claim. Now:
 * - the walk stops after 4 rows per row wanted, whoever's they are; passed-over endpoints' rows
 *   are dropped after it;
 * - when the walk was used up and what it found cannot fill the claim (passed over, or more rows
 *   at an endpoint than its cap), the claim also reads endpoint by endpoint, through the new
 *   partial index deliveries_due_by_endpoint: the endpoints with pending rows by a skip scan (at
 *   most 1000), the 64 whose oldest due row is oldest, and of each its oldest due rows up to its
 *   cap;
 * - the re-read after stale candidates goes endpoint by endpoint too;
 * - the live leases of the endpoints whose locks it took are counted in a statement after the one
 *   that takes them: counted in the same one, a claimer's leases committed between that
 *   statement's snapshot and its lock went uncounted, and the endpoint could get twice its cap.
 * The index costs one more index entry for each version of a delivery row that is pending (its
 * insert and its lease).
 *
 * A large database builds the index while writes wait. To avoid that pause, build it first with
 * `CREATE INDEX CONCURRENTLY deliveries_due_by_endpoint ON deliveries (endpoint_id,
 * next_attempt_at) WHERE status = 1` (docs/deploy.md): this migration keeps an existing one.
 *
 * Derived from migration 8's text as migration 8 is from 6 (each replacement must match once).
 */
const REPLACEMENTS: readonly (readonly [string, string])[] = [
  [
    'CREATE OR REPLACE FUNCTION hookrelay_claim(',
    `CREATE INDEX IF NOT EXISTS deliveries_due_by_endpoint ON deliveries (endpoint_id, next_attempt_at) WHERE status = 1;
CREATE OR REPLACE FUNCTION hookrelay_claim(`,
  ],
  // JIT compilation never pays for a claim's small queries, and a row estimate for a LIMIT taken
  // from a parameter can pass jit_above_cost: 20 ms of compiling was seen on a 1 ms query.
  [') LANGUAGE plpgsql AS $claim$', ') LANGUAGE plpgsql SET jit = off AS $claim$'],
  [
    `  more BIGINT[];
BEGIN`,
    `  more BIGINT[];
  cand_ats BIGINT[];
  walked BIGINT;
  pickable BIGINT;
  full_eps TEXT[];
  extra_ids BIGINT[];
  extra_eps TEXT[];
  extra_ats BIGINT[];
BEGIN`,
  ],
  [
    `  SELECT array_agg(d.id ORDER BY d.next_attempt_at, d.id), array_agg(d.endpoint_id ORDER BY d.next_attempt_at, d.id)
  INTO cand_ids, cand_eps
  FROM (
    SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
    WHERE dd.status = 1 AND dd.next_attempt_at <= p_now AND dd.endpoint_id <> ALL (p_skip)
    ORDER BY dd.next_attempt_at LIMIT p_limit * 4
  ) d;
  IF cand_ids IS NULL THEN`,
    `  -- The walk stops after 4 rows per row wanted, whoever's they are; the passed-over endpoints'
  -- are dropped after it, so that a backlog of theirs costs a claim no more than that.
  SELECT array_agg(w.id ORDER BY w.next_attempt_at, w.id) FILTER (WHERE w.endpoint_id <> ALL (p_skip)),
    array_agg(w.endpoint_id ORDER BY w.next_attempt_at, w.id) FILTER (WHERE w.endpoint_id <> ALL (p_skip)),
    array_agg(w.next_attempt_at ORDER BY w.next_attempt_at, w.id) FILTER (WHERE w.endpoint_id <> ALL (p_skip)),
    count(*)
  INTO cand_ids, cand_eps, cand_ats, walked
  FROM (
    SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
    WHERE dd.status = 1 AND dd.next_attempt_at <= p_now
    ORDER BY dd.next_attempt_at LIMIT p_limit * 4
  ) w;
  -- A walk used up whose rows cannot fill the claim (passed over, or more at an endpoint than its
  -- cap) may have stopped short of other endpoints' due rows: endpoint by endpoint then, through
  -- deliveries_due_by_endpoint. Each step reads by that index alone: the skip scan finds the
  -- endpoints with pending rows (1000 at most); of those neither passed over nor already filling
  -- their cap from the walk, the 64 whose oldest due row is oldest are kept, and of each its
  -- oldest due rows up to its cap join the candidates, in due order. (With few endpoints, all in
  -- the walk at their cap, nothing joins and the candidates are not sorted again.)
  IF walked = p_limit * 4 THEN
    SELECT COALESCE(sum(LEAST(k.n, k.cap)), 0), array_agg(k.endpoint_id) FILTER (WHERE k.n >= k.cap)
    INTO pickable, full_eps
    FROM (
      SELECT c.endpoint_id, count(*) AS n, COALESCE(p_cap_values[array_position(p_cap_endpoints, c.endpoint_id)], p_cap) AS cap
      FROM unnest(cand_eps) AS c(endpoint_id) GROUP BY c.endpoint_id
    ) k;
  END IF;
  IF walked = p_limit * 4 AND pickable < p_limit THEN
    WITH RECURSIVE ep(id) AS (
      -- Ordered by next_attempt_at as well, which only deliveries_due_by_endpoint gives: never
      -- deliveries_by_endpoint, which would walk an endpoint's finished rows to its pending ones.
      (SELECT dd.endpoint_id FROM deliveries dd WHERE dd.status = 1 ORDER BY dd.endpoint_id, dd.next_attempt_at LIMIT 1)
      UNION ALL
      SELECT (SELECT dd.endpoint_id FROM deliveries dd WHERE dd.status = 1 AND dd.endpoint_id > ep.id ORDER BY dd.endpoint_id, dd.next_attempt_at LIMIT 1)
      FROM ep WHERE ep.id IS NOT NULL
    ), eps AS MATERIALIZED (
      SELECT ep.id FROM ep WHERE ep.id IS NOT NULL LIMIT 1000
    ), heads AS MATERIALIZED (
      SELECT eps.id, h.head FROM eps
      CROSS JOIN LATERAL (
        SELECT dd.next_attempt_at AS head FROM deliveries dd WHERE dd.status = 1 AND dd.endpoint_id = eps.id ORDER BY dd.next_attempt_at LIMIT 1
      ) h
      WHERE h.head <= p_now AND eps.id <> ALL (p_skip) AND eps.id <> ALL (COALESCE(full_eps, '{}'))
      ORDER BY h.head LIMIT 64
    )
    SELECT array_agg(r.id), array_agg(r.endpoint_id), array_agg(r.next_attempt_at) INTO extra_ids, extra_eps, extra_ats
    FROM heads
    CROSS JOIN LATERAL (
      SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
      WHERE dd.status = 1 AND dd.endpoint_id = heads.id AND dd.next_attempt_at <= p_now
      ORDER BY dd.next_attempt_at LIMIT LEAST(p_limit, COALESCE(p_cap_values[array_position(p_cap_endpoints, heads.id)], p_cap))
    ) r;
    IF extra_ids IS NOT NULL THEN
      SELECT array_agg(u.id ORDER BY u.next_attempt_at, u.id), array_agg(u.endpoint_id ORDER BY u.next_attempt_at, u.id)
      INTO cand_ids, cand_eps
      FROM (
        -- An endpoint below its cap in the walk has its first rows there too: each row once.
        SELECT DISTINCT ON (a.id) a.id, a.endpoint_id, a.next_attempt_at FROM (
          SELECT c.id, c.endpoint_id, c.next_attempt_at FROM unnest(cand_ids, cand_eps, cand_ats) AS c(id, endpoint_id, next_attempt_at)
          UNION ALL
          SELECT x.id, x.endpoint_id, x.next_attempt_at FROM unnest(extra_ids, extra_eps, extra_ats) AS x(id, endpoint_id, next_attempt_at)
        ) a ORDER BY a.id, a.next_attempt_at
      ) u;
    END IF;
  END IF;
  IF cand_ids IS NULL THEN`,
  ],
  [
    `  ), locked AS MATERIALIZED (
    SELECT eps.endpoint_id, eps.first FROM eps WHERE pg_try_advisory_xact_lock(p_lock_class, hashtext(eps.endpoint_id))
  )
  SELECT array_agg(h.id ORDER BY h.first), array_agg(h.free ORDER BY h.first) INTO held_ids, held_free
  FROM (
    SELECT locked.endpoint_id AS id, locked.first,`,
    `  )
  SELECT array_agg(eps.endpoint_id ORDER BY eps.first) INTO held_ids
  FROM eps WHERE pg_try_advisory_xact_lock(p_lock_class, hashtext(eps.endpoint_id));
  -- The live leases are counted in a statement of their own, whose snapshot is taken with the
  -- locks held. Counted in the statement that takes the locks, under that statement's snapshot,
  -- which is older than the locks, the leases of a claimer that held an endpoint and committed in
  -- between went uncounted, and the endpoint got its cap twice over (8 requests open at a cap of
  -- 4 across 3 workers, seen once in the scale-out test).
  SELECT array_agg(h.free ORDER BY h.n) INTO held_free
  FROM (
    SELECT locked.n,`,
  ],
  [
    `    FROM locked
  ) h;`,
    `    FROM unnest(held_ids) WITH ORDINALITY AS locked(endpoint_id, n)
  ) h;`,
  ],
  [
    `      FROM (
        SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
        WHERE dd.status = 1 AND dd.next_attempt_at <= p_now AND dd.endpoint_id IN (SELECT r.endpoint_id FROM room r WHERE r.left_over > 0)
          AND dd.id <> ALL (picked)
        ORDER BY dd.next_attempt_at LIMIT (p_limit - cardinality(leased)) * 4
      ) d JOIN room ON room.endpoint_id = d.endpoint_id`,
    `      FROM room
      CROSS JOIN LATERAL (
        SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
        WHERE dd.status = 1 AND dd.endpoint_id = room.endpoint_id AND dd.next_attempt_at <= p_now AND dd.id <> ALL (picked)
        ORDER BY dd.next_attempt_at LIMIT GREATEST(room.left_over, 0)
      ) d`,
  ],
];

export const up = deriveFrom(migration8, REPLACEMENTS, 'migration 9 (from 8)');
