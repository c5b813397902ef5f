import type { FastifyInstance } from 'fastify';

export interface RouteEntry {
  method: string;
  /** The registered pattern, e.g. /api/v1/app/:app_id. */
  url: string;
}

/**
 * Every route the app registers, recorded through the onRoute hook (so it must be attached before
 * any route). It answers which methods a concrete path supports, for 405 responses, and gives
 * tests the full route list so a new route is covered without anyone remembering to add it.
 */
export class RouteTable {
  readonly #routes: (RouteEntry & { pattern: RegExp })[] = [];

  attach(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) this.#routes.push({ method, url: route.url, pattern: toPattern(route.url) });
    });
  }

  routes(): RouteEntry[] {
    return this.#routes.map(({ method, url }) => ({ method, url }));
  }

  /** Methods registered for a request path (query string and one trailing slash ignored). */
  allowedMethods(path: string): string[] {
    const bare = path.split('?')[0]!.replace(/(.)\/$/, '$1');
    return [...new Set(this.#routes.filter((r) => r.pattern.test(bare)).map((r) => r.method))];
  }
}

function toPattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}
