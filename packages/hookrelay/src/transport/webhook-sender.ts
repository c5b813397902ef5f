import { Agent, type Dispatcher } from 'undici';
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
      const collector = new ResponseCollector(started, resolve);
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
 */
class ResponseCollector implements Dispatcher.DispatchHandler {
  readonly #started: number;
  readonly #resolve: (result: SendResult) => void;
  #settled = false;
  #statusCode = 0;
  #retryAfter: string | undefined;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(started: number, resolve: (result: SendResult) => void) {
    this.#started = started;
    this.#resolve = resolve;
  }

  /** undici also tells this handler API from its legacy one by the presence of this method. */
  onRequestStart(): void {
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
    this.#settled = true;
    this.#resolve({ statusCode: 0, durationMs: this.#elapsed(), retryAfter: undefined, ...describeFailure(error) });
  }

  #succeed(): void {
    if (this.#settled) return;
    this.#settled = true;
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#resolve({
      statusCode: this.#statusCode,
      body: body.subarray(0, MAX_LOGGED_RESPONSE_BYTES).toString('utf8'),
      durationMs: this.#elapsed(),
      retryAfter: this.#retryAfter,
      errorCode: null,
    });
  }

  #elapsed(): number {
    return Math.round(performance.now() - this.#started);
  }
}

function describeFailure(error: unknown): { body: string; errorCode: string } {
  const ssrf = isSsrfBlocked(error);
  if (ssrf) return { body: `${ssrf.code}: ${ssrf.message}`, errorCode: ssrf.code };
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code ?? err.cause?.code ?? 'HOOKRELAY_SEND_FAILED';
  const reason = err.cause?.message && err.cause.message !== err.message ? `${err.message}: ${err.cause.message}` : (err.message ?? String(error));
  return { body: `${code}: ${reason}`, errorCode: code };
}
