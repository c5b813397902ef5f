import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HookrelayError, notFound, validationError } from '../../core/errors.js';
import type { Application, Message } from '../../storage/models.js';
import type { ApiDeps } from '../build-app.js';
import { idempotentResponseFor, markStoredByRoute } from '../plugins/idempotency.js';
import { AppPath, Channel, EventTypesParam, HttpError, ListQuery, LOOKUP_ERRORS, NoContent, Timestamp } from '../schemas/common.js';
import { ListResponseMessageOut, MessageIn, MessageOut, MessagePath, messageOutJson, Tag, toMessageOut } from '../schemas/message.js';
import { checkIterator, checkUid, parseEventTypes, parseTimestamp, unique } from '../validate-input.js';
import { requireApp, requireMessage } from './lookup.js';

const tags = ['Message'];
const KNOWN_APP_ID_TTL_MS = 5_000;
const KNOWN_APP_IDS_MAX = 10_000;

const WithContent = Type.Boolean({ default: true, description: 'When false, the payload is returned as {}' });

export const messageRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { storage } = deps;

  /** The application of the path, or (Svix's `application` field) one created for it on the spot. */
  /**
   * Application ids recently seen to exist, so that publishing does not read the application row
   * every time. Safe to be stale: if the application was deleted meanwhile, the message's foreign
   * key fails and the request gets 404 all the same. Uids are not cached: one may move to another
   * application.
   */
  const knownAppIds = new Map<string, number>();
  const appIdForMessage = async (appIdOrUid: string, body: MessageIn): Promise<string> => {
    const now = Date.now();
    if ((knownAppIds.get(appIdOrUid) ?? 0) > now) return appIdOrUid;
    const application = await appForMessage(appIdOrUid, body);
    if (application.id === appIdOrUid) {
      if (knownAppIds.size >= KNOWN_APP_IDS_MAX) knownAppIds.clear();
      knownAppIds.set(appIdOrUid, now + KNOWN_APP_ID_TTL_MS);
    }
    return application.id;
  };

  const appForMessage = async (appIdOrUid: string, body: MessageIn): Promise<Application> => {
    const existing = await storage.applications.find(appIdOrUid);
    if (existing) return existing;
    const create = body.application;
    if (!create) throw notFound('Application');
    if (create.uid !== appIdOrUid) throw validationError(['body', 'application', 'uid'], 'To create the application with the message, its uid must be set and equal the app_id of the path');
    checkUid(create.uid, 'app', ['body', 'application', 'uid']);
    try {
      return await storage.applications.create({ name: create.name, uid: create.uid, rateLimit: create.throttleRate ?? create.rateLimit ?? null, metadata: create.metadata ?? {} });
    } catch (error) {
      const winner = error instanceof HookrelayError && error.code === 'conflict' ? await storage.applications.find(appIdOrUid) : null;
      if (winner) return winner;
      throw error;
    }
  };

  app.post(
    '/app/:app_id/msg',
    {
      schema: {
        operationId: 'v1.message.create',
        tags,
        summary: 'Send a message to the endpoints of an application',
        description: 'Answers 202 once the message and its deliveries are committed. A second message with the same eventId is refused with 409.',
        params: AppPath,
        querystring: Type.Object({ with_content: WithContent }),
        body: MessageIn,
        response: { 202: MessageOut, 409: HttpError, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.deliverAt !== undefined && body.deliverAt !== null) throw validationError(['body', 'deliverAt'], 'Scheduled delivery (deliverAt) is not supported yet');
      // Dropping it would deliver the empty `payload` the SDK sends beside a raw one: refuse instead.
      if (body.transformationsParams !== undefined && body.transformationsParams !== null) {
        throw validationError(['body', 'transformationsParams'], "Raw payloads (transformationsParams.rawPayload, the SDK's messageInRaw) and transformations are not supported: send the payload as JSON in `payload`");
      }
      checkUid(body.eventId, 'msg', ['body', 'eventId']);
      const withContent = request.query.with_content;
      const appId = await appIdForMessage(request.params.app_id, body);

      // The stored idempotent response and the reply are rendered by the same function, so a replay is byte-identical.
      const render = (message: Message) => ({ statusCode: 202, body: messageOutJson(message, withContent) });
      const idempotency = idempotentResponseFor(request, render);
      const message = await deps.messages.accept(
        appId,
        { eventType: body.eventType, payload: JSON.stringify(body.payload), eventId: body.eventId ?? null, channels: unique(body.channels), tags: unique(body.tags) },
        idempotency,
      );
      if (idempotency) markStoredByRoute(request);
      // No wake-up here: the ingestor hands the deliveries over or wakes the dispatcher itself.
      // Already serialized (it must match the stored replay byte for byte): Fastify sends a JSON string as is.
      return reply.code(202).type('application/json; charset=utf-8').send(render(message).body as unknown as MessageOut);
    },
  );

  app.get(
    '/app/:app_id/msg',
    {
      schema: {
        operationId: 'v1.message.list',
        tags,
        summary: "List an application's messages, newest first",
        params: AppPath,
        querystring: Type.Object({
          ...ListQuery.properties,
          event_types: Type.Optional(EventTypesParam('Only messages of these event types')),
          channel: Type.Optional(Channel),
          tag: Type.Optional(Type.Unsafe<string>({ ...Tag, description: 'Only messages with this tag' })),
          before: Type.Optional(Timestamp),
          after: Type.Optional(Timestamp),
          with_content: WithContent,
        }),
        response: { 200: ListResponseMessageOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const q = request.query;
      const eventTypes = parseEventTypes(q.event_types);
      const before = parseTimestamp(q.before, ['query', 'before']);
      const after = parseTimestamp(q.after, ['query', 'after']);
      const application = await requireApp(storage, request.params.app_id);
      const page = await storage.messages.list(
        application.id,
        { limit: q.limit, iterator: checkIterator(q.iterator, 'msg') ?? null, ...(q.order ? { order: q.order } : {}) },
        {
          ...(eventTypes ? { eventTypes } : {}),
          ...(q.channel !== undefined ? { channel: q.channel } : {}),
          ...(q.tag !== undefined ? { tag: q.tag } : {}),
          ...(before !== undefined ? { before } : {}),
          ...(after !== undefined ? { after } : {}),
        },
      );
      return { ...page, data: page.data.map((m) => toMessageOut(m, q.with_content)) };
    },
  );

  app.get(
    '/app/:app_id/msg/:msg_id',
    {
      schema: {
        operationId: 'v1.message.get',
        tags,
        summary: 'Get a message by id or eventId',
        params: MessagePath,
        querystring: Type.Object({ with_content: WithContent }),
        response: { 200: MessageOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      return toMessageOut(await requireMessage(storage, application.id, request.params.msg_id), request.query.with_content);
    },
  );

  app.delete(
    '/app/:app_id/msg/:msg_id/content',
    {
      schema: {
        operationId: 'v1.message.expunge-content',
        tags,
        summary: "Delete a message's payload",
        description:
          'The message is kept and reads with payload {}. Deliveries not yet sent are not sent any more: each is recorded as a failed attempt (HOOKRELAY_GONE) when it falls due. A request already on its way may still carry the payload.',
        params: MessagePath,
        response: { 204: NoContent, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      const application = await requireApp(storage, request.params.app_id);
      const message = await requireMessage(storage, application.id, request.params.msg_id);
      // Deleted by retention (or with its application) between the lookup and the update: 404 as well.
      if (!(await storage.messages.expungeContent(application.id, message.id, Date.now()))) throw notFound('Message');
      return reply.code(204).send();
    },
  );
};
