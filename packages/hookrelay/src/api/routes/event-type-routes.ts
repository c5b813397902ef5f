import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HookrelayError, notFound } from '../../core/errors.js';
import type { EventTypeFields } from '../../storage/storage.js';
import type { ApiDeps } from '../build-app.js';
import { COMMON_ERRORS, HttpError, LOOKUP_ERRORS, ListQuery, NoContent } from '../schemas/common.js';
import { EventTypeIn, EventTypeOut, EventTypePatch, EventTypePath, EventTypeUpdate, ListResponseEventTypeOut, toEventTypeOut } from '../schemas/event-type.js';

const tags = ['Event Type'];

function fieldsFrom(body: EventTypeUpdate): EventTypeFields {
  return {
    description: body.description,
    archived: body.archived ?? false,
    deprecated: body.deprecated ?? false,
    schemas: body.schemas ?? null,
    featureFlag: body.featureFlag ?? null,
    groupName: body.groupName ?? null,
  };
}

export const eventTypeRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { storage } = deps;

  app.get(
    '/event-type',
    {
      schema: {
        operationId: 'v1.event-type.list',
        tags,
        summary: 'List event types',
        querystring: Type.Object({
          ...ListQuery.properties,
          include_archived: Type.Boolean({ default: false, description: 'Include archived event types' }),
          with_content: Type.Boolean({ default: false, description: 'Include the schemas' }),
        }),
        response: { 200: ListResponseEventTypeOut, ...COMMON_ERRORS },
      },
    },
    async (request) => {
      const { limit, iterator, order, include_archived, with_content } = request.query;
      const page = await storage.eventTypes.list({ limit, iterator: iterator ?? null, includeArchived: include_archived, ...(order ? { order } : {}) });
      return { ...page, data: page.data.map((e) => toEventTypeOut(e, with_content)) };
    },
  );

  app.post(
    '/event-type',
    {
      schema: {
        operationId: 'v1.event-type.create',
        tags,
        summary: 'Create an event type',
        description: 'Creating an archived event type again unarchives it with the new fields.',
        body: EventTypeIn,
        response: { 201: EventTypeOut, 409: HttpError, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const { name, ...rest } = request.body;
      const fields = fieldsFrom(rest);
      const existing = await storage.eventTypes.find(name);
      if (existing && !existing.archived) throw new HookrelayError('conflict', 'An event type with this name already exists');
      const eventType = existing ? await storage.eventTypes.update(name, fields) : await storage.eventTypes.create(name, fields);
      return reply.code(201).send(toEventTypeOut(eventType));
    },
  );

  app.get(
    '/event-type/:event_type_name',
    { schema: { operationId: 'v1.event-type.get', tags, summary: 'Get an event type', params: EventTypePath, response: { 200: EventTypeOut, ...LOOKUP_ERRORS } } },
    async (request) => {
      const eventType = await storage.eventTypes.find(request.params.event_type_name);
      if (!eventType) throw notFound('Event type');
      return toEventTypeOut(eventType);
    },
  );

  app.put(
    '/event-type/:event_type_name',
    {
      schema: {
        operationId: 'v1.event-type.update',
        tags,
        summary: 'Create or update an event type',
        params: EventTypePath,
        body: EventTypeUpdate,
        response: { 200: EventTypeOut, 201: EventTypeOut, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const { eventType, created } = await storage.eventTypes.upsert(request.params.event_type_name, fieldsFrom(request.body));
      return reply.code(created ? 201 : 200).send(toEventTypeOut(eventType));
    },
  );

  app.patch(
    '/event-type/:event_type_name',
    { schema: { operationId: 'v1.event-type.patch', tags, summary: 'Partially update an event type', params: EventTypePath, body: EventTypePatch, response: { 200: EventTypeOut, ...LOOKUP_ERRORS } } },
    async (request) => {
      const body = request.body;
      const current = await storage.eventTypes.find(request.params.event_type_name);
      if (!current) throw notFound('Event type');
      const fields: EventTypeFields = {
        description: body.description ?? current.description,
        archived: body.archived ?? current.archived,
        deprecated: body.deprecated ?? current.deprecated,
        schemas: body.schemas === undefined ? current.schemas : body.schemas,
        featureFlag: body.featureFlag === undefined ? current.featureFlag : body.featureFlag,
        groupName: body.groupName === undefined ? current.groupName : body.groupName,
      };
      return toEventTypeOut(await storage.eventTypes.update(current.name, fields));
    },
  );

  app.delete(
    '/event-type/:event_type_name',
    {
      schema: {
        operationId: 'v1.event-type.delete',
        tags,
        summary: 'Archive an event type',
        description:
          'Archives the event type: it leaves the default list, and creating it again unarchives it. `expunge=true` is accepted but also archives, since messages and endpoint filters may still name the type.',
        params: EventTypePath,
        querystring: Type.Object({ expunge: Type.Boolean({ default: false }) }),
        response: { 204: NoContent, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      if (!(await storage.eventTypes.archive(request.params.event_type_name))) throw notFound('Event type');
      return reply.code(204).send();
    },
  );
};
