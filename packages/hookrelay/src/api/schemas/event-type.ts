import { Type, type Static } from 'typebox';
import type { EventType } from '../../storage/models.js';
import { EventTypeName, iso, LIMITED_PATTERN, ListResponse, Nullable, Timestamp } from './common.js';

const Description = Type.String({ maxLength: 4096, examples: ['A user has signed up'] });
const Schemas = Type.Unknown({ description: 'JSON Schemas of the payload, by version: {"1": {...}}' });
const FeatureFlag = Type.String({ minLength: 1, maxLength: 256, pattern: LIMITED_PATTERN });
const GroupName = Type.String({ minLength: 1, maxLength: 256, pattern: LIMITED_PATTERN });

const eventTypeFields = {
  description: Description,
  archived: Type.Optional(Type.Boolean()),
  deprecated: Type.Optional(Type.Boolean()),
  schemas: Type.Optional(Schemas),
  featureFlag: Type.Optional(Nullable(FeatureFlag)),
  groupName: Type.Optional(Nullable(GroupName)),
};

export const EventTypeIn = Type.Object({ name: EventTypeName, ...eventTypeFields }, { title: 'EventTypeIn' });
export type EventTypeIn = Static<typeof EventTypeIn>;

export const EventTypeUpdate = Type.Object(eventTypeFields, { title: 'EventTypeUpdate' });
export type EventTypeUpdate = Static<typeof EventTypeUpdate>;

export const EventTypePatch = Type.Object(
  {
    description: Type.Optional(Description),
    archived: Type.Optional(Type.Boolean()),
    deprecated: Type.Optional(Type.Boolean()),
    schemas: Type.Optional(Schemas),
    featureFlag: Type.Optional(Nullable(FeatureFlag)),
    groupName: Type.Optional(Nullable(GroupName)),
  },
  { title: 'EventTypePatch' },
);
export type EventTypePatch = Static<typeof EventTypePatch>;

export const EventTypeOut = Type.Object(
  {
    name: Type.String(),
    description: Type.String(),
    archived: Type.Boolean(),
    deprecated: Type.Boolean(),
    schemas: Type.Optional(Type.Unknown()),
    featureFlag: Type.Optional(Nullable(Type.String())),
    groupName: Type.Optional(Nullable(Type.String())),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: 'EventTypeOut' },
);
export type EventTypeOut = Static<typeof EventTypeOut>;

export const ListResponseEventTypeOut = ListResponse(EventTypeOut, 'ListResponseEventTypeOut');

export const EventTypePath = Type.Object({ event_type_name: EventTypeName });

/** `withSchemas` false leaves the (possibly large) schemas out, as Svix's list does by default. */
export function toEventTypeOut(eventType: EventType, withSchemas = true): EventTypeOut {
  return {
    name: eventType.name,
    description: eventType.description,
    archived: eventType.archived,
    deprecated: eventType.deprecated,
    ...(withSchemas ? { schemas: eventType.schemas } : {}),
    featureFlag: eventType.featureFlag,
    groupName: eventType.groupName,
    createdAt: iso(eventType.createdAt),
    updatedAt: iso(eventType.updatedAt),
  };
}
