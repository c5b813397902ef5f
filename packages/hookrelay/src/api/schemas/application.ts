import { Type, type Static } from 'typebox';
import type { Application } from '../../storage/models.js';
import { iso, ListResponse, Metadata, Nullable, RateLimit, Timestamp, Uid } from './common.js';

const Name = Type.String({ minLength: 1, maxLength: 1024, examples: ['My first application'] });

export const ApplicationIn = Type.Object(
  {
    name: Name,
    uid: Type.Optional(Nullable(Uid)),
    rateLimit: Type.Optional(Nullable(RateLimit, { deprecated: true, description: 'Deprecated, use throttleRate' })),
    throttleRate: Type.Optional(Nullable(RateLimit, { description: 'Maximum messages per second to send to this application' })),
    metadata: Type.Optional(Metadata),
  },
  { title: 'ApplicationIn' },
);
export type ApplicationIn = Static<typeof ApplicationIn>;

/** Absent fields are left as they are; null clears a nullable one. */
export const ApplicationPatch = Type.Object(
  {
    name: Type.Optional(Name),
    uid: Type.Optional(Nullable(Uid)),
    rateLimit: Type.Optional(Nullable(RateLimit, { deprecated: true })),
    throttleRate: Type.Optional(Nullable(RateLimit)),
    metadata: Type.Optional(Metadata),
  },
  { title: 'ApplicationPatch' },
);
export type ApplicationPatch = Static<typeof ApplicationPatch>;

export const ApplicationOut = Type.Object(
  {
    id: Type.String({ examples: ['app_1srOrx2ZWZBpBUvZwXKQmoEYga2'] }),
    uid: Type.Optional(Nullable(Type.String())),
    name: Type.String(),
    rateLimit: Type.Optional(Nullable(Type.Integer())),
    throttleRate: Nullable(Type.Integer()),
    metadata: Metadata,
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: 'ApplicationOut' },
);
export type ApplicationOut = Static<typeof ApplicationOut>;

export const ListResponseApplicationOut = ListResponse(ApplicationOut, 'ListResponseApplicationOut');

export function toApplicationOut(app: Application): ApplicationOut {
  return {
    id: app.id,
    uid: app.uid,
    name: app.name,
    rateLimit: app.rateLimit,
    throttleRate: app.rateLimit,
    metadata: app.metadata,
    createdAt: iso(app.createdAt),
    updatedAt: iso(app.updatedAt),
  };
}
