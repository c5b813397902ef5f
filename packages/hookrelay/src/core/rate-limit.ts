/**
 * Endpoint rate limits (Svix's `rateLimit`: sends per second). A token bucket holds a tenth of a
 * second of sends (at least one): enough to absorb scheduling jitter, small enough that a burst
 * cannot break the per-second rate a receiver was promised.
 */
export function rateLimitBurst(ratePerSecond: number): number {
  return Math.max(1, ratePerSecond / 10);
}

/** How long a dispatcher leaves a rate-limited endpoint alone after taking its tokens: one burst's refill. */
export function rateLimitPauseMs(ratePerSecond: number): number {
  return Math.max(10, Math.round((1000 * rateLimitBurst(ratePerSecond)) / ratePerSecond));
}
