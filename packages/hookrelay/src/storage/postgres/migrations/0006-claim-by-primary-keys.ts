/**
 * hookrelay_claim as migration 5 made it (that file documents the function), with its queries
 * made to behave whatever the planner's statistics say. PL/pgSQL caches a plan per connection;
 * cached while the tables were nearly empty (a fresh database, or statistics never gathered
 * because autovacuum is off), migration 5's plans could
 * - hash-join a full scan of messages into every claim's last query (3.9 ms of a 5.5 ms claim
 *   after 30,000 messages, seen with pg_stat_statements and auto_explain; docs/benchmarks.md);
 * - walk every due row to find the picked ids when leasing them;
 * - count an endpoint's live leases by walking all its deliveries (by deliveries_by_endpoint rather
 *   than the partial deliveries_leased), and count all of them where the cap needs no more;
 * - try the advisory lock on every endpoint in the table, not only the candidates' (a seq scan
 *   of endpoints with the lock as its filter), holding them all until the claim ends.
 * And a claim that leases nothing now returns when the next delivery falls due (next_due_at), which
 * saves the dispatcher a query after every empty claim: with two workers, most claims are empty
 * (each NOTIFY wakes both, and one takes the work). Same parameters; the result gains that column
 * and that row, which the workers of the previous release read harmlessly (see the row below), so
 * they keep working during a rolling upgrade.
 */
export const up = `
-- Dropped and created, not replaced: the result gains a column (next_due_at).
DROP FUNCTION hookrelay_claim(BIGINT, BIGINT, TEXT, INTEGER, TEXT[], INTEGER, TEXT[], INTEGER[], INTEGER, INTEGER);
CREATE FUNCTION hookrelay_claim(
  p_now BIGINT,
  p_lease_ms BIGINT,
  p_token TEXT,
  p_limit INTEGER,
  p_skip TEXT[],
  p_cap INTEGER,
  p_cap_endpoints TEXT[],
  p_cap_values INTEGER[],
  p_in_flight INTEGER,
  p_lock_class INTEGER
) RETURNS TABLE (
  passed_over BOOLEAN,
  delivery_id BIGINT,
  msg_id TEXT,
  app_id TEXT,
  endpoint_id TEXT,
  attempts INTEGER,
  trigger_type INTEGER,
  payload TEXT,
  msg_created_at BIGINT,
  endpoint_updated_at BIGINT,
  next_due_at BIGINT
) LANGUAGE plpgsql AS $claim$
DECLARE
  cand_ids BIGINT[];
  cand_eps TEXT[];
  held_ids TEXT[];
  held_free INTEGER[];
  picked BIGINT[];
  leased BIGINT[];
  more BIGINT[];
BEGIN
  <<claiming>>
  BEGIN
  -- One walk of the due index, without row locks; then a transaction-scoped advisory lock per
  -- endpoint among the candidates (the first 64 in due order), skipping endpoints another claimer
  -- holds, and each held endpoint's free slots: its cap less its live leases, all claimers'.
  SELECT array_agg(d.id ORDER BY d.next_attempt_at, d.id), array_agg(d.endpoint_id ORDER BY d.next_attempt_at, d.id)
  INTO cand_ids, cand_eps
  FROM (
    SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
    WHERE dd.status = 1 AND dd.next_attempt_at <= p_now AND dd.endpoint_id <> ALL (p_skip)
    ORDER BY dd.next_attempt_at LIMIT p_limit * 4
  ) d;
  IF cand_ids IS NULL THEN
    EXIT claiming;
  END IF;

  -- The lock is tried in a materialized step over the candidates' endpoints alone: as a condition
  -- beside a join to endpoints (migration 5), a plan that scanned endpoints could try it, and take
  -- the lock, on every endpoint in the table. The live leases are counted in deliveries_leased's
  -- order, only as far as they matter (no more than the slots the endpoint could have): so the
  -- plan walks that small index, never all the endpoint's deliveries by deliveries_by_endpoint.
  WITH eps AS MATERIALIZED (
    SELECT c.endpoint_id, min(c.n) AS first FROM unnest(cand_eps) WITH ORDINALITY AS c(endpoint_id, n)
    GROUP BY c.endpoint_id ORDER BY first LIMIT 64
  ), locked AS MATERIALIZED (
    SELECT eps.endpoint_id, eps.first FROM eps WHERE pg_try_advisory_xact_lock(p_lock_class, hashtext(eps.endpoint_id))
  )
  SELECT array_agg(h.id ORDER BY h.first), array_agg(h.free ORDER BY h.first) INTO held_ids, held_free
  FROM (
    SELECT locked.endpoint_id AS id, locked.first,
      GREATEST(0, LEAST(
        COALESCE(p_cap_values[array_position(p_cap_endpoints, locked.endpoint_id)], p_cap),
        COALESCE(p_in_flight, COALESCE(p_cap_values[array_position(p_cap_endpoints, locked.endpoint_id)], p_cap))
          - (SELECT count(*) FROM (
              SELECT 1 FROM deliveries l WHERE l.endpoint_id = locked.endpoint_id AND l.lease_token IS NOT NULL AND l.next_attempt_at > p_now
              ORDER BY l.next_attempt_at LIMIT COALESCE(p_in_flight, COALESCE(p_cap_values[array_position(p_cap_endpoints, locked.endpoint_id)], p_cap))
            ) live)
      ))::INTEGER AS free
    FROM locked
  ) h;
  IF held_ids IS NULL THEN
    EXIT claiming;
  END IF;

  -- Of the held endpoints' candidates, in due order, what fits each one's free slots.
  SELECT array_agg(r.id ORDER BY r.n) INTO picked
  FROM (
    SELECT c.id, c.n FROM (
      SELECT c.id, c.n, c.endpoint_id, row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.n) AS k
      FROM unnest(cand_ids, cand_eps) WITH ORDINALITY AS c(id, endpoint_id, n)
    ) c
    JOIN unnest(held_ids, held_free) AS f(endpoint_id, free) ON f.endpoint_id = c.endpoint_id
    WHERE c.k <= f.free
    ORDER BY c.n LIMIT p_limit
  ) r;

  -- Leased by primary key, re-checked as still due; a row some other writer holds is skipped.
  WITH leasing AS (
    UPDATE deliveries SET next_attempt_at = p_now + p_lease_ms, lease_token = p_token, updated_at = p_now
    WHERE id IN (
      -- By primary key, one picked id at a time (OFFSET 0 as below): a plan cached while the due
      -- index looked tiny would otherwise walk every due row and filter them by the picked ids.
      SELECT x.id FROM unnest(COALESCE(picked, '{}')) AS p(id)
      CROSS JOIN LATERAL (
        SELECT d.id FROM deliveries d WHERE d.id = p.id AND d.status = 1 AND d.next_attempt_at <= p_now
        OFFSET 0 FOR UPDATE SKIP LOCKED
      ) x
    )
    RETURNING id
  ) SELECT COALESCE(array_agg(id), '{}') INTO leased FROM leasing;

  -- The candidates were read before the locks: a claimer that held one of these endpoints
  -- meanwhile may have leased some of them. The endpoints are ours now, so their other due rows
  -- are read afresh, or this claim would come back short while work sits due that nobody claims.
  IF cardinality(leased) < COALESCE(cardinality(picked), 0) THEN
    WITH room AS (
      SELECT f.endpoint_id, f.free - (SELECT count(*) FROM deliveries t WHERE t.id = ANY (leased) AND t.endpoint_id = f.endpoint_id) AS left_over
      FROM unnest(held_ids, held_free) AS f(endpoint_id, free)
    ), fresh AS (
      SELECT d.id, d.next_attempt_at, row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at) AS k, room.left_over
      FROM (
        SELECT dd.id, dd.endpoint_id, dd.next_attempt_at FROM deliveries dd
        WHERE dd.status = 1 AND dd.next_attempt_at <= p_now AND dd.endpoint_id IN (SELECT r.endpoint_id FROM room r WHERE r.left_over > 0)
          AND dd.id <> ALL (picked)
        ORDER BY dd.next_attempt_at LIMIT (p_limit - cardinality(leased)) * 4
      ) d JOIN room ON room.endpoint_id = d.endpoint_id
    ), leasing AS (
      UPDATE deliveries SET next_attempt_at = p_now + p_lease_ms, lease_token = p_token, updated_at = p_now
      WHERE id IN (
        SELECT d.id FROM deliveries d
        WHERE d.id IN (SELECT fr.id FROM fresh fr WHERE fr.k <= fr.left_over ORDER BY fr.next_attempt_at LIMIT p_limit - cardinality(leased))
          AND d.status = 1 AND d.next_attempt_at <= p_now
        FOR UPDATE SKIP LOCKED
      )
      RETURNING id
    ) SELECT COALESCE(array_agg(id), '{}') INTO more FROM leasing;
    leased := leased || more;
  END IF;

  -- Row by row through the primary keys. OFFSET 0 keeps each LATERAL subquery from being
  -- flattened into a join that a plan cached while the tables were small would make a hash join
  -- over a full scan; kept apart, its only sensible plan is the primary key lookup.
  RETURN QUERY
    SELECT false, d.id, d.msg_id, d.app_id, d.endpoint_id, d.attempts, d.trigger_type, m.payload, m.created_at, e.updated_at, NULL::BIGINT
    FROM unnest(leased) AS l(id)
    JOIN LATERAL (SELECT dd.* FROM deliveries dd WHERE dd.id = l.id OFFSET 0) d ON true
    JOIN LATERAL (SELECT ee.updated_at FROM endpoints ee WHERE ee.id = d.endpoint_id OFFSET 0) e ON true
    LEFT JOIN LATERAL (SELECT mm.payload, mm.created_at FROM messages mm WHERE mm.id = d.msg_id AND mm.expunged_at IS NULL OFFSET 0) m ON true;
  -- Due work left behind at held endpoints whose cap is full: a request to one of them finishing
  -- is worth a new claim. (Endpoints another claimer holds are that claimer's to serve.)
  RETURN QUERY
    SELECT true, NULL::BIGINT, NULL::TEXT, NULL::TEXT, f.endpoint_id, NULL::INTEGER, NULL::INTEGER, NULL::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT
    FROM unnest(held_ids, held_free) AS f(endpoint_id, free)
    WHERE (SELECT count(*) FROM unnest(cand_eps) AS c(endpoint_id) WHERE c.endpoint_id = f.endpoint_id) > f.free;
  END claiming;
  -- A claim that leased nothing says when the next delivery falls due (null: none pending), so
  -- the dispatcher knows how long to sleep without asking in another round trip. The row is
  -- passed_over with no endpoint: a worker of the previous release adds null to its passed-over
  -- set, which matches no endpoint.
  IF COALESCE(cardinality(leased), 0) = 0 THEN
    RETURN QUERY
      SELECT true, NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::INTEGER, NULL::INTEGER, NULL::TEXT, NULL::BIGINT, NULL::BIGINT,
        (SELECT dd.next_attempt_at FROM deliveries dd WHERE dd.status = 1 ORDER BY dd.next_attempt_at LIMIT 1);
  END IF;
END;
$claim$;
`;
