import { hash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HookrelayError } from '../../core/errors.js';
import type { IdempotentResponse } from '../../ingest/message-ingestor.js';
import type { Message } from '../../storage/models.js';
import type { IdempotencyStore } from '../../storage/storage.js';

interface Reservation {
  scope: string;
  key: string;
  /** Set by a route that had the response stored in its own transaction: onSend must not store it again. */
  storedByRoute: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: Reservation | null;
  }
}

/** Longest accepted Idempotency-Key; longer ones are a client mistake, not a key. */
const MAX_KEY_LENGTH = 256;

export interface IdempotencyOptions {
  store: IdempotencyStore;
  ttlMs: number;
}

/**
 * `Idempotency-Key` on POST requests, as Svix and Stripe do it. The key is reserved (scoped to the
 * caller's API key) after validation and before the handler; the response, success or 4xx, is
 * stored when it is sent and replayed for the same request; a 5xx frees the key so the client can
 * retry. The same key with another request is 422, and while the first is running, 409.
 *
 * A route may store the response itself, in the transaction that does its work (message create
 * does, so a crash can never keep the message and lose the response or the reverse): it calls
 * `idempotentResponseFor` to get what the ingestor needs, and `markStoredByRoute` once committed.
 */
export function installIdempotency(app: FastifyInstance, options: IdempotencyOptions): void {
  app.decorateRequest('idempotency', null);

  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method !== 'POST') return;
    const key = headerValue(request.headers['idempotency-key']);
    if (key === null || request.apiKeyHash === null) return;
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new HookrelayError('validation', [{ loc: ['header', 'idempotency-key'], msg: `must be 1 to ${MAX_KEY_LENGTH} characters`, type: 'value_error' }]);
    }
    const scope = request.apiKeyHash;
    const hash = hashRequest(request);
    const stored = await options.store.reserve(scope, key, hash, Date.now(), options.ttlMs);
    if (stored === null) {
      request.idempotency = { scope, key, storedByRoute: false };
      return;
    }
    if (stored.requestHash !== hash) {
      throw new HookrelayError('idempotency_mismatch', 'This Idempotency-Key was already used with a different request');
    }
    if (stored.statusCode === null) {
      throw new HookrelayError('idempotency_conflict', 'A request with this Idempotency-Key is still being processed; retry later');
    }
    reply.header('idempotent-replayed', 'true');
    reply.code(stored.statusCode);
    if (stored.body === null || stored.body === '') return reply.send();
    return reply.type('application/json; charset=utf-8').send(stored.body);
  });

  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const reservation = request.idempotency;
    if (reservation === null) return payload;
    request.idempotency = null;
    try {
      if (reply.statusCode >= 500 || (typeof payload !== 'string' && payload !== undefined && payload !== null)) {
        await options.store.abandon(reservation.scope, reservation.key);
      } else if (!reservation.storedByRoute) {
        await options.store.complete(reservation.scope, reservation.key, reply.statusCode, (payload as string | null | undefined) ?? '');
      }
    } catch (error) {
      // The work is done and the client should hear about it; the key stays reserved and a
      // retry is answered 409 until the reservation counts as stale.
      request.log.error({ err: error }, 'could not record the idempotent response');
    }
    return payload;
  });
}

/** What MessageAccepter.accept needs to store the response in the message's own transaction. */
export function idempotentResponseFor(request: FastifyRequest, render: (message: Message) => { statusCode: number; body: string }): IdempotentResponse | null {
  const reservation = request.idempotency;
  if (reservation === null) return null;
  return { scope: reservation.scope, key: reservation.key, render };
}

/** Call once the route's transaction has committed the stored response. */
export function markStoredByRoute(request: FastifyRequest): void {
  if (request.idempotency) request.idempotency.storedByRoute = true;
}

/** Method, URL with query, and the validated body: the same request hashes the same. */
export function requestHash(method: string, url: string, body: unknown): string {
  const text = body === undefined ? '' : JSON.stringify(body);
  return hash('sha256', `${method}\n${url}\n${text}`, 'hex');
}

function hashRequest(request: FastifyRequest): string {
  return requestHash(request.method, request.url, request.body);
}

function headerValue(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? (value[0] ?? null) : value;
}
