/**
 * The claim as one server-side function, so that a dispatcher's claim is one round trip instead of
 * a transaction of six statements, with the payloads and the endpoints' change stamps in the same
 * answer. On a busy worker every round trip is a write and a wake-up on both sides of the socket;
 * see docs/benchmarks.md for what this saved. postgres-delivery-store.ts documents the algorithm;
 * this is its only implementation. PostgreSQL only: SQLite's claim runs in-process.
 *
 * Rows come back in two kinds: passed_over = false, a leased delivery (with its message's payload
 * and created_at, both null when the content was expunged or the message deleted, and its
 * endpoint's updated_at); passed_over = true, only endpoint_id: an endpoint this claim held whose
 * cap left due work behind.
 */
export const up = `
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
  endpoint_updated_at BIGINT
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
    RETURN;
  END IF;

  SELECT array_agg(h.id ORDER BY h.first), array_agg(h.free ORDER BY h.first) INTO held_ids, held_free
  FROM (
    SELECT e.id, eps.first,
      GREATEST(0, LEAST(
        COALESCE(p_cap_values[array_position(p_cap_endpoints, e.id)], p_cap),
        COALESCE(p_in_flight, COALESCE(p_cap_values[array_position(p_cap_endpoints, e.id)], p_cap))
          - (SELECT count(*) FROM deliveries l WHERE l.endpoint_id = e.id AND l.lease_token IS NOT NULL AND l.next_attempt_at > p_now)
      ))::INTEGER AS free
    FROM (
      SELECT c.endpoint_id, min(c.n) AS first FROM unnest(cand_eps) WITH ORDINALITY AS c(endpoint_id, n)
      GROUP BY c.endpoint_id ORDER BY first LIMIT 64
    ) eps
    JOIN endpoints e ON e.id = eps.endpoint_id
    WHERE pg_try_advisory_xact_lock(p_lock_class, hashtext(e.id))
  ) h;
  IF held_ids IS NULL THEN
    RETURN;
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
      SELECT d.id FROM deliveries d
      WHERE d.id = ANY (COALESCE(picked, '{}')) AND d.status = 1 AND d.next_attempt_at <= p_now
      FOR UPDATE SKIP LOCKED
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

  RETURN QUERY
    SELECT false, d.id, d.msg_id, d.app_id, d.endpoint_id, d.attempts, d.trigger_type,
      CASE WHEN m.expunged_at IS NULL THEN m.payload END,
      CASE WHEN m.expunged_at IS NULL THEN m.created_at END,
      e.updated_at
    FROM deliveries d
    LEFT JOIN messages m ON m.id = d.msg_id
    JOIN endpoints e ON e.id = d.endpoint_id
    WHERE d.id = ANY (leased);
  -- Due work left behind at held endpoints whose cap is full: a request to one of them finishing
  -- is worth a new claim. (Endpoints another claimer holds are that claimer's to serve.)
  RETURN QUERY
    SELECT true, NULL::BIGINT, NULL::TEXT, NULL::TEXT, f.endpoint_id, NULL::INTEGER, NULL::INTEGER, NULL::TEXT, NULL::BIGINT, NULL::BIGINT
    FROM unnest(held_ids, held_free) AS f(endpoint_id, free)
    WHERE (SELECT count(*) FROM unnest(cand_eps) AS c(endpoint_id) WHERE c.endpoint_id = f.endpoint_id) > f.free;
END;
$claim$;
`;
