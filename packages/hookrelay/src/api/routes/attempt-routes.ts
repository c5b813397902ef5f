import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HookrelayError, notFound } from '../../core/errors.js';
import type { Attempt, ListPage, Message } from '../../storage/models.js';
import type { AttemptListFilter } from '../../storage/storage.js';
import type { ApiDeps } from '../build-app.js';
import { ListResponseMessageAttemptOut, MessageAttemptOut, toMessageAttemptOut } from '../schemas/attempt.js';
import { Channel, EventTypesParam, HttpError, ListQuery, LOOKUP_ERRORS, Timestamp } from '../schemas/common.js';
import { EndpointPath } from '../schemas/endpoint.js';
import { MessagePath, Tag, toMessageOut } from '../schemas/message.js';
import { checkIterator, parseEventTypes, parseTimestamp } from '../validate-input.js';
import { requireApp, requireEndpoint, requireMessage } from './lookup.js';

const tags = ['Message Attempt'];

/** Svix's StatusCodeClass. */
const STATUS_CODE_CLASSES = [0, 100, 200, 300, 400, 500];

const AttemptQuery = Type.Object({
  ...ListQuery.properties,
  status: Type.Optional(Type.Integer({ minimum: 0, maximum: 4, description: 'Success (0), Pending (1), Failed (2), Sending (3)' })),
  status_code_class: Type.Optional(
    Type.Integer({ enum: STATUS_CODE_CLASSES, description: 'Only attempts whose response status is in this class: 0 no response (responseStatusCode 0), 100, 200, 300, 400 or 500 (e.g. 400: 400 to 499)' }),
  ),
  event_types: Type.Optional(EventTypesParam('Only attempts of messages of these event types')),
  channel: Type.Optional(Type.Unsafe<string>({ ...Channel, description: 'Only attempts of messages with this channel' })),
  tag: Type.Optional(Type.Unsafe<string>({ ...Tag, description: 'Only attempts of messages with this tag' })),
  before: Type.Optional(Timestamp),
  after: Type.Optional(Timestamp),
  with_msg: Type.Boolean({ default: false, description: 'When true, each attempt carries its message in `msg` (left out if the message was deleted)' }),
  with_content: Type.Boolean({ default: true, description: 'With with_msg: when false, each `msg` has payload {}. The attempt\'s `response` is always included' }),
});

interface AttemptQueryValues {
  status?: number | undefined;
  status_code_class?: number | undefined;
  event_types?: string | string[] | undefined;
  channel?: string | undefined;
  tag?: string | undefined;
  before?: string | undefined;
  after?: string | undefined;
}

function filterFrom(query: AttemptQueryValues): AttemptListFilter {
  const before = parseTimestamp(query.before, ['query', 'before']);
  const after = parseTimestamp(query.after, ['query', 'after']);
  const eventTypes = parseEventTypes(query.event_types);
  return {
    ...(query.status !== undefined ? { status: query.status } : {}),
    ...(query.status_code_class !== undefined ? { statusCodeClass: query.status_code_class } : {}),
    ...(eventTypes ? { eventTypes } : {}),
    ...(query.channel !== undefined ? { channel: query.channel } : {}),
    ...(query.tag !== undefined ? { tag: query.tag } : {}),
    ...(before !== undefined ? { before } : {}),
    ...(after !== undefined ? { after } : {}),
  };
}

/** A page of attempts as MessageAttemptOut, each with its message (`msg`) when `messages` is given. */
function attemptPageOut(page: ListPage<Attempt>, messages: ReadonlyMap<string, Message> | null, withContent: boolean) {
  return {
    ...page,
    data: page.data.map((attempt) => {
      const message = messages?.get(attempt.msgId);
      return toMessageAttemptOut(attempt, message ? toMessageOut(message, withContent) : undefined);
    }),
  };
}

export const attemptRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { storage } = deps;

  app.get(
    '/app/:app_id/attempt/endpoint/:endpoint_id',
    {
      schema: {
        operationId: 'v1.message-attempt.list-by-endpoint',
        tags,
        summary: "List an endpoint's delivery attempts, newest first",
        params: EndpointPath,
        querystring: AttemptQuery,
        response: { 200: ListResponseMessageAttemptOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const q = request.query;
      const filter = filterFrom(q);
      const application = await requireApp(storage, request.params.app_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      const page = await storage.attempts.listByEndpoint(application.id, endpoint.id, { limit: q.limit, iterator: checkIterator(q.iterator, 'atmpt') ?? null, ...(q.order ? { order: q.order } : {}) }, filter);
      const messages = q.with_msg ? new Map((await storage.messages.findMany(application.id, page.data.map((a) => a.msgId))).map((m) => [m.id, m])) : null;
      return attemptPageOut(page, messages, q.with_content);
    },
  );

  app.get(
    '/app/:app_id/attempt/msg/:msg_id',
    {
      schema: {
        operationId: 'v1.message-attempt.list-by-msg',
        tags,
        summary: "List a message's delivery attempts, newest first",
        params: MessagePath,
        querystring: Type.Object({ ...AttemptQuery.properties, endpoint_id: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Only attempts to this endpoint (id or uid)' })) }),
        response: { 200: ListResponseMessageAttemptOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const q = request.query;
      const filter = filterFrom(q);
      const application = await requireApp(storage, request.params.app_id);
      const message = await requireMessage(storage, application.id, request.params.msg_id);
      if (q.endpoint_id !== undefined) {
        // An unknown endpoint filters everything out rather than failing the whole list.
        const endpoint = await storage.endpoints.find(application.id, q.endpoint_id);
        filter.endpointId = endpoint ? endpoint.id : q.endpoint_id;
      }
      const page = await storage.attempts.listByMessage(application.id, message.id, { limit: q.limit, iterator: checkIterator(q.iterator, 'atmpt') ?? null, ...(q.order ? { order: q.order } : {}) }, filter);
      // Every attempt listed is of this message: no need to read it again.
      return attemptPageOut(page, q.with_msg ? new Map([[message.id, message]]) : null, q.with_content);
    },
  );

  app.get(
    '/app/:app_id/msg/:msg_id/attempt/:attempt_id',
    {
      schema: {
        operationId: 'v1.message-attempt.get',
        tags,
        summary: 'Get a delivery attempt',
        params: Type.Object({ ...MessagePath.properties, attempt_id: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { 200: MessageAttemptOut, ...LOOKUP_ERRORS },
      },
    },
    async (request) => {
      const application = await requireApp(storage, request.params.app_id);
      const message = await requireMessage(storage, application.id, request.params.msg_id);
      const attempt = await storage.attempts.find(application.id, message.id, request.params.attempt_id);
      if (!attempt) throw notFound('Message attempt');
      return toMessageAttemptOut(attempt);
    },
  );

  app.post(
    '/app/:app_id/msg/:msg_id/endpoint/:endpoint_id/resend',
    {
      schema: {
        operationId: 'v1.message-attempt.resend',
        tags,
        summary: 'Send a message to an endpoint again',
        description: 'Schedules a manual attempt now, whatever the state of earlier deliveries. A message whose content was expunged cannot be sent again: 400 missing_payload.',
        params: Type.Object({ ...MessagePath.properties, endpoint_id: EndpointPath.properties.endpoint_id }),
        response: { 202: Type.Object({}), 400: HttpError, ...LOOKUP_ERRORS },
      },
    },
    async (request, reply) => {
      const application = await requireApp(storage, request.params.app_id);
      const message = await requireMessage(storage, application.id, request.params.msg_id);
      const endpoint = await requireEndpoint(storage, application.id, request.params.endpoint_id);
      const outcome = await storage.deliveries.resend(application.id, message.id, endpoint.id, Date.now());
      // Deleted (retention, its application) since the lookup: as if it had never existed.
      if (outcome === 'gone') throw notFound('Message');
      // 400 missing_payload is what Svix answers here (not 409 or 410): Svix SDK users match on it.
      if (outcome === 'expunged') throw new HookrelayError('missing_payload', 'Unable to resend the message: its content was expunged');
      deps.wakeDispatcher();
      return reply.code(202).send({});
    },
  );
};
