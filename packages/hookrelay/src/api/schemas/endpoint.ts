import { Type, type Static } from 'typebox';
import type { Endpoint } from '../../storage/models.js';
import type { EndpointHealth } from '../../storage/storage.js';
import { Channel, iso, LIMITED_PATTERN, ListResponse, Metadata, Nullable, RateLimit, Timestamp, Uid } from './common.js';

/** An event type name, a prefix wildcard (`order.*`) or `*`: what core/event-type-filter matches. */
const FilterType = Type.String({ minLength: 1, maxLength: 256, pattern: `^(\\*|${LIMITED_PATTERN.slice(1, -1)}(\\.\\*)?)$`, examples: ['user.signup', 'order.*'] });

const Url = Type.String({ minLength: 1, maxLength: 8192, examples: ['https://example.com/webhook/'] });
const Description = Type.String({ maxLength: 4096 });
const Version = Type.Integer({ minimum: 1, maximum: 65535 });
const FilterTypes = Type.Array(FilterType, { minItems: 1, maxItems: 1000 });
const Channels = Type.Array(Channel, { minItems: 1, maxItems: 10 });
const Headers = Type.Record(Type.String(), Type.String(), { examples: [{ 'X-Example': '123' }] });
const Secret = Type.String({ minLength: 1, maxLength: 256, description: 'whsec_ (optional) + base64 of 24 to 75 random bytes; generated when absent' });

/** Fields PUT and POST share: PUT replaces all of them, absent ones taking their defaults. */
const endpointFields = {
  url: Url,
  uid: Type.Optional(Nullable(Uid)),
  description: Type.Optional(Description),
  version: Type.Optional(Nullable(Version)),
  disabled: Type.Optional(Type.Boolean()),
  filterTypes: Type.Optional(Nullable(FilterTypes)),
  // Svix's OpenAPI names the filter eventTypes (filterTypes is its input alias): either is taken.
  eventTypes: Type.Optional(Nullable(FilterTypes, { description: 'The event types sent to the endpoint (null: all); the same field as filterTypes, which may be sent instead (if both are sent, they must be equal)' })),
  channels: Type.Optional(Nullable(Channels)),
  rateLimit: Type.Optional(Nullable(RateLimit, { deprecated: true })),
  throttleRate: Type.Optional(Nullable(RateLimit)),
  metadata: Type.Optional(Metadata),
};

export const EndpointIn = Type.Object(
  { ...endpointFields, headers: Type.Optional(Nullable(Headers)), secret: Type.Optional(Nullable(Secret)) },
  { title: 'EndpointIn' },
);
export type EndpointIn = Static<typeof EndpointIn>;

export const EndpointUpdate = Type.Object(endpointFields, { title: 'EndpointUpdate' });
export type EndpointUpdate = Static<typeof EndpointUpdate>;

/** Absent fields are left as they are; null clears a nullable one. */
export const EndpointPatch = Type.Object(
  {
    ...endpointFields,
    url: Type.Optional(Url),
    // Not nullable here: a PATCH has no default to fall back on.
    version: Type.Optional(Version),
    secret: Type.Optional(Nullable(Secret, { deprecated: true, description: 'Deprecated: replaces the key at once; use secret/rotate' })),
  },
  { title: 'EndpointPatch' },
);
export type EndpointPatch = Static<typeof EndpointPatch>;

export const EndpointOut = Type.Object(
  {
    id: Type.String({ examples: ['ep_1srOrx2ZWZBpBUvZwXKQmoEYga2'] }),
    uid: Type.Optional(Nullable(Type.String())),
    url: Type.String(),
    description: Type.String(),
    version: Type.Integer(),
    disabled: Type.Boolean(),
    filterTypes: Type.Optional(Nullable(Type.Array(Type.String()))),
    eventTypes: Type.Optional(Nullable(Type.Array(Type.String(), { description: 'The same value as filterTypes (Svix outputs both names)' }))),
    channels: Type.Optional(Nullable(Type.Array(Type.String()))),
    rateLimit: Type.Optional(Nullable(Type.Integer())),
    throttleRate: Type.Optional(Nullable(Type.Integer())),
    metadata: Metadata,
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: 'EndpointOut' },
);
export type EndpointOut = Static<typeof EndpointOut>;

export const ListResponseEndpointOut = ListResponse(EndpointOut, 'ListResponseEndpointOut');

export const EndpointHeadersIn = Type.Object({ headers: Headers }, { title: 'EndpointHeadersIn' });
export type EndpointHeadersIn = Static<typeof EndpointHeadersIn>;

export const EndpointHeadersPatchIn = Type.Object(
  {
    headers: Type.Record(Type.String(), Nullable(Type.String()), { description: 'Headers to set; a null value removes that header' }),
    deleteHeaders: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Headers to remove' })),
  },
  { title: 'EndpointHeadersPatchIn' },
);
export type EndpointHeadersPatchIn = Static<typeof EndpointHeadersPatchIn>;

export const EndpointHeadersOut = Type.Object(
  {
    headers: Type.Record(Type.String(), Type.String()),
    sensitive: Type.Array(Type.String(), { description: 'Names of headers that are set but whose values are not shown' }),
  },
  { title: 'EndpointHeadersOut' },
);
export type EndpointHeadersOut = Static<typeof EndpointHeadersOut>;

export const EndpointSecretOut = Type.Object({ key: Type.String({ examples: ['whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD'] }) }, { title: 'EndpointSecretOut' });

/** Hookrelay's failure tracking of an endpoint (not in Svix's API): its current failing streak. */
export const EndpointHealthOut = Type.Object(
  {
    consecutiveFailures: Type.Integer({ description: 'Failed attempts since the last success' }),
    failingSince: Nullable(Timestamp, { description: 'The first failure after the last success; null while healthy' }),
    lastFailureAt: Nullable(Timestamp),
    lastFailureCode: Nullable(Type.String({ description: 'HTTP_<status>, or the error code of a request without a response (e.g. HOOKRELAY_TIMEOUT)' })),
    recoveredAt: Nullable(Timestamp, { description: 'When a success last ended a failing streak' }),
    disabledAt: Nullable(Timestamp, { description: 'When failure tracking disabled the endpoint (HOOKRELAY_ENDPOINT_DISABLE_AFTER); cleared when it is enabled again' }),
  },
  { title: 'EndpointHealthOut' },
);

export function toEndpointHealthOut(health: EndpointHealth): Static<typeof EndpointHealthOut> {
  const at = (millis: number | null) => (millis === null ? null : iso(millis));
  return {
    consecutiveFailures: health.consecutiveFailures,
    failingSince: at(health.failingSince),
    lastFailureAt: at(health.lastFailureAt),
    lastFailureCode: health.lastFailureCode,
    recoveredAt: at(health.recoveredAt),
    disabledAt: at(health.disabledAt),
  };
}

const StatsBound = (description: string) => Type.Optional(Type.String({ format: 'date-time', description, examples: ['2026-01-01T12:00:00.000Z'] }));

export const EndpointStatsQuery = Type.Object({
  since: StatsBound('Count only deliveries created at or after this time (RFC 3339)'),
  until: StatsBound('Count only deliveries created at or before this time (RFC 3339)'),
});

const Count = Type.Integer({ minimum: 0 });

// `canceled` is in newer Svix SDKs' EndpointStats; Hookrelay never cancels a delivery, so it is 0.
export const EndpointStats = Type.Object({ success: Count, fail: Count, pending: Count, sending: Count, canceled: Count }, { title: 'EndpointStats' });

export const EndpointSecretRotateIn = Type.Object(
  {
    key: Type.Optional(Nullable(Secret)),
    gracePeriodSeconds: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600 }))),
  },
  { title: 'EndpointSecretRotateIn' },
);
export type EndpointSecretRotateIn = Static<typeof EndpointSecretRotateIn>;

export const EndpointPath = Type.Object({
  app_id: Type.String({ minLength: 1, maxLength: 256, description: 'The application id or uid' }),
  endpoint_id: Type.String({ minLength: 1, maxLength: 256, description: 'The endpoint id or uid' }),
});

export function toEndpointOut(endpoint: Endpoint): EndpointOut {
  return {
    id: endpoint.id,
    uid: endpoint.uid,
    url: endpoint.url,
    description: endpoint.description,
    version: endpoint.version,
    disabled: endpoint.disabled,
    filterTypes: endpoint.filterTypes,
    eventTypes: endpoint.filterTypes,
    channels: endpoint.channels,
    rateLimit: endpoint.rateLimit,
    throttleRate: endpoint.rateLimit,
    metadata: endpoint.metadata,
    createdAt: iso(endpoint.createdAt),
    updatedAt: iso(endpoint.updatedAt),
  };
}

/** Headers whose values Svix never shows back (compared case-insensitively). */
const SENSITIVE_HEADERS = new Set(['x-auth-token', 'x-api-key', 'www-authenticate', 'authorization', 'proxy-authenticate', 'proxy-authorization']);

export function toEndpointHeadersOut(headers: Record<string, string>): EndpointHeadersOut {
  const out: EndpointHeadersOut = { headers: {}, sensitive: [] };
  for (const [name, value] of Object.entries(headers)) {
    if (SENSITIVE_HEADERS.has(name.toLowerCase())) out.sensitive.push(name);
    else out.headers[name] = value;
  }
  return out;
}
