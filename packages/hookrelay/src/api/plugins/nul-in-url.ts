import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { notFound, validationError } from '../../core/errors.js';

/** What each path parameter names, for the 404's detail. */
const RESOURCE_OF_PARAM: Record<string, string> = {
  app_id: 'Application',
  endpoint_id: 'Endpoint',
  msg_id: 'Message',
  attempt_id: 'Message attempt',
  event_type_name: 'Event type',
};

/**
 * The NUL character (U+0000, `%00`) in a path or query parameter, answered before anything reads
 * the database. PostgreSQL refuses NUL in a query parameter while SQLite looks it up, so without
 * this rule the same request was 400 on one engine and 404 (or a 200 list) on the other.
 *
 * - In a path parameter it is 404 `not_found`, as for any id or uid that does not exist: none can
 *   hold NUL, since no text field may (see json-body.ts). That includes PUT, which creates only
 *   under a path that can name a resource.
 * - In a query parameter the route declares it is 422 `validation` naming the parameter, as other
 *   impossible query values are. Parameters the route ignores are ignored with their NUL too.
 *
 * A preValidation hook: after authentication (a caller without a key learns nothing), before
 * schema validation and before an Idempotency-Key is reserved, so the refusal writes nothing.
 */
export function installNulInUrlCheck(app: FastifyInstance): void {
  // Callback style and a look at the raw URL first: this runs on every request, publishing
  // included, and a NUL can only arrive percent-encoded (the HTTP parser refuses a raw one).
  app.addHook('preValidation', (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
    if (!request.raw.url?.includes('%00')) return done();
    try {
      refuseNul(request);
    } catch (error) {
      return done(error as Error);
    }
    done();
  });
}

function refuseNul(request: FastifyRequest): void {
  const params = request.params as Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(params ?? {})) {
    if (typeof value === 'string' && value.includes('\u0000')) throw notFound(RESOURCE_OF_PARAM[name] ?? 'Resource');
  }
  const declared = (request.routeOptions.schema?.querystring as { properties?: Record<string, unknown> } | undefined)?.properties;
  if (!declared) return;
  const query = request.query as Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(query ?? {})) {
    if (!(name in declared)) continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => typeof v === 'string' && v.includes('\u0000'))) throw validationError(['query', name], 'Query parameters cannot contain the NUL character (U+0000)', 'value_error.nul_character');
  }
}
