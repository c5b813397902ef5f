import type { FastifyInstance } from 'fastify';
import { HookrelayError } from '../../core/errors.js';

/**
 * Deepest accepted nesting of a JSON body (serde_json's default limit, which Svix inherits).
 * V8 parses any depth but JSON.stringify recurses: a 1 MiB body of nested arrays parses fine and
 * then overflows the stack wherever it is serialized again (hashing, storing, replying).
 */
export const MAX_JSON_DEPTH = 128;

/** Nesting depth of JSON text, brackets inside strings ignored; stops early once over `limit`. */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/**
 * Whether a parsed body holds the NUL character (U+0000) in a string outside `payload`.
 * PostgreSQL text cannot store it, so without this rule the same request would be stored on
 * SQLite and refused on PostgreSQL. A message's payload is stored as serialized JSON, where NUL is
 * an escape sequence, so it keeps the character on both engines.
 */
export function hasNulOutsidePayload(value: unknown, topLevel = true): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some((item) => hasNulOutsidePayload(item, false));
  if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (key.includes('\u0000') || (!(topLevel && key === 'payload') && hasNulOutsidePayload(item, false))) return true;
    }
  }
  return false;
}

/**
 * The JSON body parser: Fastify's own (with prototype-poisoning protection), plus three rules. An
 * empty body is no body, since many clients send Content-Type: application/json on bodiless
 * DELETEs and POSTs and Svix accepts them; nesting is limited as above; and NUL is refused
 * outside a payload, as above.
 */
export function installJsonBodyParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (text.length === 0) return done(null, undefined);
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) return done(new HookrelayError('invalid_json', `JSON nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    // The walk runs only when the text holds the escape at all: almost never.
    if (!text.includes('\\u0000')) return parseJson(request, text, done);
    return parseJson(request, text, (error: Error | null, parsed?: unknown) => {
      if (error) return done(error, undefined);
      if (hasNulOutsidePayload(parsed)) return done(new HookrelayError('bad_request', 'Text fields cannot contain the NUL character (U+0000); only a message payload may'), undefined);
      return done(null, parsed);
    });
  });
}
