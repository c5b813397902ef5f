import type { IncomingMessage } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HookrelayError, type ErrorCode, type ValidationIssue } from '../../core/errors.js';
import { isDatabaseUnavailable } from '../../storage/database-unavailable.js';
import { isUnstorableText } from '../../storage/stores/constraint-violation.js';
import { MAX_PATH_PARAM_LENGTH } from '../schemas/common.js';
import type { RouteTable } from './route-table.js';

/** Fastify's name for each request part, as Svix's `loc` spells it. */
const LOCATION: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** Fastify's own 4xx errors, by code, as our stable codes. */
const FRAMEWORK_CODES: Record<string, HookrelayError['code']> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_BAD_URL: 'bad_request',
  FST_ERR_MAX_PARAM_LENGTH: 'uri_too_long',
};

/** Our own detail for Fastify errors whose message would echo the whole (long) path back. */
const FRAMEWORK_DETAILS: Record<string, string> = {
  FST_ERR_MAX_PARAM_LENGTH: `A path segment is longer than ${MAX_PATH_PARAM_LENGTH} characters (ids and uids have at most 256)`,
};

/**
 * A client error Fastify raises that FRAMEWORK_CODES does not name: the code of its status where
 * one code has that status, so that, say, a 414 never comes back as `bad_request`.
 */
const CODE_OF_STATUS: Partial<Record<number, ErrorCode>> = {
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  417: 'expectation_failed',
  431: 'headers_too_large',
};

/**
 * Codes a request's body stream fails with when its client goes away before the body is complete:
 * Node ends the IncomingMessage with ECONNRESET "aborted"; streams report a premature close. The
 * same network codes come from a database connection (isDatabaseUnavailable), so they count as
 * the client's only when the request's own stream or socket has ended; without the request at
 * hand, only Node's "aborted" does. (A database error that coincides with its client leaving is
 * then logged as the abort: no one is left to answer, and the next request meets the outage.)
 */
const CLIENT_ABORT_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/** A client that closed its connection mid-request: routine, never a database outage. */
export function isClientAbort(error: unknown, raw?: IncomingMessage): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !CLIENT_ABORT_CODES.has(code)) return false;
  if (raw === undefined) return code === 'ECONNRESET' && message === 'aborted';
  return raw.readableAborted || raw.socket?.destroyed === true;
}

interface AjvIssue {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Converts Ajv's issues to Svix's HTTPValidationError items ({loc, msg, type}). */
export function validationIssues(context: string, issues: readonly AjvIssue[]): ValidationIssue[] {
  const root = LOCATION[context] ?? context;
  return issues.map((issue) => {
    const loc = [root, ...(issue.instancePath ?? '').split('/').filter(Boolean).map(decodePointer)];
    if (issue.keyword === 'required' && typeof issue.params?.['missingProperty'] === 'string') {
      loc.push(issue.params['missingProperty']);
      return { loc, msg: 'field required', type: 'value_error.missing' };
    }
    const type = issue.keyword === 'type' ? `type_error.${String(issue.params?.['type'] ?? 'invalid')}` : `value_error.${issue.keyword ?? 'invalid'}`;
    return { loc, msg: issue.message ?? 'invalid value', type };
  });
}

function decodePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * Maps any error to `{code, detail}`. Only HookrelayErrors and Fastify's own 4xx errors say what
 * went wrong. `raw`, the request the error arose in, tells a client's abort from a database outage
 * (both can carry ECONNRESET); the abort is checked first.
 */
export function toApiError(error: unknown, raw?: IncomingMessage): HookrelayError {
  if (error instanceof HookrelayError) return error;
  if (isClientAbort(error, raw)) return new HookrelayError('bad_request', 'The connection closed before the request was complete');
  if (isUnstorableText(error)) return new HookrelayError('bad_request', 'Text fields cannot contain the NUL character (U+0000)');
  if (isDatabaseUnavailable(error)) return new HookrelayError('unavailable', 'The database cannot be reached now; retry later (a retry with the same Idempotency-Key or eventId cannot create a second message)');
  const fastifyError = error as Partial<FastifyError> & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    return new HookrelayError('validation', validationIssues(fastifyError.validationContext ?? 'body', fastifyError.validation));
  }
  const mapped = fastifyError.code ? FRAMEWORK_CODES[fastifyError.code] : undefined;
  if (mapped) return new HookrelayError(mapped, FRAMEWORK_DETAILS[fastifyError.code!] ?? fastifyError.message);
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // A client error Fastify raised that we have no name for: keep its status, never make it a 500.
    const byStatus = CODE_OF_STATUS[status];
    if (byStatus) return new HookrelayError(byStatus, fastifyError.message || undefined);
    return Object.assign(new HookrelayError('bad_request', fastifyError.message ?? 'Bad request'), { status });
  }
  return new HookrelayError('internal', 'An unexpected error occurred; it has been logged');
}

export function sendApiError(reply: FastifyReply, error: HookrelayError): FastifyReply {
  return reply.code(error.status).type('application/json; charset=utf-8').send(JSON.stringify(error.toJSON()));
}

/**
 * Every error leaves as JSON `{code, detail}`. Unknown paths are 404 `not_found`; a known path
 * with a method it does not support is 405 `method_not_allowed` with an Allow header, as Svix's
 * router answers. Unexpected errors are logged and answered with a generic 500, never the message.
 */
export function installErrorHandling(app: FastifyInstance, routes: RouteTable): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const apiError = toApiError(error, request.raw);
    // A client that went away mid-request (its body cut short) is routine, whatever its error's
    // code has in common with a lost database connection: logged at debug, never as an outage.
    // The answer goes nowhere, but sending it lets Fastify finish the request as usual.
    if (isClientAbort(error, request.raw)) request.log.debug({ code: (error as { code?: string }).code }, 'the client closed the connection before its request was complete');
    else if (apiError.status >= 500 && apiError.code === 'internal') request.log.error({ err: error }, 'request failed');
    else if (apiError.code === 'unavailable' && isDatabaseUnavailable(error)) request.log.warn({ err: error }, 'request failed: the database cannot be reached');
    return sendApiError(reply, apiError);
  });

  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const allowed = routes.allowedMethods(request.url);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendApiError(reply, new HookrelayError('method_not_allowed', `${request.method} is not allowed here; use ${allowed.join(', ')}`));
    }
    return sendApiError(reply, new HookrelayError('not_found', `No route ${request.method} ${request.url.split('?')[0]}`));
  });
}
