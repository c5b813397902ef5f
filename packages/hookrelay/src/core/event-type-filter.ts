/**
 * Endpoint subscriptions: `filterTypes` entries are exact event type names or prefixes ending in
 * `.*` (`order.*` matches `order.created` and `order.item.added`, not `order`); `*` matches all.
 * An empty or absent list subscribes to everything, as in Svix.
 */
export function matchesEventType(filterTypes: readonly string[] | null, eventType: string): boolean {
  if (!filterTypes || filterTypes.length === 0) return true;
  for (const filter of filterTypes) {
    if (filter === eventType || filter === '*') return true;
    if (filter.endsWith('.*') && eventType.startsWith(filter.slice(0, -1))) return true;
  }
  return false;
}

/** An endpoint with channels receives only messages sharing one of them; without, all messages. */
export function matchesChannels(endpointChannels: readonly string[] | null, messageChannels: readonly string[] | null): boolean {
  if (!endpointChannels || endpointChannels.length === 0) return true;
  if (!messageChannels || messageChannels.length === 0) return false;
  return messageChannels.some((c) => endpointChannels.includes(c));
}
