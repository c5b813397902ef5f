import type { FastifyInstance } from 'fastify';
import { HookrelayError, validationError } from '../../core/errors.js';

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
 * Where a parsed body holds the NUL character (U+0000) in a string or a key outside `payload`, as
 * a `loc` below "body" (the first found), or null. PostgreSQL text cannot store it, so without
 * this rule the same request would be stored on SQLite and refused on PostgreSQL. A message's
 * payload is stored as serialized JSON, where NUL is an escape sequence, so it keeps the character
 * on both engines.
 */
export function nulLocation(value: unknown, path: string[] = []): string[] | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (typeof value !== 'object' || value === null) return null;
  for (const [key, item] of Object.entries(value)) {
    const at = [...path, key];
    if (key.includes('\u0000')) return at;
    if (path.length === 0 && key === 'payload') continue;
    const found = nulLocation(item, at);
    if (found) return found;
  }
  return null;
}

/**
 * The JSON body parser: Fastify's own (with prototype-poisoning protection), plus three rules. An
 * empty body is no body, since many clients send Content-Type: application/json on bodiless
 * DELETEs and POSTs and Svix accepts them; nesting is limited as above; and NUL is refused
 * outside a payload, as above (nul-in-url.ts does the same for the URL).
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
      const loc = nulLocation(parsed);
      // 422 naming the field, as for any other value the field cannot take.
      if (loc) return done(validationError(['body', ...loc], 'Text fields cannot contain the NUL character (U+0000); only a message payload may', 'value_error.nul_character'), undefined);
      return done(null, parsed);
    });
  });
}
