import { Agent, errors, type Dispatcher } from 'undici';
import type { Cidr } from './ssrf/cidr.js';
import { createGuardedConnector, isSsrfBlocked } from './ssrf/guarded-connector.js';

/** Responses are kept for the attempt log up to this size (as Svix: 20 KB). */
export const MAX_LOGGED_RESPONSE_BYTES = 20 * 1024;

export interface SendResult {
  /** 0 when no HTTP response was received. */
  statusCode: number;
  /** The response body (cut) or, without a response, the reason. */
  body: string;
  durationMs: number;
  /** Retry-After of a 429/503 response, in ms. */
  retryAfter: string | undefined;
  /** Stable code of a failure without a response: UND_ERR_* from undici, HOOKRELAY_SSRF_BLOCKED, ... */
  errorCode: string | null;
}

export interface WebhookSenderOptions {
  timeoutMs: number;
  ssrfAllow: readonly Cidr[];
}

/**
 * Sends one webhook request over an undici Agent (keep-alive, one pool per origin), through its
 * `dispatch` handler API: the response is collected straight from the parser's chunks. undici's
 * `request` wraps each response in a Readable stream and an async iterator, which cost more CPU
 * than the rest of the request on the client side (bench: about 60 vs 35 us per request).
 * Redirects are not followed: a 3xx is a failed attempt, as the receiver did not take the event.
 */
export class WebhookSender {
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  /** Endpoint URLs split into what `dispatch` takes; an endpoint sends to the same URL many times. */
  readonly #targets = new Map<string, { origin: string; path: string }>();

  constructor(options: WebhookSenderOptions) {
    this.#timeoutMs = options.timeoutMs;
    // timeoutMs is one deadline for the whole request, kept by ResponseCollector. undici's per-phase
    // timeouts stay as backstops (they start later, so the deadline fires first); the connect
    // timeout also ends a socket still connecting at the deadline, which no request holds yet.
    this.#agent = new Agent({
      connect: createGuardedConnector({ allow: options.ssrfAllow, timeoutMs: options.timeoutMs }),
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  send(url: string, headers: Record<string, string>, body: string): Promise<SendResult> {
    const started = performance.now();
    return new Promise<SendResult>((resolve) => {
      // Starts the request's deadline before dispatch, which may already connect or fail.
      const collector = new ResponseCollector(started, this.#timeoutMs, resolve);
      try {
        const { origin, path } = this.#target(url);
        this.#agent.dispatch({ origin, path, method: 'POST', headers, body, headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs }, collector);
      } catch (error) {
        collector.fail(error);
      }
    });
  }

  #target(url: string): { origin: string; path: string } {
    let target = this.#targets.get(url);
    if (!target) {
      const parsed = new URL(url);
      target = { origin: parsed.origin, path: parsed.pathname + parsed.search };
      if (this.#targets.size >= 10_000) this.#targets.clear();
      this.#targets.set(url, target);
    }
    return target;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/**
 * undici dispatch handler: keeps the status, Retry-After and up to MAX_LOGGED_RESPONSE_BYTES of
 * the body, and settles once. Past the limit the rest is not needed; dropping the connection is
 * cheaper than reading a huge body.
 *
 * It also holds the request's deadline: the whole response (connect, headers, and the body up to
 * the cut) must arrive within timeoutMs of dispatch. undici's own headersTimeout and bodyTimeout
 * cannot be that: each phase gets its own budget and bodyTimeout is an idle timeout between
 * chunks, so a receiver dripping a byte now and then held a request (and its lease) forever.
 */
class ResponseCollector implements Dispatcher.DispatchHandler {
  readonly #started: number;
  readonly #resolve: (result: SendResult) => void;
  readonly #deadline: NodeJS.Timeout | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  #settled = false;
  #statusCode = 0;
  #retryAfter: string | undefined;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(started: number, timeoutMs: number, resolve: (result: SendResult) => void) {
    this.#started = started;
    this.#resolve = resolve;
    // 0 keeps what it meant to undici's timeouts before: no limit.
    if (timeoutMs > 0) this.#deadline = setTimeout(ResponseCollector.#expire, timeoutMs, this, timeoutMs);
  }

  /** undici also tells this handler API from its legacy one by the presence of this method. */
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // The deadline passed while connecting and the attempt is already a failure: do not send it.
    if (this.#settled) {
      controller.abort(new errors.RequestAbortedError('the request deadline passed before a connection was ready'));
      return;
    }
    // Called again if undici retries the request on a fresh connection: start over.
    this.#chunks = [];
    this.#size = 0;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[]>): void {
    // Also called for 1xx informational responses; the last call is the final response.
    this.#statusCode = statusCode;
    const retryAfter = headers['retry-after'];
    this.#retryAfter = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size >= MAX_LOGGED_RESPONSE_BYTES) {
      this.#succeed();
      controller.abort(new Error('response body past the logged size; not read further'));
    }
  }

  onResponseEnd(): void {
    this.#succeed();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.fail(error);
  }

  fail(error: unknown): void {
    if (this.#settled) return;
    this.#settle();
    this.#resolve({ statusCode: 0, durationMs: this.#elapsed(), retryAfter: undefined, ...describeFailure(error) });
  }

  #succeed(): void {
    if (this.#settled) return;
    this.#settle();
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#resolve({
      statusCode: this.#statusCode,
      body: storableText(body.subarray(0, MAX_LOGGED_RESPONSE_BYTES).toString('utf8')),
      durationMs: this.#elapsed(),
      retryAfter: this.#retryAfter,
      errorCode: null,
    });
  }

  /** Every way of settling passes here, so the deadline never outlives the attempt. */
  #settle(): void {
    this.#settled = true;
    clearTimeout(this.#deadline);
  }

  /**
   * The deadline: fails the attempt with the code undici gives a timeout in the phase the request
   * is in (so codes stay what they were), and aborts the request, which destroys its connection.
   * Before a connection is ready there is nothing to abort yet: onRequestStart does it if one comes,
   * and the connector's own timeout ends a connect that hangs.
   */
  static #expire(this: void, collector: ResponseCollector, timeoutMs: number): void {
    const message = `no complete response within ${timeoutMs} ms`;
    const error =
      collector.#controller === undefined
        ? new errors.ConnectTimeoutError(message)
        : collector.#statusCode < 200
          ? new errors.HeadersTimeoutError(message)
          : new errors.BodyTimeoutError(message);
    collector.fail(error);
    collector.#controller?.abort(error);
  }

  #elapsed(): number {
    return Math.round(performance.now() - this.#started);
  }
}

/**
 * A receiver's body as text both engines store: PostgreSQL refuses U+0000 in text, and a binary
 * reply would otherwise fail the attempt's write (and its whole batch, on every retry).
 */
function storableText(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

function describeFailure(error: unknown): { body: string; errorCode: string } {
  const ssrf = isSsrfBlocked(error);
  if (ssrf) return { body: `${ssrf.code}: ${ssrf.message}`, errorCode: ssrf.code };
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code ?? err.cause?.code ?? 'HOOKRELAY_SEND_FAILED';
  const reason = err.cause?.message && err.cause.message !== err.message ? `${err.message}: ${err.cause.message}` : (err.message ?? String(error));
  return { body: `${code}: ${reason}`, errorCode: code };
}
