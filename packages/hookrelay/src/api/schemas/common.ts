import { Type, type Static, type TSchema } from 'typebox';

/**
 * `T | null` as a JSON Schema type array rather than anyOf. With Ajv's coerceTypes, an anyOf
 * whose first branch is a string would turn null into "" before the null branch is tried; a type
 * array coerces only when no listed type matches. (The document is OpenAPI 3.1, which allows it.)
 */
export function Nullable<T extends TSchema>(schema: T, options: Record<string, unknown> = {}) {
  const { type } = schema as unknown as { type: string };
  return Type.Unsafe<Static<T> | null>({ ...schema, ...options, type: [type, 'null'] });
}

export function StringEnum<const T extends readonly string[]>(values: T, options: Record<string, unknown> = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

export const Timestamp = Type.String({ format: 'date-time', examples: ['2026-01-01T12:00:00.000Z'] });

/** Svix's limited string: ids' uids, event type names, event ids. */
export const LIMITED_PATTERN = '^[a-zA-Z0-9\\-_.]+$';

export const Uid = Type.String({ minLength: 1, maxLength: 256, pattern: LIMITED_PATTERN, description: 'Optional unique identifier, usable in place of the id' });

export const EventTypeName = Type.String({ minLength: 1, maxLength: 256, pattern: LIMITED_PATTERN, examples: ['user.signup'] });

export const Channel = Type.String({ minLength: 1, maxLength: 128, pattern: '^[a-zA-Z0-9\\-_.:]+$', examples: ['project_1337'] });

export const Metadata = Type.Record(Type.String(), Type.String());

/**
 * A list filter on event types: a single value, a comma-separated list, or the parameter
 * repeated, all as Svix's SDKs send it (validate-input's parseEventTypes checks the names).
 */
export const EventTypesParam = (description: string) => Type.Unsafe<string | string[]>({ type: ['string', 'array'], items: { type: 'string' }, description });

export const RateLimit = Type.Integer({ minimum: 0, maximum: 2_147_483_647 });

/** Svix's list envelope. */
export function ListResponse<T extends TSchema>(item: T, title: string) {
  return Type.Object(
    {
      data: Type.Array(item),
      iterator: Nullable(Type.String()),
      prevIterator: Type.Optional(Nullable(Type.String())),
      done: Type.Boolean(),
    },
    { title },
  );
}

export const MAX_LIMIT = 250;

/**
 * limit / iterator / order, as every Svix list takes them. Unknown parameters are allowed through.
 * `limit` is bounded as Svix's server bounds it: its OpenAPI says minimum 0 (a uint64), and the
 * server refuses more than 250 with a 422 on `limit` rather than clamping. `limit=0` is a page of
 * no items (`done` says whether any are left, `iterator` is null), as there.
 */
export const ListQuery = Type.Object({
  limit: Type.Integer({ minimum: 0, maximum: MAX_LIMIT, default: 50, description: 'Limit the number of returned items' }),
  iterator: Type.Optional(Type.String({ minLength: 1, maxLength: 300, description: 'The iterator returned from a prior invocation' })),
  order: Type.Optional(StringEnum(['ascending', 'descending'] as const, { description: 'The sorting order of the returned items' })),
});

/** A 204: no body (Fastify drops any payload for this status). */
export const NoContent = Type.Unsafe<undefined>({ type: 'null', description: 'No content' });

export const HttpError = Type.Object(
  {
    code: Type.String(),
    detail: Type.Unknown({ description: 'A message, or for code "validation" a list of {loc, msg, type}' }),
  },
  { title: 'HttpErrorOut' },
);

/** Error statuses every authenticated route can answer, for the OpenAPI document. */
export const COMMON_ERRORS = { 401: HttpError, 422: HttpError } as const;
export const LOOKUP_ERRORS = { 401: HttpError, 404: HttpError, 422: HttpError } as const;

/**
 * Fastify's maxParamLength: a path segment matched to a parameter may be this long at most (ids
 * and uids are at most 256 characters); a longer one is 414 `uri_too_long`.
 */
export const MAX_PATH_PARAM_LENGTH = 1024;

export const AppPath = Type.Object({ app_id: Type.String({ minLength: 1, maxLength: 256, description: 'The application id or uid' }) });

export const iso = (millis: number): string => new Date(millis).toISOString();
