import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HookrelayError } from '../../core/errors.js';
import { sendApiError } from './error-handler.js';

/**
 * Requests that Node's HTTP server answers by itself, before Fastify sees them, answered in our
 * shape instead: JSON `{code, detail}` with a stable code, and the status Node uses where it
 * answers at all.
 *
 * - Requests its parser refuses (a malformed request line, a forbidden byte in a header, a request
 *   line and headers over the size limit, a request that does not arrive in time): answerClientError,
 *   Fastify's clientErrorHandler (Node's 'clientError' event).
 * - An `Expect` header other than `100-continue`: Node answered 417 with an empty body
 *   ('checkExpectation' event).
 * - A `CONNECT` request: Node closed the connection without a word ('connect' event).
 * - An HTTP/1.1 request without a `Host` header: Node answered 400 with an empty body. Its check
 *   is turned off (requireHostHeader: false, see build-app.ts) and made here instead, in a hook.
 *
 * Where no request could be parsed, or the connection was taken over from the HTTP server
 * (CONNECT), there is no response object: a whole HTTP/1.1 response is written to the socket,
 * announcing `connection: close`, and the socket is destroyed, as Node itself does. None of these
 * requests reaches a route, so none can write anything.
 */
export function installHttpEdge(app: FastifyInstance): void {
  const server: Server = app.server;
  server.on('checkExpectation', answerUnmetExpectation);
  server.on('connect', refuseConnect);
  installHostHeaderCheck(app);
}

/** Network failures: the peer is gone or going, so there is no one to answer. */
const CONNECTION_GONE = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** What the parser's error code says was wrong, for the detail; anything else gets a generic one. */
const PARSE_ERROR_DETAILS: Record<string, string> = {
  HPE_INVALID_METHOD: 'The request line does not start with a known HTTP method',
  HPE_INVALID_URL: 'The request target is not a valid path',
  HPE_INVALID_VERSION: 'The request line does not end with HTTP/1.0 or HTTP/1.1',
  HPE_PAUSED_H2_UPGRADE: 'HTTP/2 without TLS is not served here; use HTTP/1.1',
  HPE_INVALID_CONTENT_LENGTH: 'The Content-Length header is not a valid length',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'Content-Length and Transfer-Encoding: chunked cannot both be sent',
  HPE_INVALID_TRANSFER_ENCODING: 'The Transfer-Encoding header is invalid (only chunked, last, is understood)',
  HPE_INVALID_CHUNK_SIZE: 'A chunk of the chunked body has an invalid size',
  HPE_INVALID_EOF_STATE: 'The connection was closed before the request was complete',
};

/** The answer to a request the parser refused, or null when the connection is gone. */
export function clientErrorAnswer(error: { code?: string }): HookrelayError | null {
  const code = error.code ?? 'parse error';
  if (CONNECTION_GONE.has(code)) return null;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new HookrelayError('request_timeout', 'The request was not received completely in time');
  // Node counts the request line (and so the URL) together with the headers: it cannot tell which
  // of them was too long, so neither can we (a long path segment that fits is 414 uri_too_long).
  if (code === 'HPE_HEADER_OVERFLOW') return new HookrelayError('headers_too_large', `The request line (URL) and headers together exceed ${maxHeaderSize} bytes`);
  const detail = PARSE_ERROR_DETAILS[code] ?? 'The HTTP request is malformed, e.g. a header holds a forbidden character such as NUL';
  return new HookrelayError('bad_request', `${detail} (${code})`);
}

/**
 * Fastify's clientErrorHandler, bound to the Fastify instance: requests Node's HTTP parser refuses
 * never reach Fastify's routing or error handler. Answers in our shape and closes the connection,
 * as Node does (its state is unknown after a parse error).
 */
export function answerClientError(this: FastifyInstance | undefined, error: Error & { code?: string }, socket: Duplex): void {
  // A reset connection is already gone: there is no one to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const answer = clientErrorAnswer(error);
  this?.log.debug({ code: error.code, status: answer?.status }, 'refused a request the HTTP parser could not read');
  // A response already under way on this connection (the error is in a request pipelined behind
  // it) cannot be followed by another one: the bytes would land inside the first.
  const current = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (answer && socket.writable && !current?.headersSent) writeRawError(socket, answer);
  socket.destroy(error);
}

/** A whole HTTP/1.1 error response written straight to a socket, which the caller then closes. */
export function writeRawError(socket: Duplex, error: HookrelayError, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(error.toJSON());
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

/**
 * An `Expect` header other than `100-continue` (which Node answers with 100 Continue, and which
 * then reaches Fastify as usual): 417. The body, if the client sends one anyway, is never read;
 * the connection closes after the answer, so no unread bytes can be taken for a next request.
 */
export function answerUnmetExpectation(_request: IncomingMessage, response: ServerResponse): void {
  const error = new HookrelayError('expectation_failed', 'The only expectation supported is "Expect: 100-continue"; send that or no Expect header');
  const body = JSON.stringify(error.toJSON());
  response.writeHead(error.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  response.end(body);
}

/**
 * CONNECT asks for a tunnel, which only a proxy makes: 405, with an empty Allow (no method is
 * allowed on a CONNECT target, a host and port). Node hands the socket over, without its own error
 * listener: one is added first, so a peer that resets the connection cannot crash the process.
 */
export function refuseConnect(_request: IncomingMessage, socket: Duplex): void {
  socket.on('error', () => {});
  if (socket.writable) writeRawError(socket, new HookrelayError('method_not_allowed', 'CONNECT is not supported: Hookrelay is not a proxy'), { Allow: '' });
  socket.destroy();
}

/**
 * HTTP/1.1 requires a Host header (RFC 9112, section 3.2): a request without one is 400, as Node
 * answered it, and the connection closes, as Node closed it. HTTP/1.0 requests need none. An
 * onRequest hook registered before authentication, so the caller learns what is wrong first.
 */
export function installHostHeaderCheck(app: FastifyInstance): void {
  // A callback hook, not an async one: it runs on every request, and an async hook costs a promise each.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (request.raw.headers.host !== undefined || request.raw.httpVersion !== '1.1') return done();
    reply.header('connection', 'close');
    void sendApiError(reply, new HookrelayError('bad_request', 'An HTTP/1.1 request must carry a Host header'));
  });
}
