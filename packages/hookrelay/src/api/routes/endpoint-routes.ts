import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { notFound } from '../../core/errors.js';
import { generateEndpointSecret } from '../../signing/endpoint-secret.js';
import type { EndpointFields } from '../../storage/storage.js';
import type { ApiDeps } from '../build-app.js';
import { AppPath, HttpError, LOOKUP_ERRORS, ListQuery, NoContent } from '../schemas/common.js';
import {
  EndpointHealthOut,
  EndpointHeadersIn,
  EndpointHeadersOut,
  EndpointHeadersPatchIn,
  EndpointIn,
  EndpointOut,
  EndpointPatch,
  EndpointPath,
  EndpointSecretOut,
  EndpointSecretRotateIn,
  EndpointStats,
  EndpointStatsQuery,
  EndpointUpdate,
  ListResponseEndpointOut,
  toEndpointHealthOut,
  toEndpointHeadersOut,
  toEndpointOut,
} from '../schemas/endpoint.js';
import {
  checkEndpointUrl,
  checkHeaderName,
  checkHeaders,
  checkIterator,
  checkUid,
  endpointFilterTypes,
  mergeHeaders,
  normalizeHeaders,
  normalizeSecret,
  parseTimestamp,
  unique,
} from '../validate-input.js';
import { requireApp, requireEndpoint } from './lookup.js';

const tags = ['Endpoint'];

export const endpointRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { storage, config } = deps;

  /** The full field set from a POST or PUT body; absent optional fields take their defaults. */
  const fieldsFrom = (body: EndpointUpdate): EndpointFields => {
    checkUid(body.uid, 'ep', ['body', 'uid']);
    return {
      url: checkEndpointUrl(body.url, config.requireHttps),
      uid: body.uid ?? null,
      description: body.description ?? '',
      disabled: body.disabled ?? false,
      filterTypes: endpointFilterTypes(body) ?? null,
      channels: unique(body.channels),
      rateLimit: body.throttleRate ?? body.rateLimit ?? null,
      metadata: body.metadata ?? {},
      version: body.version ?? 1,
    };
  };

  app.get(
    '/app/:app_id/endpoint',
    { schema: { operationId: 'v1.endpoint.list', tags, summary: "List an application's endpoints", params: AppPath, querystring: ListQuery, response: { 200: ListResponseEndpointOut, ...LOOKUP_ERRORS } } },
    async (request) => {
      const { limit, iterator, order } = request.query;
      const application = await requireApp(storage, request.params.app_id);
      const page = await storage.endpoints.list(application.id, { limit, iterator: checkIterator(iterator, 'ep') ?? null, ...(order ? { order } : {}) });
      return { ...page, data: page.data.map(toEndpointOut) };
    },
  );

  app.post(
    '/app/:app_id/endpoint',
    { schema: { operationId: 'v1.endpoint.create', tags, summary: 'Create an endpoint', params: AppPath, body: EndpointIn, response: { 201: EndpointOut, 409: HttpError, ...LOOKUP_ERRORS } } },
    async (request, reply) => {
      const body = request.body;
      const fields = fieldsFrom(body);
      let headers: Record<string, string> = {};
      if (body.headers) {
        checkHeaders(body.headers, ['body', 'headers']);
        headers = normalizeHeaders(body.headers);
      }
      const secret = body.secret ? normalizeSecret(body.secret, ['body', 'secret']) : generateEndpointSecret();
      const application = await requireApp(storage, request.params.app_id);
      return reply.code(201).send(toEndpointOut(await storage.endpoints.create(application.id, fields, headers, secret)));
    },
  );

  app.get(
    '/app/:app_id/endpoint/:endpoint_id',
    { schema: { operationId: 'v1.endpoint.get', tags, summary: 'Get an endpoint', params: EndpointPath, response: { 200: EndpointOut, ...LOOKUP_ERRORS } } },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      return toEndpointOut(await requireEndpoint(storage, application.id, request.params.endpoint_id));
    },
  );

  app.put(
    '/app/:app_id/endpoint/:endpoint_id',
    {
      schema: {
        operationId: 'v1.endpoint.update',
        tags,
        summary: 'Create or update an endpoint',
        description: 'Replaces the endpoint (its headers and secret are kept); as in Svix, creates it (201) when absent.',
        params: EndpointPath,
        body: EndpointUpdate,
        response: { 200: EndpointOut, 201: EndpointOut, 409: HttpError, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      const fields = fieldsFrom(request.body);
      const application = await requireApp(storage, request.params.app_id);
      const existing = await storage.endpoints.find(application.id, request.params.endpoint_id);
      if (!existing) return reply.code(201).send(toEndpointOut(await storage.endpoints.create(application.id, fields, {}, generateEndpointSecret())));
      return reply.code(200).send(toEndpointOut(await storage.endpoints.update(application.id, existing.id, fields)));
    },
  );

  app.patch(
    '/app/:app_id/endpoint/:endpoint_id',
    { schema: { operationId: 'v1.endpoint.patch', tags, summary: 'Partially update an endpoint', params: EndpointPath, body: EndpointPatch, response: { 200: EndpointOut, 409: HttpError, ...LOOKUP_ERRORS } } },
    async (request) => {
      const body = request.body;
      checkUid(body.uid, 'ep', ['body', 'uid']);
      if (body.url !== undefined) checkEndpointUrl(body.url, config.requireHttps);
      const secret = body.secret ? normalizeSecret(body.secret, ['body', 'secret']) : null;
      const filterTypes = endpointFilterTypes(body);
      const application = await requireApp(storage, request.params.app_id);
      const current = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      const fields: EndpointFields = {
        url: body.url ?? current.url,
        uid: body.uid === undefined ? current.uid : body.uid,
        description: body.description ?? current.description,
        disabled: body.disabled ?? current.disabled,
        filterTypes: filterTypes === undefined ? current.filterTypes : filterTypes,
        channels: body.channels === undefined ? current.channels : unique(body.channels),
        rateLimit: body.throttleRate !== undefined ? body.throttleRate : body.rateLimit !== undefined ? body.rateLimit : current.rateLimit,
        metadata: body.metadata ?? current.metadata,
        version: body.version ?? current.version,
      };
      const updated = await storage.endpoints.update(application.id, current.id, fields);
      // Svix's deprecated `secret` here replaces the key outright, with no grace period.
      if (secret !== null) await storage.endpoints.rotateSecret(current.id, secret, 0);
      return toEndpointOut(updated);
    },
  );

  app.delete(
    '/app/:app_id/endpoint/:endpoint_id',
    { schema: { operationId: 'v1.endpoint.delete', tags, summary: 'Delete an endpoint', params: EndpointPath, response: { 204: NoContent, ...LOOKUP_ERRORS } } },
    async (request, reply) => {
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      await storage.endpoints.delete(application.id, endpoint.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/app/:app_id/endpoint/:endpoint_id/headers',
    {
      schema: {
        operationId: 'v1.endpoint.get-headers',
        tags,
        summary: 'Get the extra headers sent with each webhook',
        description: 'Values of sensitive headers (Authorization, X-API-Key, ...) are not shown: their names are listed in `sensitive`.',
        params: EndpointPath,
        response: { 200: EndpointHeadersOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      return toEndpointHeadersOut((await requireEndpoint(storage, application.id, request.params.endpoint_id)).headers);
    },
  );

  app.put(
    '/app/:app_id/endpoint/:endpoint_id/headers',
    { schema: { operationId: 'v1.endpoint.update-headers', tags, summary: 'Replace the extra headers', params: EndpointPath, body: EndpointHeadersIn, response: { 204: NoContent, ...LOOKUP_ERRORS } } },
    async (request, reply) => {
      checkHeaders(request.body.headers, ['body', 'headers']);
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      await storage.endpoints.setHeaders(application.id, endpoint.id, normalizeHeaders(request.body.headers));
      return reply.code(204).send();
    },
  );

  app.patch(
    '/app/:app_id/endpoint/:endpoint_id/headers',
    {
      schema: {
        operationId: 'v1.endpoint.patch-headers',
        tags,
        summary: 'Set some headers and remove others',
        params: EndpointPath,
        body: EndpointHeadersPatchIn,
        response: { 204: NoContent, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      const { headers, deleteHeaders = [] } = request.body;
      checkHeaders(headers, ['body', 'headers']);
      deleteHeaders.forEach((name, i) => checkHeaderName(name, ['body', 'deleteHeaders', String(i)]));
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      await storage.endpoints.setHeaders(application.id, endpoint.id, mergeHeaders(endpoint.headers, headers, deleteHeaders));
      return reply.code(204).send();
    },
  );

  app.get(
    '/app/:app_id/endpoint/:endpoint_id/health',
    {
      schema: {
        operationId: 'v1.endpoint.get-health',
        tags,
        summary: "Get the endpoint's failure tracking",
        description: 'Hookrelay extension: the current failing streak, shared by every worker. An endpoint whose attempts all fail for HOOKRELAY_ENDPOINT_DISABLE_AFTER is disabled.',
        params: EndpointPath,
        response: { 200: EndpointHealthOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      const health = await storage.endpoints.health(application.id, request.params.endpoint_id);
      if (!health) throw notFound('Endpoint');
      return toEndpointHealthOut(health);
    },
  );

  app.get(
    '/app/:app_id/endpoint/:endpoint_id/stats',
    {
      schema: {
        operationId: 'v1.endpoint.get-stats',
        tags,
        summary: "Count the endpoint's deliveries by state",
        description: [
          "Counts the endpoint's deliveries (one per message sent to it) by their state now:",
          '`success`: delivered; `fail`: failed after its last attempt; `sending`: held by a dispatcher',
          'right now (its lease has not run out); `pending`: waiting for its first attempt or a retry,',
          'and not held (a delivery whose dispatcher lease ran out is pending again).',
          '`since` and `until` (both optional and inclusive) bound the time each delivery was created:',
          'the creation time of its message, or for a manual resend to an endpoint the message had not',
          'gone to, the time of that resend. Without them every delivery still kept counts (see',
          'HOOKRELAY_RETENTION); unlike Svix, there is no default 28-day window. `canceled` is always 0:',
          'Hookrelay does not cancel deliveries.',
        ].join(' '),
        params: EndpointPath,
        querystring: EndpointStatsQuery,
        response: { 200: EndpointStats, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const since = parseTimestamp(request.query.since, ['query', 'since']) ?? null;
      const until = parseTimestamp(request.query.until, ['query', 'until']) ?? null;
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      return { ...(await storage.deliveries.countByEndpoint(endpoint.id, Date.now(), { since, until })), canceled: 0 };
    },
  );

  app.get(
    '/app/:app_id/endpoint/:endpoint_id/secret',
    { schema: { operationId: 'v1.endpoint.get-secret', tags, summary: "Get the endpoint's current signing secret", params: EndpointPath, response: { 200: EndpointSecretOut, ...LOOKUP_ERRORS } } },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      const [current] = await storage.endpoints.secrets(endpoint.id, Date.now());
      if (!current) throw notFound('Endpoint secret');
      return { key: current.key };
    },
  );

  app.post(
    '/app/:app_id/endpoint/:endpoint_id/secret/rotate',
    {
      schema: {
        operationId: 'v1.endpoint.rotate-secret',
        tags,
        summary: "Rotate the endpoint's signing secret",
        description: 'The previous key keeps signing (messages carry both signatures) for the grace period: gracePeriodSeconds, or the server default.',
        params: EndpointPath,
        body: EndpointSecretRotateIn,
        response: { 204: NoContent, ...LOOKUP_ERRORS },
      },
      // The body is optional (the SDK sends {}, curl users often nothing).
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request, reply) => {
      const { key, gracePeriodSeconds } = request.body;
      const secret = key ? normalizeSecret(key, ['body', 'key']) : generateEndpointSecret();
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      const graceMs = gracePeriodSeconds === undefined || gracePeriodSeconds === null ? config.secretRotationGraceMs : gracePeriodSeconds * 1000;
      await storage.endpoints.rotateSecret(endpoint.id, secret, graceMs);
      return reply.code(204).send();
    },
  );
};

