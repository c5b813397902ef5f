import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MAX_JSON_DEPTH } from '../src/api/plugins/json-body.js';
import { ADMIN_KEY, startHarness, type Harness } from './helpers/api-harness.js';
import { TEST_ENGINES } from './helpers/test-database.js';

/**
 * Malformed and impossible requests, each with the status and code it must get. Every case must
 * be refused without writing anything: after the whole table, the database is compared, row for
 * row, with a dump taken before it.
 */
interface BadRequest {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** For 422: the `loc` of the first issue. */
  loc?: string[];
}

const MAX_PAYLOAD = 8192;
const APP = '/api/v1/app/bad-app';
const GOOD_EP = { url: 'https://example.com/hook' };
const GOOD_MSG = { eventType: 'user.created', payload: { a: 1 } };
const json = { 'content-type': 'application/json' };

const CASES: BadRequest[] = [
  // Bodies that are not JSON objects at all
  { name: 'malformed JSON', method: 'POST', path: '/api/v1/app', body: '{"name": ', headers: json, status: 400, code: 'invalid_json' },
  { name: 'empty body sent as JSON', method: 'POST', path: '/api/v1/app', body: '', headers: json, status: 422, code: 'validation', loc: ['body'] },
  { name: 'JSON literal null', method: 'POST', path: '/api/v1/app', body: 'null', headers: json, status: 422, code: 'validation', loc: ['body'] },
  { name: 'trailing garbage after JSON', method: 'POST', path: '/api/v1/app', body: '{"name":"x"} extra', headers: json, status: 400, code: 'invalid_json' },
  // PostgreSQL text cannot hold U+0000: refused on both engines alike (a payload keeps it, see
  // below), before anything reads the database. In a body: 422 naming the field.
  { name: 'NUL in a name', method: 'POST', path: '/api/v1/app', body: { name: 'nul \u0000 inside' }, status: 422, code: 'validation', loc: ['body', 'name'] },
  { name: 'NUL in a uid', method: 'POST', path: '/api/v1/app', body: { name: 'x', uid: 'u\u0000' }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'NUL in a nested field', method: 'POST', path: `${APP}/endpoint`, body: { url: 'https://example.com/x', metadata: { k: 'v\u0000' } }, status: 422, code: 'validation', loc: ['body', 'metadata', 'k'] },
  { name: 'NUL in a key', method: 'POST', path: `${APP}/endpoint`, body: { url: 'https://example.com/x', metadata: { 'k\u0000': 'v' } }, status: 422, code: 'validation', loc: ['body', 'metadata', 'k\u0000'] },
  { name: 'NUL in an eventId', method: 'POST', path: `${APP}/msg`, body: { eventType: 'a.b', eventId: 'e\u0000', payload: {} }, status: 422, code: 'validation', loc: ['body', 'eventId'] },
  { name: 'NUL in an upsert body', method: 'PUT', path: `${APP}/endpoint/ep-1`, body: { url: 'https://example.com/x', description: '\u0000' }, status: 422, code: 'validation', loc: ['body', 'description'] },
  // In a path: no id, uid or name can hold it, so it is not found, like any unknown one.
  { name: 'NUL in an app id', method: 'GET', path: '/api/v1/app/app_%00x', status: 404, code: 'not_found' },
  { name: 'NUL in an app uid', method: 'GET', path: '/api/v1/app/bad-app%00', status: 404, code: 'not_found' },
  { name: 'NUL as the whole app id', method: 'DELETE', path: '/api/v1/app/%00', status: 404, code: 'not_found' },
  { name: 'NUL in the app of a PUT', method: 'PUT', path: '/api/v1/app/new%00app', body: { name: 'x' }, status: 404, code: 'not_found' },
  { name: 'NUL in the app of a new message', method: 'POST', path: '/api/v1/app/bad-app%00/msg', body: GOOD_MSG, status: 404, code: 'not_found' },
  { name: 'NUL in an endpoint uid', method: 'GET', path: `${APP}/endpoint/ep-1%00`, status: 404, code: 'not_found' },
  { name: 'NUL in the endpoint of a PUT', method: 'PUT', path: `${APP}/endpoint/ep%00new`, body: GOOD_EP, status: 404, code: 'not_found' },
  { name: 'NUL in the endpoint of its health', method: 'GET', path: `${APP}/endpoint/ep-1%00/health`, status: 404, code: 'not_found' },
  { name: 'NUL in a message id', method: 'GET', path: `${APP}/msg/msg_%00`, status: 404, code: 'not_found' },
  { name: 'NUL in a message to expunge', method: 'DELETE', path: `${APP}/msg/evt-1%00/content`, status: 404, code: 'not_found' },
  { name: 'NUL in an attempt id', method: 'GET', path: `${APP}/msg/evt-1/attempt/atmpt_%00`, status: 404, code: 'not_found' },
  { name: 'NUL in the endpoint of a resend', method: 'POST', path: `${APP}/msg/evt-1/endpoint/ep-1%00/resend`, status: 404, code: 'not_found' },
  { name: 'NUL in an event type name', method: 'GET', path: '/api/v1/event-type/user.created%00', status: 404, code: 'not_found' },
  // In a query parameter: 422 naming it.
  { name: 'NUL in an attempt list endpoint filter', method: 'GET', path: `${APP}/attempt/msg/evt-1?endpoint_id=ep-1%00`, status: 422, code: 'validation', loc: ['query', 'endpoint_id'] },
  { name: 'NUL in an iterator', method: 'GET', path: '/api/v1/app?iterator=app_%00', status: 422, code: 'validation', loc: ['query', 'iterator'] },
  { name: 'NUL in a channel filter', method: 'GET', path: `${APP}/msg?channel=a%00`, status: 422, code: 'validation', loc: ['query', 'channel'] },
  { name: 'NUL in a repeated event type filter', method: 'GET', path: `${APP}/msg?event_types=a.b&event_types=c%00`, status: 422, code: 'validation', loc: ['query', 'event_types'] },
  { name: 'prototype poisoning', method: 'POST', path: '/api/v1/app', body: '{"name":"x","__proto__":{"admin":true}}', headers: json, status: 400, code: 'invalid_json' },
  { name: 'JSON nested too deeply', method: 'POST', path: `${APP}/msg`, body: `{"eventType":"deep","payload":{"a":${'['.repeat(3000)}${']'.repeat(3000)}}}`, headers: json, status: 400, code: 'invalid_json' },
  { name: 'body over the limit', method: 'POST', path: `${APP}/msg`, body: { eventType: 'big', payload: { blob: 'x'.repeat(MAX_PAYLOAD) } }, status: 413, code: 'payload_too_large' },
  { name: 'text/plain body', method: 'POST', path: '/api/v1/app', body: 'name=x', headers: { 'content-type': 'text/plain' }, status: 415, code: 'unsupported_media_type' },
  { name: 'form body', method: 'POST', path: '/api/v1/app', body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'unsupported_media_type' },
  { name: 'JSON array instead of object', method: 'POST', path: '/api/v1/app', body: [{ name: 'x' }], status: 422, code: 'validation', loc: ['body'] },
  { name: 'missing body', method: 'POST', path: '/api/v1/app', status: 422, code: 'validation', loc: ['body'] },

  // Applications
  { name: 'app: missing name', method: 'POST', path: '/api/v1/app', body: {}, status: 422, code: 'validation', loc: ['body', 'name'] },
  { name: 'app: name of the wrong type', method: 'POST', path: '/api/v1/app', body: { name: { first: 'x' } }, status: 422, code: 'validation', loc: ['body', 'name'] },
  { name: 'app: empty name', method: 'POST', path: '/api/v1/app', body: { name: '' }, status: 422, code: 'validation', loc: ['body', 'name'] },
  { name: 'app: uid with a space', method: 'POST', path: '/api/v1/app', body: { name: 'x', uid: 'has space' }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'app: uid too long', method: 'POST', path: '/api/v1/app', body: { name: 'x', uid: 'u'.repeat(257) }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'app: uid shaped like an id', method: 'POST', path: '/api/v1/app', body: { name: 'x', uid: 'app_123' }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'app: metadata value not a string', method: 'POST', path: '/api/v1/app', body: { name: 'x', metadata: { a: { b: 1 } } }, status: 422, code: 'validation', loc: ['body', 'metadata', 'a'] },
  { name: 'app: negative rate limit', method: 'POST', path: '/api/v1/app', body: { name: 'x', rateLimit: -1 }, status: 422, code: 'validation', loc: ['body', 'rateLimit'] },
  { name: 'app: fractional throttle rate', method: 'POST', path: '/api/v1/app', body: { name: 'x', throttleRate: 1.5 }, status: 422, code: 'validation', loc: ['body', 'throttleRate'] },
  { name: 'app: duplicate uid', method: 'POST', path: '/api/v1/app', body: { name: 'x', uid: 'bad-app' }, status: 409, code: 'conflict' },
  { name: 'app: PATCH to a taken uid', method: 'PATCH', path: '/api/v1/app/other-app', body: { uid: 'bad-app' }, status: 409, code: 'conflict' },
  { name: 'app: unknown id', method: 'GET', path: '/api/v1/app/app_000000000000000000000000000', status: 404, code: 'not_found' },
  { name: 'app: unknown uid', method: 'GET', path: '/api/v1/app/no-such-app', status: 404, code: 'not_found' },
  { name: 'app: PATCH unknown', method: 'PATCH', path: '/api/v1/app/no-such-app', body: { name: 'x' }, status: 404, code: 'not_found' },
  { name: 'app: DELETE unknown', method: 'DELETE', path: '/api/v1/app/no-such-app', status: 404, code: 'not_found' },
  { name: 'app: PUT missing name', method: 'PUT', path: APP, body: { uid: 'bad-app' }, status: 422, code: 'validation', loc: ['body', 'name'] },

  // Lists
  // limit=0 is a valid (empty) page, as on Svix's server (api-crud.test.ts); above 250 it refuses.
  { name: 'list: limit=-1', method: 'GET', path: '/api/v1/app?limit=-1', status: 422, code: 'validation', loc: ['query', 'limit'] },
  { name: 'list: limit=251', method: 'GET', path: '/api/v1/app?limit=251', status: 422, code: 'validation', loc: ['query', 'limit'] },
  { name: 'list: limit not a number', method: 'GET', path: '/api/v1/app?limit=ten', status: 422, code: 'validation', loc: ['query', 'limit'] },
  { name: 'list: unknown order', method: 'GET', path: '/api/v1/app?order=sideways', status: 422, code: 'validation', loc: ['query', 'order'] },
  { name: 'list: iterator not an id', method: 'GET', path: '/api/v1/app?iterator=garbage', status: 422, code: 'validation', loc: ['query', 'iterator'] },
  { name: 'list: iterator of another kind', method: 'GET', path: `${APP}/msg?iterator=app_000000000000000000000000000`, status: 422, code: 'validation', loc: ['query', 'iterator'] },
  { name: 'messages: before not a date', method: 'GET', path: `${APP}/msg?before=yesterday`, status: 422, code: 'validation', loc: ['query', 'before'] },
  { name: 'messages: bad event type filter', method: 'GET', path: `${APP}/msg?event_types=ok,not%20ok`, status: 422, code: 'validation', loc: ['query', 'event_types', '1'] },
  { name: 'messages: bad channel filter', method: 'GET', path: `${APP}/msg?channel=a%20b`, status: 422, code: 'validation', loc: ['query', 'channel'] },
  { name: 'messages: list of unknown app', method: 'GET', path: '/api/v1/app/no-such-app/msg', status: 404, code: 'not_found' },
  { name: 'attempts: status out of range', method: 'GET', path: `${APP}/attempt/endpoint/ep-1?status=9`, status: 422, code: 'validation', loc: ['query', 'status'] },

  // Endpoints
  { name: 'endpoint: missing url', method: 'POST', path: `${APP}/endpoint`, body: {}, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: url not a URL', method: 'POST', path: `${APP}/endpoint`, body: { url: 'not a url' }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: relative url', method: 'POST', path: `${APP}/endpoint`, body: { url: '/webhook' }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: ftp url', method: 'POST', path: `${APP}/endpoint`, body: { url: 'ftp://example.com/x' }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: javascript url', method: 'POST', path: `${APP}/endpoint`, body: { url: 'javascript:alert(1)' }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: url of the wrong type', method: 'POST', path: `${APP}/endpoint`, body: { url: ['https://example.com'] }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: short secret', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, secret: 'whsec_c2hvcnQ=' }, status: 422, code: 'validation', loc: ['body', 'secret'] },
  { name: 'endpoint: secret not base64', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, secret: 'whsec_' + '!'.repeat(40) }, status: 422, code: 'validation', loc: ['body', 'secret'] },
  { name: 'endpoint: bad uid', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, uid: 'a/b' }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'endpoint: uid shaped like an id', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, uid: 'ep_x' }, status: 422, code: 'validation', loc: ['body', 'uid'] },
  { name: 'endpoint: duplicate uid', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, uid: 'ep-1' }, status: 409, code: 'conflict' },
  { name: 'endpoint: empty filterTypes', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, filterTypes: [] }, status: 422, code: 'validation', loc: ['body', 'filterTypes'] },
  { name: 'endpoint: empty filter type', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, filterTypes: [''] }, status: 422, code: 'validation', loc: ['body', 'filterTypes', '0'] },
  { name: 'endpoint: 11 channels', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, channels: Array.from({ length: 11 }, (_, i) => `c${i}`) }, status: 422, code: 'validation', loc: ['body', 'channels'] },
  { name: 'endpoint: channel with a space', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, channels: ['a b'] }, status: 422, code: 'validation', loc: ['body', 'channels', '0'] },
  { name: 'endpoint: version 0', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, version: 0 }, status: 422, code: 'validation', loc: ['body', 'version'] },
  { name: 'endpoint: forbidden header', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, headers: { 'Content-Length': '1' } }, status: 422, code: 'validation', loc: ['body', 'headers', 'Content-Length'] },
  { name: 'endpoint: header that would forge a signature', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, headers: { 'webhook-signature': 'v1,x' } }, status: 422, code: 'validation', loc: ['body', 'headers', 'webhook-signature'] },
  { name: 'endpoint: header name with a space', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, headers: { 'X Bad': '1' } }, status: 422, code: 'validation', loc: ['body', 'headers', 'X Bad'] },
  { name: 'endpoint: header value with a newline', method: 'POST', path: `${APP}/endpoint`, body: { ...GOOD_EP, headers: { 'X-Ok': 'a\r\nInjected: 1' } }, status: 422, code: 'validation', loc: ['body', 'headers', 'X-Ok'] },
  { name: 'endpoint: in an unknown app', method: 'POST', path: '/api/v1/app/no-such-app/endpoint', body: GOOD_EP, status: 404, code: 'not_found' },
  { name: 'endpoint: unknown id', method: 'GET', path: `${APP}/endpoint/ep_000000000000000000000000000`, status: 404, code: 'not_found' },
  { name: 'endpoint: PATCH with a bad url', method: 'PATCH', path: `${APP}/endpoint/ep-1`, body: { url: 'nope' }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: PATCH null url', method: 'PATCH', path: `${APP}/endpoint/ep-1`, body: { url: null }, status: 422, code: 'validation', loc: ['body', 'url'] },
  { name: 'endpoint: PUT unknown app', method: 'PUT', path: '/api/v1/app/no-such-app/endpoint/ep-1', body: GOOD_EP, status: 404, code: 'not_found' },
  { name: 'headers: PUT without headers', method: 'PUT', path: `${APP}/endpoint/ep-1/headers`, body: {}, status: 422, code: 'validation', loc: ['body', 'headers'] },
  { name: 'headers: PATCH a forbidden header', method: 'PATCH', path: `${APP}/endpoint/ep-1/headers`, body: { headers: { Host: 'evil.example' } }, status: 422, code: 'validation', loc: ['body', 'headers', 'Host'] },
  { name: 'headers: unknown endpoint', method: 'GET', path: `${APP}/endpoint/nope/headers`, status: 404, code: 'not_found' },
  { name: 'secret: rotate with a bad key', method: 'POST', path: `${APP}/endpoint/ep-1/secret/rotate`, body: { key: 'whsec_tooshort' }, status: 422, code: 'validation', loc: ['body', 'key'] },
  { name: 'secret: grace period too long', method: 'POST', path: `${APP}/endpoint/ep-1/secret/rotate`, body: { gracePeriodSeconds: 8 * 24 * 3600 }, status: 422, code: 'validation', loc: ['body', 'gracePeriodSeconds'] },
  { name: 'secret: unknown endpoint', method: 'GET', path: `${APP}/endpoint/nope/secret`, status: 404, code: 'not_found' },
  { name: 'stats: unknown endpoint', method: 'GET', path: `${APP}/endpoint/nope/stats`, status: 404, code: 'not_found' },
  { name: 'stats: unknown app', method: 'GET', path: '/api/v1/app/no-such-app/endpoint/ep-1/stats', status: 404, code: 'not_found' },
  { name: 'stats: since not a date', method: 'GET', path: `${APP}/endpoint/ep-1/stats?since=last-week`, status: 422, code: 'validation', loc: ['query', 'since'] },
  { name: 'stats: until not a date', method: 'GET', path: `${APP}/endpoint/ep-1/stats?until=2026-02-30`, status: 422, code: 'validation', loc: ['query', 'until'] },

  // Event types
  { name: 'event type: missing description', method: 'POST', path: '/api/v1/event-type', body: { name: 'x.y' }, status: 422, code: 'validation', loc: ['body', 'description'] },
  { name: 'event type: bad name', method: 'POST', path: '/api/v1/event-type', body: { name: 'user created', description: '' }, status: 422, code: 'validation', loc: ['body', 'name'] },
  { name: 'event type: duplicate', method: 'POST', path: '/api/v1/event-type', body: { name: 'user.created', description: 'again' }, status: 409, code: 'conflict' },
  { name: 'event type: unknown', method: 'GET', path: '/api/v1/event-type/no.such.type', status: 404, code: 'not_found' },
  { name: 'event type: bad name in path', method: 'GET', path: '/api/v1/event-type/bad%20name', status: 422, code: 'validation', loc: ['path', 'event_type_name'] },
  { name: 'event type: PATCH unknown', method: 'PATCH', path: '/api/v1/event-type/no.such.type', body: { description: 'x' }, status: 404, code: 'not_found' },
  { name: 'event type: DELETE unknown', method: 'DELETE', path: '/api/v1/event-type/no.such.type', status: 404, code: 'not_found' },

  // Messages
  { name: 'message: missing eventType', method: 'POST', path: `${APP}/msg`, body: { payload: {} }, status: 422, code: 'validation', loc: ['body', 'eventType'] },
  { name: 'message: missing payload', method: 'POST', path: `${APP}/msg`, body: { eventType: 'a.b' }, status: 422, code: 'validation', loc: ['body', 'payload'] },
  { name: 'message: payload is an array', method: 'POST', path: `${APP}/msg`, body: { eventType: 'a.b', payload: [1, 2] }, status: 422, code: 'validation', loc: ['body', 'payload'] },
  { name: 'message: payload is a string', method: 'POST', path: `${APP}/msg`, body: { eventType: 'a.b', payload: '{"a":1}' }, status: 422, code: 'validation', loc: ['body', 'payload'] },
  { name: 'message: payload is null', method: 'POST', path: `${APP}/msg`, body: { eventType: 'a.b', payload: null }, status: 422, code: 'validation', loc: ['body', 'payload'] },
  { name: 'message: bad event type', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, eventType: 'a b' }, status: 422, code: 'validation', loc: ['body', 'eventType'] },
  { name: 'message: empty eventId', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, eventId: '' }, status: 422, code: 'validation', loc: ['body', 'eventId'] },
  { name: 'message: eventId too long', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, eventId: 'e'.repeat(257) }, status: 422, code: 'validation', loc: ['body', 'eventId'] },
  { name: 'message: eventId shaped like an id', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, eventId: 'msg_abc' }, status: 422, code: 'validation', loc: ['body', 'eventId'] },
  { name: 'message: 11 channels', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, channels: Array.from({ length: 11 }, (_, i) => `c${i}`) }, status: 422, code: 'validation', loc: ['body', 'channels'] },
  { name: 'message: deliverAt (unsupported)', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, deliverAt: '2030-01-01T00:00:00Z' }, status: 422, code: 'validation', loc: ['body', 'deliverAt'] },
  { name: 'message: duplicate eventId', method: 'POST', path: `${APP}/msg`, body: { ...GOOD_MSG, eventId: 'evt-1' }, status: 409, code: 'duplicate_event_id' },
  { name: 'message: unknown app', method: 'POST', path: '/api/v1/app/no-such-app/msg', body: GOOD_MSG, status: 404, code: 'not_found' },
  { name: 'message: creating its app with another uid', method: 'POST', path: '/api/v1/app/new-app/msg', body: { ...GOOD_MSG, application: { name: 'x', uid: 'different' } }, status: 422, code: 'validation', loc: ['body', 'application', 'uid'] },
  { name: 'message: unknown id', method: 'GET', path: `${APP}/msg/msg_000000000000000000000000000`, status: 404, code: 'not_found' },
  { name: 'message: unknown eventId', method: 'GET', path: `${APP}/msg/no-such-event`, status: 404, code: 'not_found' },

  // Attempts
  { name: 'attempt: unknown attempt', method: 'GET', path: `${APP}/msg/evt-1/attempt/atmpt_000000000000000000000000000`, status: 404, code: 'not_found' },
  { name: 'attempt: list for unknown endpoint', method: 'GET', path: `${APP}/attempt/endpoint/nope`, status: 404, code: 'not_found' },
  { name: 'attempt: list for unknown message', method: 'GET', path: `${APP}/attempt/msg/nope`, status: 404, code: 'not_found' },
  { name: 'resend: unknown endpoint', method: 'POST', path: `${APP}/msg/evt-1/endpoint/nope/resend`, status: 404, code: 'not_found' },
  { name: 'resend: unknown message', method: 'POST', path: `${APP}/msg/nope/endpoint/ep-1/resend`, status: 404, code: 'not_found' },

  // Routing and headers
  { name: 'unknown route', method: 'GET', path: '/api/v1/nothing-here', status: 404, code: 'not_found' },
  { name: 'unknown method on a known path', method: 'DELETE', path: '/api/v1/app', status: 405, code: 'method_not_allowed' },
  { name: 'malformed percent-encoding', method: 'GET', path: '/api/v1/app/%E0%A4%A', status: 400, code: 'bad_request' },
  // Fastify's maxParamLength: a 414 with a code of its own (it was `bad_request`, echoing the path).
  { name: 'path segment over 1024 characters', method: 'GET', path: `/api/v1/app/${'a'.repeat(1025)}`, status: 414, code: 'uri_too_long' },
  { name: 'path segment over 1024 characters in a POST', method: 'POST', path: `/api/v1/app/${'a'.repeat(2000)}/msg`, body: GOOD_MSG, status: 414, code: 'uri_too_long' },
  { name: 'Idempotency-Key too long', method: 'POST', path: '/api/v1/app', body: { name: 'x' }, headers: { 'idempotency-key': 'k'.repeat(300) }, status: 422, code: 'validation', loc: ['header', 'idempotency-key'] },
];

/**
 * Writes `head` on a fresh TCP connection to 127.0.0.1 and reads until the server closes it: the
 * final response's status line, headers and body (a 100 Continue before it is skipped).
 */
function rawExchange(port: number, head: string): Promise<{ statusLine: string; status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(head));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const final = data.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, '');
      const split = final.indexOf('\r\n\r\n');
      const top = split < 0 ? final : final.slice(0, split);
      const [statusLine = '', ...headerLines] = top.split('\r\n');
      resolve({ statusLine, status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]), headers: headerLines.join('\r\n'), body: split < 0 ? '' : final.slice(split + 4) });
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer (or the connection stayed open) for 10 s')));
  });
}

/** `depth` nested arrays: [[[...]]]. */
function nest(depth: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < depth; i++) value = [value];
  return value;
}

for (const engine of TEST_ENGINES) describe(`malformed input (${engine})`, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ engine, config: { maxPayloadBytes: MAX_PAYLOAD } });
    const setup: [string, string, unknown][] = [
      ['POST', '/api/v1/app', { name: 'Bad input target', uid: 'bad-app' }],
      ['POST', '/api/v1/app', { name: 'Another', uid: 'other-app' }],
      ['POST', `${APP}/endpoint`, { url: 'https://example.com/ep', uid: 'ep-1' }],
      ['POST', '/api/v1/event-type', { name: 'user.created', description: 'A user was created' }],
      ['POST', `${APP}/msg`, { ...GOOD_MSG, eventId: 'evt-1' }],
    ];
    for (const [method, path, body] of setup) {
      const res = await h.request(method, path, { body });
      assert.ok(res.status === 201 || res.status === 202, `setup ${method} ${path}: ${res.status} ${res.text}`);
    }
  });
  after(async () => {
    await h.close();
  });

  describe('malformed requests', () => {
    it('are each refused with the expected status and code, and change nothing', async () => {
      const snapshot = await h.database.dump();
      assert.ok((snapshot['messages'] ?? []).length === 1, 'the setup wrote what the cases rely on');
      const failures: string[] = [];
      for (const c of CASES) {
        const res = await h.request(c.method, c.path, { ...(c.body !== undefined ? { body: c.body } : {}), ...(c.headers ? { headers: c.headers } : {}) });
        const problems: string[] = [];
        if (res.status !== c.status) problems.push(`status ${res.status}, expected ${c.status}`);
        if (res.body?.code !== c.code) problems.push(`code ${String(res.body?.code)}, expected ${c.code}`);
        if (!(res.headers.get('content-type') ?? '').startsWith('application/json')) problems.push(`content-type ${res.headers.get('content-type')}`);
        if (c.loc) {
          const loc = Array.isArray(res.body?.detail) ? res.body.detail[0]?.loc : undefined;
          if (JSON.stringify(loc) !== JSON.stringify(c.loc)) problems.push(`loc ${JSON.stringify(loc)}, expected ${JSON.stringify(c.loc)}`);
        } else if (typeof res.body?.detail !== 'string' || res.body.detail.length === 0) {
          problems.push(`detail ${JSON.stringify(res.body?.detail)} is not a message`);
        }
        if (problems.length > 0) failures.push(`${c.name}: ${problems.join('; ')} (body ${res.text.slice(0, 300)})`);
      }
      assert.deepEqual(failures, [], `${failures.length} of ${CASES.length} cases misbehaved`);
      assert.deepEqual(await h.database.dump(), snapshot, 'no refused request may write anything');
    });

    it('requests the HTTP server answers by itself get our error shape too, close the connection, and change nothing', async () => {
      const snapshot = await h.database.dump();
      const port = Number(new URL(h.url).port);
      const auth = `authorization: Bearer ${ADMIN_KEY}\r\n`;
      const createApp = (headers: string) => `POST /api/v1/app HTTP/1.1\r\n${headers}${auth}content-type: application/json\r\ncontent-length: 12\r\n\r\n{"name":"x"}`;
      // Raw over TCP: fetch itself refuses to send these. Each connection is closed after the answer.
      const cases = [
        // Refused by Node's parser (the 'clientError' event): no request object exists.
        { name: 'NUL in a header', head: createApp('host: x\r\nidempotency-key: a\u0000b\r\n'), status: 400, code: 'bad_request' },
        { name: 'headers over the size limit', head: `GET /api/v1/app HTTP/1.1\r\nhost: x\r\n${auth}x-padding: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431, code: 'headers_too_large' },
        { name: 'URL over the size limit', head: `GET /api/v1/app?x=${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\n${auth}\r\n`, status: 431, code: 'headers_too_large' },
        { name: 'not HTTP at all', head: 'HELLO\r\n\r\n', status: 400, code: 'bad_request' },
        { name: 'unknown HTTP version', head: `GET /api/v1/app HTTP/9.9\r\nhost: x\r\n${auth}\r\n`, status: 400, code: 'bad_request' },
        { name: 'unknown method', head: `FETCH /api/v1/app HTTP/1.1\r\nhost: x\r\n${auth}\r\n`, status: 400, code: 'bad_request' },
        { name: 'request target that is not a path', head: `GET api/v1/app HTTP/1.1\r\nhost: x\r\n${auth}\r\n`, status: 400, code: 'bad_request' },
        { name: 'space inside the request target', head: `GET /api/v1/a pp HTTP/1.1\r\nhost: x\r\n${auth}\r\n`, status: 400, code: 'bad_request' },
        { name: 'request line with a broken version', head: `GET /api/v1/app HTTP/1.x\r\nhost: x\r\n${auth}\r\n`, status: 400, code: 'bad_request' },
        { name: 'HTTP/2 preface without TLS', head: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', status: 400, code: 'bad_request' },
        { name: 'Content-Length and chunked together', head: `POST /api/v1/app HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: 12\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`, status: 400, code: 'bad_request' },
        // Parsed, but answered by Node without Fastify: they had an empty body (417, 400) or none at all (CONNECT).
        { name: 'Expect other than 100-continue', head: createApp('host: x\r\nexpect: the-unexpected\r\n'), status: 417, code: 'expectation_failed' },
        { name: 'HTTP/1.1 without a Host header', head: createApp(''), status: 400, code: 'bad_request' },
        { name: 'CONNECT', head: 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n', status: 405, code: 'method_not_allowed' },
      ];
      for (const c of cases) {
        const answer = await rawExchange(port, c.head);
        assert.match(answer.statusLine, /^HTTP\/1\.1 \d{3} [A-Z]/, c.name);
        assert.equal(answer.status, c.status, `${c.name}: ${answer.statusLine}`);
        assert.match(answer.headers, /^content-type: application\/json/im, c.name);
        assert.match(answer.headers, /^connection: close/im, c.name);
        assert.equal(Number(/^content-length: (\d+)/im.exec(answer.headers)?.[1]), Buffer.byteLength(answer.body), `${c.name}: a complete response`);
        const body = JSON.parse(answer.body) as { code: string; detail: string };
        assert.equal(body.code, c.code, c.name);
        assert.equal(typeof body.detail, 'string', c.name);
        assert.ok(body.detail.length > 0 && body.detail.length < 200, `${c.name}: ${body.detail}`);
      }
      assert.deepEqual(await h.database.dump(), snapshot, 'no refused request may write anything');
      assert.equal((await h.request('GET', '/api/v1/app')).status, 200, 'and the server goes on serving');
    });

    it('what Node accepted is still served: HTTP/1.0 without Host, and Expect: 100-continue', async () => {
      const port = Number(new URL(h.url).port);
      const auth = `authorization: Bearer ${ADMIN_KEY}\r\n`;
      const old = await rawExchange(port, `GET /api/v1/app HTTP/1.0\r\n${auth}\r\n`);
      assert.equal(old.status, 200, old.statusLine);
      assert.ok(Array.isArray((JSON.parse(old.body) as { data: unknown[] }).data));
      const body = JSON.stringify({ name: 'continued', uid: 'continued-app' });
      const continued = await rawExchange(port, `POST /api/v1/app HTTP/1.1\r\nhost: x\r\n${auth}connection: close\r\nexpect: 100-continue\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      assert.equal(continued.status, 201, `${continued.statusLine} ${continued.body}`);
      assert.equal((await h.request('GET', '/api/v1/app/continued-app')).status, 200);
      assert.equal((await h.request('DELETE', '/api/v1/app/continued-app')).status, 204);
    });

    it('a 414 names the limit, not the whole path', async () => {
      const res = await h.request('GET', `/api/v1/app/${'u'.repeat(5000)}/endpoint`);
      assert.equal(res.status, 414);
      assert.equal(res.body.code, 'uri_too_long');
      assert.match(res.body.detail, /1024/);
      assert.ok(!res.body.detail.includes('uuuu'), 'the path is not echoed back');
    });

    it('counts nesting outside strings only, up to the limit', async () => {
      const inString = '['.repeat(500) + '\\"{' + ']'.repeat(500);
      const ok = await h.request('POST', `${APP}/msg`, { body: { eventType: 'deep.ok', payload: { text: inString, nested: nest(MAX_JSON_DEPTH - 3) } } });
      assert.equal(ok.status, 202, ok.text);
      assert.deepEqual((await h.request('GET', `${APP}/msg/${ok.body.id}`)).body.payload.text, inString);
      const over = await h.request('POST', `${APP}/msg`, { body: { eventType: 'deep.no', payload: { nested: nest(MAX_JSON_DEPTH - 1) } } });
      assert.equal(over.status, 400);
      assert.equal(over.body.code, 'invalid_json');
    });

    it('a 405 names the allowed methods', async () => {
      const res = await h.request('PATCH', '/api/v1/event-type');
      assert.equal(res.status, 405);
      assert.equal(res.headers.get('allow'), 'GET, HEAD, POST');
    });

    it('refuses http endpoint URLs when HTTPS is required', async () => {
      const strict = await startHarness({ engine, config: { requireHttps: true } });
      try {
        await strict.request('POST', '/api/v1/app', { body: { name: 'Strict', uid: 'strict' } });
        const before = await strict.database.dump();
        const http = await strict.request('POST', '/api/v1/app/strict/endpoint', { body: { url: 'http://example.com/x' } });
        assert.equal(http.status, 422);
        assert.deepEqual(http.body.detail[0].loc, ['body', 'url']);
        const patched = await strict.request('PUT', '/api/v1/app/strict/endpoint/new-one', { body: { url: 'http://example.com/x' } });
        assert.equal(patched.status, 422);
        assert.deepEqual(await strict.database.dump(), before);
        assert.equal((await strict.request('POST', '/api/v1/app/strict/endpoint', { body: { url: 'https://example.com/x' } })).status, 201);
      } finally {
        await strict.close();
      }
    });
  });
});
