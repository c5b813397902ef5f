import { Agent, request } from 'undici';
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
 * Sends one webhook request over undici's pooled `request` (keep-alive, one pool per origin).
 * Redirects are not followed: a 3xx is a failed attempt, as the receiver did not take the event.
 */
export class WebhookSender {
  readonly #agent: Agent;
  readonly #timeoutMs: number;

  constructor(options: WebhookSenderOptions) {
    this.#timeoutMs = options.timeoutMs;
    this.#agent = new Agent({
      connect: createGuardedConnector({ allow: options.ssrfAllow, timeoutMs: options.timeoutMs }),
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  async send(url: string, headers: Record<string, string>, body: string): Promise<SendResult> {
    const started = performance.now();
    try {
      const response = await request(url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.#agent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      const text = await readCapped(response.body, MAX_LOGGED_RESPONSE_BYTES);
      const retryAfter = response.headers['retry-after'];
      return {
        statusCode: response.statusCode,
        body: text,
        durationMs: Math.round(performance.now() - started),
        retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter,
        errorCode: null,
      };
    } catch (error) {
      return { statusCode: 0, durationMs: Math.round(performance.now() - started), retryAfter: undefined, ...describeFailure(error) };
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) {
      // The rest is not needed; dropping the socket is cheaper than draining a huge body.
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

function describeFailure(error: unknown): { body: string; errorCode: string } {
  const ssrf = isSsrfBlocked(error);
  if (ssrf) return { body: `${ssrf.code}: ${ssrf.message}`, errorCode: ssrf.code };
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code ?? err.cause?.code ?? 'HOOKRELAY_SEND_FAILED';
  const reason = err.cause?.message && err.cause.message !== err.message ? `${err.message}: ${err.cause.message}` : (err.message ?? String(error));
  return { body: `${code}: ${reason}`, errorCode: code };
}
