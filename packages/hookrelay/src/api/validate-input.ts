import { HookrelayError, type ValidationIssue } from '../core/errors.js';
import type { IdPrefix } from '../core/ids.js';
import { isValidEndpointSecret, SECRET_MAX_BYTES, SECRET_MIN_BYTES } from '../signing/endpoint-secret.js';
import { LIMITED_PATTERN } from './schemas/common.js';

/**
 * Checks JSON Schema cannot express. Each throws a 422 in Svix's shape with `loc` naming the
 * field, so the caller learns which value to fix.
 */
function invalid(loc: string[], msg: string, type = 'value_error'): HookrelayError {
  const issue: ValidationIssue = { loc, msg, type };
  return new HookrelayError('validation', [issue]);
}

export function checkEndpointUrl(url: string, requireHttps: boolean, loc: string[] = ['body', 'url']): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(loc, 'Endpoint URLs must be valid absolute URLs', 'value_error.url');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid(loc, 'Endpoint URL schemes must be http or https', 'value_error.url.scheme');
  if (parsed.hostname === '') throw invalid(loc, 'Endpoint URLs must have a host', 'value_error.url.host');
  if (requireHttps && parsed.protocol !== 'https:') throw invalid(loc, 'Endpoint URL schemes must be https (HOOKRELAY_REQUIRE_HTTPS is set)', 'value_error.url.scheme');
  return url;
}

/** Svix takes the secret with or without its `whsec_` prefix; it is stored with it. */
export function normalizeSecret(secret: string, loc: string[]): string {
  const candidate = secret.startsWith('whsec_') ? secret : 'whsec_' + secret;
  if (!isValidEndpointSecret(candidate)) throw invalid(loc, `The secret must be whsec_ followed by base64 of ${SECRET_MIN_BYTES} to ${SECRET_MAX_BYTES} bytes`, 'value_error.secret');
  return candidate;
}

/** A uid shaped like an id would make "id or uid" lookups ambiguous, so Svix refuses it. */
export function checkUid(uid: string | null | undefined, prefix: IdPrefix, loc: string[]): void {
  if (uid && uid.startsWith(prefix + '_')) throw invalid(loc, `Uids may not start with the id prefix "${prefix}_"`, 'value_error.invalid_uid_prefix');
}

/** Parses an ISO 8601 timestamp from the query string into epoch ms. */
export function parseTimestamp(value: string | undefined, loc: string[]): number | undefined {
  if (value === undefined) return undefined;
  const millis = Date.parse(value);
  if (Number.isNaN(millis)) throw invalid(loc, 'Expected an ISO 8601 date-time', 'value_error.datetime');
  return millis;
}

const EVENT_TYPE_NAME = new RegExp(LIMITED_PATTERN);

/** The `event_types` list filter (see EventTypesParam): distinct names, or undefined for none. */
export function parseEventTypes(raw: string | string[] | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
  names.forEach((name, i) => {
    if (!EVENT_TYPE_NAME.test(name) || name.length > 256) throw invalid(['query', 'event_types', String(i)], 'Not an event type name');
  });
  return names.length > 0 ? [...new Set(names)] : undefined;
}

/** A list iterator must be an id of the listed kind (optionally "-"-prefixed for the page before). */
export function checkIterator(iterator: string | undefined, prefix: IdPrefix | null): string | undefined {
  if (iterator === undefined || prefix === null) return iterator;
  const id = iterator.startsWith('-') ? iterator.slice(1) : iterator;
  if (!new RegExp(`^${prefix}_[0-9A-Za-z]{27}$`).test(id)) throw invalid(['query', 'iterator'], `Expected an iterator returned by a previous list call (${prefix}_...)`, 'value_error.iterator');
  return iterator;
}

/** Copies Svix's header rules: names the HTTP client will send as-is, nothing that breaks transport or signatures. */
const FORBIDDEN_HEADERS = new Set([
  'user-agent', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers', 'transfer-encoding',
  'upgrade', 'age', 'cache-control', 'clear-site-data', 'expires', 'pragma', 'warning', 'content-length', 'content-type',
  'content-encoding', 'content-language', 'content-location',
  // Not in Svix's list, but the delivery client owns them: routing, framing and our signature.
  'host', 'connection', 'expect', 'proxy-connection', 'webhook-id', 'webhook-timestamp', 'webhook-signature',
]);
const FORBIDDEN_PREFIXES = ['x-amz-', 'x-amzn-', 'x-google', 'x-goog-', 'x-gfe', 'x-azure-', 'x-fd-', 'x-svix-', 'svix-'];
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HEADER_MAX_LENGTH = 4096;

export function checkHeaderName(name: string, loc: string[]): void {
  const lower = name.toLowerCase();
  if (!HEADER_NAME.test(name)) throw invalid(loc, 'Invalid header name', 'value_error.header');
  if (FORBIDDEN_HEADERS.has(lower)) throw invalid(loc, 'Header uses a forbidden key', 'value_error.header');
  if (FORBIDDEN_PREFIXES.some((p) => lower.startsWith(p))) throw invalid(loc, 'Header starts with a forbidden prefix', 'value_error.header');
}

export function checkHeaders(headers: Record<string, string | null>, loc: string[]): void {
  for (const [name, value] of Object.entries(headers)) {
    checkHeaderName(name, [...loc, name]);
    if (value === null) continue;
    if (!HEADER_VALUE.test(value)) throw invalid([...loc, name], 'Invalid header value', 'value_error.header');
    if (value.length > HEADER_MAX_LENGTH) throw invalid([...loc, name], `Maximum header length is ${HEADER_MAX_LENGTH} bytes`, 'value_error.header');
  }
}

/** Header maps are case-insensitive: setting "X-A" replaces an existing "x-a"; null or `remove` deletes. */
export function mergeHeaders(current: Record<string, string>, set: Record<string, string | null>, remove: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const nameOf = new Map<string, string>();
  const put = (name: string, value: string | null): void => {
    const lower = name.toLowerCase();
    const previous = nameOf.get(lower);
    if (previous !== undefined) delete out[previous];
    nameOf.delete(lower);
    if (value === null) return;
    out[name] = value;
    nameOf.set(lower, name);
  };
  for (const [name, value] of Object.entries(current)) put(name, value);
  for (const name of remove) put(name, null);
  for (const [name, value] of Object.entries(set)) put(name, value);
  return out;
}

/** Replaces a header map, keeping the last of names differing only in case. */
export function normalizeHeaders(headers: Record<string, string>): Record<string, string> {
  return mergeHeaders({}, headers, []);
}

export function unique<T>(items: readonly T[] | null | undefined): T[] | null {
  return items ? [...new Set(items)] : null;
}

/**
 * An endpoint's event type filter from `filterTypes` or `eventTypes`, Svix's name for the same
 * field (its OpenAPI says eventTypes, its SDKs send filterTypes): undefined when neither is sent
 * (a PATCH keeps the filter), null to clear it. Both may be sent only with the same value.
 */
export function endpointFilterTypes(body: { filterTypes?: readonly string[] | null | undefined; eventTypes?: readonly string[] | null | undefined }): string[] | null | undefined {
  const { filterTypes, eventTypes } = body;
  if (filterTypes !== undefined && eventTypes !== undefined && !sameSet(filterTypes, eventTypes)) {
    throw invalid(['body', 'eventTypes'], 'eventTypes and filterTypes are two names of one field: send one of them, or both with the same value', 'value_error.conflict');
  }
  const chosen = filterTypes !== undefined ? filterTypes : eventTypes;
  return chosen === undefined ? undefined : unique(chosen);
}

function sameSet(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((item) => right.has(item));
}
