import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HookrelayError, type ValidationIssue } from '../../core/errors.js';
import { isDatabaseUnavailable } from '../../storage/database-unavailable.js';
import { isUnstorableText } from '../../storage/stores/constraint-violation.js';
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
};

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

/** Maps any error to `{code, detail}`. Only HookrelayErrors and Fastify's own 4xx errors say what went wrong. */
export function toApiError(error: unknown): HookrelayError {
  if (error instanceof HookrelayError) return error;
  if (isUnstorableText(error)) return new HookrelayError('bad_request', 'Text fields cannot contain the NUL character (U+0000)');
  if (isDatabaseUnavailable(error)) return new HookrelayError('unavailable', 'The database cannot be reached now; retry later (a retry with the same Idempotency-Key or eventId cannot create a second message)');
  const fastifyError = error as Partial<FastifyError> & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    return new HookrelayError('validation', validationIssues(fastifyError.validationContext ?? 'body', fastifyError.validation));
  }
  const mapped = fastifyError.code ? FRAMEWORK_CODES[fastifyError.code] : undefined;
  if (mapped) return new HookrelayError(mapped, fastifyError.message);
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // A client error Fastify raised that we have no name for: keep its status, never make it a 500.
    return Object.assign(new HookrelayError('bad_request', fastifyError.message ?? 'Bad request'), { status });
  }
  return new HookrelayError('internal', 'An unexpected error occurred; it has been logged');
}

/**
 * Requests Node's HTTP parser refuses (a NUL or other forbidden byte in a header, headers over the
 * size limit, a request that does not arrive in time) never reach Fastify's routing or error
 * handler. Fastify answers them with its own body shape; this answers them in ours, with a stable
 * code, and closes the connection as Node does (its state is unknown after a parse error).
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  // A reset connection is already gone: there is no one to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const apiError =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new HookrelayError('request_timeout', 'The request was not received completely in time')
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new HookrelayError('headers_too_large', 'The request headers exceed the size limit')
        : new HookrelayError('bad_request', `The HTTP request is malformed (${error.code ?? 'parse error'}), e.g. a header holds a forbidden character such as NUL`);
  const body = JSON.stringify(apiError.toJSON());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
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
    const apiError = toApiError(error);
    if (apiError.status >= 500 && apiError.code === 'internal') request.log.error({ err: error }, 'request failed');
    else if (isDatabaseUnavailable(error)) request.log.warn({ err: error }, 'request failed: the database cannot be reached');
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
