import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HookrelayError } from '../../core/errors.js';
import type { ApplicationFields } from '../../storage/storage.js';
import type { ApiDeps } from '../build-app.js';
import { ApplicationIn, ApplicationOut, ApplicationPatch, ListResponseApplicationOut, toApplicationOut } from '../schemas/application.js';
import { AppPath, COMMON_ERRORS, HttpError, LOOKUP_ERRORS, ListQuery, NoContent } from '../schemas/common.js';
import { checkIterator, checkUid } from '../validate-input.js';
import { requireApp } from './lookup.js';

const tags = ['Application'];

function fieldsFromIn(body: ApplicationIn): ApplicationFields {
  checkUid(body.uid, 'app', ['body', 'uid']);
  // throttleRate is Svix's current name for rateLimit; the newer one wins when both are sent.
  return { name: body.name, uid: body.uid ?? null, rateLimit: body.throttleRate ?? body.rateLimit ?? null, metadata: body.metadata ?? {} };
}

export const applicationRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { storage } = deps;

  app.get(
    '/app',
    { schema: { operationId: 'v1.application.list', tags, summary: 'List applications', querystring: ListQuery, response: { 200: ListResponseApplicationOut, ...COMMON_ERRORS } } },
    async (request) => {
      const { limit, iterator, order } = request.query;
      const page = await storage.applications.list({ limit, iterator: checkIterator(iterator, 'app') ?? null, ...(order ? { order } : {}) });
      return { ...page, data: page.data.map(toApplicationOut) };
    },
  );

  app.post(
    '/app',
    {
      schema: {
        operationId: 'v1.application.create',
        tags,
        summary: 'Create an application',
        description: 'With `get_if_exists=true`, an application with the same uid is returned (200) instead of a 409.',
        querystring: Type.Object({ get_if_exists: Type.Boolean({ default: false }) }),
        body: ApplicationIn,
        response: { 200: ApplicationOut, 201: ApplicationOut, 409: HttpError, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const fields = fieldsFromIn(request.body);
      const getIfExists = request.query.get_if_exists;
      if (fields.uid !== null) {
        const existing = await storage.applications.find(fields.uid);
        if (existing) {
          if (!getIfExists) throw new HookrelayError('conflict', 'An application with this uid already exists');
          return reply.code(200).send(toApplicationOut(existing));
        }
      }
      try {
        return reply.code(201).send(toApplicationOut(await storage.applications.create(fields)));
      } catch (error) {
        // A concurrent create with the same uid won the race: get-or-create still gets it.
        const winner = getIfExists && fields.uid !== null && error instanceof HookrelayError && error.code === 'conflict' ? await storage.applications.find(fields.uid) : null;
        if (winner) return reply.code(200).send(toApplicationOut(winner));
        throw error;
      }
    },
  );

  app.get(
    '/app/:app_id',
    { schema: { operationId: 'v1.application.get', tags, summary: 'Get an application', params: AppPath, response: { 200: ApplicationOut, ...LOOKUP_ERRORS } } },
    async (request) => toApplicationOut(await requireApp(storage, request.params.app_id)),
  );

  app.put(
    '/app/:app_id',
    {
      schema: {
        operationId: 'v1.application.update',
        tags,
        summary: 'Create or update an application',
        description: 'Replaces the application; as in Svix, creates it (201) when no application has this id or uid.',
        params: AppPath,
        body: ApplicationIn,
        response: { 200: ApplicationOut, 201: ApplicationOut, 409: HttpError, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const fields = fieldsFromIn(request.body);
      const existing = await storage.applications.find(request.params.app_id);
      if (!existing) return reply.code(201).send(toApplicationOut(await storage.applications.create(fields)));
      return reply.code(200).send(toApplicationOut(await storage.applications.update(existing.id, fields)));
    },
  );

  app.patch(
    '/app/:app_id',
    {
      schema: { operationId: 'v1.application.patch', tags, summary: 'Partially update an application', params: AppPath, body: ApplicationPatch, response: { 200: ApplicationOut, 409: HttpError, ...LOOKUP_ERRORS } },
    },
    async (request) => {
      const body = request.body;
      checkUid(body.uid, 'app', ['body', 'uid']);
      const current = await requireApp(storage, request.params.app_id);
      const fields: ApplicationFields = {
        name: body.name ?? current.name,
        uid: body.uid === undefined ? current.uid : body.uid,
        rateLimit: body.throttleRate !== undefined ? body.throttleRate : body.rateLimit !== undefined ? body.rateLimit : current.rateLimit,
        metadata: body.metadata ?? current.metadata,
      };
      return toApplicationOut(await storage.applications.update(current.id, fields));
    },
  );

  app.delete(
    '/app/:app_id',
    { schema: { operationId: 'v1.application.delete', tags, summary: 'Delete an application with everything in it', params: AppPath, response: { 204: NoContent, ...LOOKUP_ERRORS } } },
    async (request, reply) => {
      const current = await requireApp(storage, request.params.app_id);
      await storage.applications.delete(current.id);
      return reply.code(204).send();
    },
  );
};
