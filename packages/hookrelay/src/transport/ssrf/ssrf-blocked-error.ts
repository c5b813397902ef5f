/**
 * A delivery was refused because its destination resolved to an address the SSRF guard does not allow.
 * Callers match on `code`, which stays stable; the message is for operators and may change.
 */
export class SsrfBlockedError extends Error {
  readonly code = 'HOOKRELAY_SSRF_BLOCKED';
  /** The refused IP address: the literal from the URL, or what the hostname resolved to. */
  readonly address: string;
  /** The host the delivery targeted; equal to `address` when the URL held an IP literal. */
  readonly hostname: string;

  constructor(details: { address: string; hostname: string; reason: string }) {
    const target = details.hostname === details.address ? '' : ` to ${details.hostname}`;
    super(`SSRF guard refused the connection${target}: ${details.reason}`);
    this.name = 'SsrfBlockedError';
    this.address = details.address;
    this.hostname = details.hostname;
  }
}

/**
 * The SsrfBlockedError behind a failed request, or null. undici currently rejects with the connector's
 * error itself; this also follows `cause` chains and AggregateError members so callers keep working if
 * undici, Node's happy eyeballs or a retry wrapper starts wrapping it.
 */
export function isSsrfBlocked(err: unknown): SsrfBlockedError | null {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const current = queue.shift();
    if (current instanceof SsrfBlockedError) return current;
    if (current === null || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    if ('cause' in current) queue.push(current.cause);
    if (current instanceof AggregateError) queue.push(...(current.errors as unknown[]));
  }
  return null;
}
