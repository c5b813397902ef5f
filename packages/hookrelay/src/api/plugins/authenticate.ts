import { hash as digest, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HookrelayError } from '../../core/errors.js';
import type { ApiKeyStore } from '../../storage/storage.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** sha256 hex of the bearer token that authenticated this request (null on public routes). */
    apiKeyHash: string | null;
  }
}

/**
 * The stored form of an API key: keys are compared and kept as sha256 hex only. One-shot
 * `crypto.hash` costs a third of a Hash object's create/update/digest, and runs on every request.
 */
export function hashApiKey(token: string): string {
  // Hex: crypto.hash's 'buffer' output costs three times its hex output here (Node 20).
  return digest('sha256', token, 'hex');
}

/** A new API key: `hr_` + 32 base64url characters (192 random bits). */
export function generateApiKey(): string {
  return 'hr_' + randomBytes(24).toString('base64url');
}

/**
 * Routes answered without a token: liveness and readiness for load balancers and orchestrators,
 * and the API's own description (it holds no data). Matched on the route pattern Fastify
 * resolved, not on the raw URL, so no path trick can reach a protected handler through them.
 * /metrics is NOT here: its labels name endpoints and volumes, so a scraper must send the key (Prometheus:
 * `authorization: { credentials_file: ... }` in the scrape config).
 */
const PUBLIC_ROUTES = new Set(['/health', '/api/v1/health', '/health/ready', '/api/v1/health/ready', '/api/v1/openapi.json']);

export function isPublicRoute(routeUrl: string | undefined): boolean {
  if (routeUrl === undefined) return false;
  return PUBLIC_ROUTES.has(routeUrl) || routeUrl === '/docs' || routeUrl.startsWith('/docs/');
}

/** Positive lookups are cached briefly: a key is checked on every request, and keys are rarely revoked. */
const CACHE_TTL_MS = 60_000;
const CACHE_MAX_ENTRIES = 1_000;

export interface AuthenticateOptions {
  /** The admin token from config (HOOKRELAY_API_KEY), or null. */
  apiKey: string | null;
  apiKeys: ApiKeyStore;
}

/** Requires `Authorization: Bearer <key>` on every route that is not public; 401 otherwise. */
export function installAuthentication(app: FastifyInstance, options: AuthenticateOptions): void {
  const adminHash = options.apiKey ? Buffer.from(hashApiKey(options.apiKey), 'hex') : null;
  const cache = new Map<string, number>();

  const isStoredKey = async (hash: string): Promise<boolean> => {
    const cachedUntil = cache.get(hash);
    if (cachedUntil !== undefined && cachedUntil > Date.now()) return true;
    if (!(await options.apiKeys.existsByHash(hash))) return false;
    if (cache.size >= CACHE_MAX_ENTRIES) cache.clear();
    cache.set(hash, Date.now() + CACHE_TTL_MS);
    return true;
  };

  app.decorateRequest('apiKeyHash', null);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (isPublicRoute(request.routeOptions.url)) return;
    const token = bearerToken(request.headers.authorization);
    if (token === null) refuse(reply, 'Send the API key as "Authorization: Bearer <key>"');
    const hash = hashApiKey(token);
    // Comparing fixed-length digests in constant time leaks nothing about the admin key.
    const isAdmin = adminHash !== null && timingSafeEqual(Buffer.from(hash, 'hex'), adminHash);
    if (!isAdmin && !(await isStoredKey(hash))) refuse(reply, 'Invalid API key');
    request.apiKeyHash = hash;
  });
}

/** A 401 that names the scheme to use (RFC 9110: every 401 carries WWW-Authenticate). */
function refuse(reply: FastifyReply, detail: string): never {
  reply.header('www-authenticate', 'Bearer');
  throw new HookrelayError('authentication_failed', detail);
}

function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}
