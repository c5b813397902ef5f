/**
 * When the next attempt of a failed delivery is due. The schedule lists the delay before each
 * attempt (the first is normally 0: "at once"); jitter spreads retries of many deliveries that
 * failed together so they do not hit the endpoint again in lockstep.
 */
export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = [
  0,
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3_600_000,
  5 * 3_600_000,
  10 * 3_600_000,
  10 * 3_600_000,
];

export const DEFAULT_JITTER_RATIO = 0.2;

/**
 * Bounds for a receiver's Retry-After: at least 1 s, at most 1 h, so a header cannot park or spin a
 * delivery. Within them it delays the next attempt beyond the schedule's, never before it.
 */
export const RETRY_AFTER_MIN_MS = 1_000;
export const RETRY_AFTER_MAX_MS = 3_600_000;

export interface RetryDecision {
  /** null when the schedule is exhausted and the delivery is failed for good. */
  delayMs: number | null;
}

/**
 * @param attemptsMade attempts already made, including the one that just failed (>= 1)
 * @param random a value in [0, 1), injectable for tests
 */
export function nextRetryDelay(
  schedule: readonly number[],
  attemptsMade: number,
  retryAfterMs: number | null,
  jitterRatio: number = DEFAULT_JITTER_RATIO,
  random: () => number = Math.random,
): RetryDecision {
  const base = schedule[attemptsMade];
  if (base === undefined) return { delayMs: null };
  const jitter = base * jitterRatio * (random() * 2 - 1);
  const scheduled = Math.max(0, Math.round(base + jitter));
  if (retryAfterMs === null) return { delayMs: scheduled };
  // Retry-After can only push the next attempt later: honouring a short one literally would let
  // a receiver answering "503, Retry-After: 1" use up every attempt of a day-long schedule in
  // seconds, during exactly the kind of outage the schedule exists to ride out.
  const requested = Math.min(RETRY_AFTER_MAX_MS, Math.max(RETRY_AFTER_MIN_MS, retryAfterMs));
  return { delayMs: Math.max(scheduled, requested) };
}

/** Parses a Retry-After header: delta-seconds or an HTTP date. Returns null when absent or invalid. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}
