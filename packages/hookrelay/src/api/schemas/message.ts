import { Type, type Static } from 'typebox';
import type { Message } from '../../storage/models.js';
import { ApplicationIn } from './application.js';
import { Channel, EventTypeName, iso, ListResponse, Nullable, Timestamp, Uid } from './common.js';

const Payload = Type.Unsafe<Record<string, unknown>>({ type: 'object', description: 'The webhook body: a JSON object', examples: [{ email: 'test@example.com', username: 'test_user' }] });
export const Tag = Type.String({ minLength: 1, maxLength: 128, pattern: '^[a-zA-Z0-9\\-_./\\\\#]+$' });

export const MessageIn = Type.Object(
  {
    eventType: EventTypeName,
    payload: Payload,
    eventId: Type.Optional(Nullable(Uid, { description: 'Optional unique id of the event; a second message with it is refused (409)' })),
    channels: Type.Optional(Nullable(Type.Array(Channel, { minItems: 1, maxItems: 10 }))),
    tags: Type.Optional(Nullable(Type.Array(Tag, { minItems: 1, maxItems: 5 }))),
    application: Type.Optional(Nullable(ApplicationIn, { description: 'Creates the application (uid from the path) when it does not exist yet' })),
    deliverAt: Type.Optional(Nullable(Type.String({ format: 'date-time' }), { description: 'Not supported yet: must be absent or null' })),
    // Svix's hidden field, which the SDK's messageInRaw() fills: declared so it is refused (422)
    // rather than dropped as an unknown property, which would send `payload: {}` instead.
    transformationsParams: Type.Optional(
      Type.Unsafe<unknown>({ description: 'Not supported: must be absent or null. Raw payloads (rawPayload, the SDK\'s messageInRaw) are refused with 422' }),
    ),
  },
  { title: 'MessageIn' },
);
export type MessageIn = Static<typeof MessageIn>;

export const MessageOut = Type.Object(
  {
    id: Type.String({ examples: ['msg_1srOrx2ZWZBpBUvZwXKQmoEYga2'] }),
    eventType: Type.String(),
    eventId: Nullable(Type.String()),
    payload: Type.Unknown(),
    channels: Type.Optional(Nullable(Type.Array(Type.String()))),
    tags: Type.Optional(Nullable(Type.Array(Type.String()))),
    timestamp: Timestamp,
  },
  { title: 'MessageOut' },
);
export type MessageOut = Static<typeof MessageOut>;

export const ListResponseMessageOut = ListResponse(MessageOut, 'ListResponseMessageOut');

export const MessagePath = Type.Object({
  app_id: Type.String({ minLength: 1, maxLength: 256, description: 'The application id or uid' }),
  msg_id: Type.String({ minLength: 1, maxLength: 256, description: 'The message id or eventId' }),
});

/** `withContent` false sends `{}` as the payload, as Svix does for `with_content=false`. */
export function toMessageOut(message: Message, withContent = true): MessageOut {
  return { ...toMessageOutEnvelope(message), payload: withContent ? (JSON.parse(message.payload) as unknown) : {} };
}

/**
 * MessageOut as JSON text, with the stored payload spliced in as is: the payload was serialized
 * once on the way in, and parsing it back only to serialize it again would double the cost of
 * the hottest route for large payloads. Same content as JSON.stringify(toMessageOut(...)).
 */
export function messageOutJson(message: Message, withContent = true): string {
  const out = toMessageOutEnvelope(message);
  return `{"id":${JSON.stringify(out.id)},"eventType":${JSON.stringify(out.eventType)},"eventId":${JSON.stringify(out.eventId)},"payload":${withContent ? message.payload : '{}'},"channels":${JSON.stringify(out.channels)},"tags":${JSON.stringify(out.tags)},"timestamp":${JSON.stringify(out.timestamp)}}`;
}

function toMessageOutEnvelope(message: Message): Omit<MessageOut, 'payload'> {
  return { id: message.id, eventType: message.eventType, eventId: message.eventId, channels: message.channels, tags: message.tags, timestamp: iso(message.createdAt) };
}
