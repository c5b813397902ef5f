import Fastify, { LogController, type FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { HookrelayConfig } from '../config/config.js';
import { HOOKRELAY_VERSION } from '../core/version.js';
import type { MessageAccepter } from '../ingest/message-ingestor.js';
import type { Storage } from '../storage/storage.js';
import type { ApiApp } from './api-app.js';
import { installAuthentication } from './plugins/authenticate.js';
import { installErrorHandling, sendApiError, toApiError } from './plugins/error-handler.js';
import { finiteNumbersAjvPlugin, installFiniteNumbers } from './plugins/finite-numbers.js';
import { answerClientError, installHttpEdge } from './plugins/http-edge.js';
import { installIdempotency } from './plugins/idempotency.js';
import { installJsonBodyParser } from './plugins/json-body.js';
import { installNulInUrlCheck } from './plugins/nul-in-url.js';
import { RouteTable } from './plugins/route-table.js';
import { applicationRoutes } from './routes/application-routes.js';
import { attemptRoutes } from './routes/attempt-routes.js';
import { endpointRoutes } from './routes/endpoint-routes.js';
import { eventTypeRoutes } from './routes/event-type-routes.js';
import { healthRoutes, type ProcessStatus } from './routes/health-routes.js';
import { messageRoutes } from './routes/message-routes.js';
import { metricsRoutes } from './routes/metrics-routes.js';
import { MAX_PATH_PARAM_LENGTH } from './schemas/common.js';

export interface ApiDeps {
  config: HookrelayConfig;
  storage: Storage;
  messages: MessageAccepter;
  wakeDispatcher: () => void;
  renderMetrics: () => Promise<{ contentType: string; body: string }>;
  logger: Logger | false;
  /** The role and the state of the parts this process runs, for /health/ready (default: role all, nothing to report). */
  processStatus?: () => ProcessStatus;
}

/** What the operations listener of a process without the API (role worker) needs. */
export type OperationsDeps = Pick<ApiDeps, 'config' | 'storage' | 'renderMetrics' | 'logger' | 'processStatus'>;

const routeTables = new WeakMap<FastifyInstance, RouteTable>();

/** Every method and route pattern the app registered (HEAD included), for tests and tooling. */
export function registeredRoutes(app: FastifyInstance): { method: string; url: string }[] {
  return routeTables.get(app)?.routes() ?? [];
}

/**
 * Builds the HTTP API (Svix API v1 compatible) without listening: the caller decides where, and
 * tests can listen on port 0. Hooks run in this order for each request: authenticate (onRequest),
 * schema validation, idempotency reservation (preHandler), the route, then idempotency recording
 * (onSend).
 */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = createBaseApp(deps);
  installIdempotency(app, { store: deps.storage.idempotency, ttlMs: config.idempotencyTtlMs });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Hookrelay', version: HOOKRELAY_VERSION, description: 'Webhook sending service; API v1 is compatible with Svix, so the Svix SDKs work against it.' },
      components: { securitySchemes: { HTTPBearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ HTTPBearer: [] }],
    },
  });

  await app.register(healthRoutes, { deps });
  await app.register(metricsRoutes, { deps });
  await app.register(
    async (v1: ApiApp) => {
      await v1.register(applicationRoutes, { deps });
      await v1.register(endpointRoutes, { deps });
      await v1.register(eventTypeRoutes, { deps });
      await v1.register(messageRoutes, { deps });
      await v1.register(attemptRoutes, { deps });
      v1.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    },
    { prefix: '/api/v1' },
  );
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  return app as unknown as FastifyInstance;
}

/**
 * The listener of a process without the API (role worker): /health, /health/ready and /metrics
 * (with a key, as on the API), nothing else. Orchestrators probe it, Prometheus scrapes the
 * dispatcher's attempts and latencies from it.
 */
export async function buildOperationsApp(deps: OperationsDeps): Promise<FastifyInstance> {
  const app = createBaseApp(deps);
  await app.register(healthRoutes, { deps });
  await app.register(metricsRoutes, { deps });
  return app as unknown as FastifyInstance;
}

/** Fastify with what every listener shares: JSON bodies and errors in Svix's shape, debug request logs, authentication. */
function createBaseApp(deps: OperationsDeps): ApiApp {
  const { config } = deps;
  const base = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    // Two info lines per request would be most of the log at thousands of messages a second;
    // requests are logged at debug level instead (below), errors by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Svix answers with and without a trailing slash; uids (256 characters) travel in the path.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PATH_PARAM_LENGTH },
    bodyLimit: config.maxPayloadBytes,
    // allowUnionTypes: list filters take one value or a repeated parameter (type [string, array]).
    // The plugin refuses the ±Infinity that coercion makes of "Infinity" or "1e309" (see finite-numbers.ts).
    ajv: { customOptions: { removeAdditional: true, coerceTypes: true, useDefaults: true, allowUnionTypes: true }, plugins: [finiteNumbersAjvPlugin] },
    // Malformed URLs never reach the router, the error handler or the hooks: answer them here.
    frameworkErrors: (error, _request, reply) => {
      void sendApiError(reply, toApiError(error));
    },
    // ... and requests that the HTTP parser refuses never reach Fastify at all (see http-edge.ts).
    clientErrorHandler: answerClientError,
    // Node would answer a missing Host header itself, with an empty body: http-edge.ts does it in our shape.
    http: { requireHostHeader: false },
  });
  installHttpEdge(base as unknown as FastifyInstance);
  const app = base.withTypeProvider<TypeBoxTypeProvider>() as unknown as ApiApp;
  const routes = new RouteTable();
  routes.attach(app);
  routeTables.set(app, routes);
  installFiniteNumbers(app as unknown as FastifyInstance);

  // JSON only: without this a text/plain body would be parsed as a string and fail as a 422.
  app.removeContentTypeParser(['text/plain']);
  installJsonBodyParser(app);
  installNulInUrlCheck(app);
  installErrorHandling(app, routes);
  if (deps.logger && deps.logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request');
    });
  }
  installAuthentication(app, { apiKey: config.apiKey, apiKeys: deps.storage.apiKeys });
  return app;
}
