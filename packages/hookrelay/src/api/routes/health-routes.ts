import { Type } from 'typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { SERVER_ROLES, type ServerRole } from '../../config/config.js';
import { HookrelayError } from '../../core/errors.js';
import type { ApiDeps } from '../build-app.js';
import { HttpError, StringEnum } from '../schemas/common.js';

/** What /health/ready reports besides the database: the parts this process runs. */
export interface ProcessStatus {
  role: ServerRole;
  /** Parts the role cannot do its work without (its dispatcher): true while running. */
  required: Record<string, boolean>;
  /** Parts whose loss only slows it down (the wake-up connection: the idle poll stands in): reported, never unready. */
  optional: Record<string, boolean>;
}

/**
 * A database that does not answer within this time counts as down: a probe that hangs (a
 * connection attempt into a dropped network) is no better than one that fails, and orchestrators
 * give up on probes after a few seconds anyway.
 */
const PING_TIMEOUT_MS = 3_000;

const HealthOut = Type.Object({ status: Type.Literal('ok') }, { title: 'HealthOut' });

const ReadinessOut = Type.Object(
  {
    status: StringEnum(['ready', 'unavailable'] as const),
    role: StringEnum(SERVER_ROLES),
    checks: Type.Record(Type.String(), StringEnum(['up', 'down'] as const), { description: 'database, dispatcher (roles worker and all), notifications (PostgreSQL wake-ups; reported, never makes the process unready)' }),
    code: Type.Optional(Type.Literal('unavailable')),
    detail: Type.Optional(Type.String()),
  },
  { title: 'ReadinessOut' },
);

type HealthDeps = Pick<ApiDeps, 'storage' | 'processStatus'>;

/**
 * Liveness that proves the database answers, and readiness that adds the parts this role runs;
 * public, so orchestrators need no key. Both are served by every role (a worker serves them on its
 * small operations listener).
 */
export const healthRoutes: FastifyPluginAsyncTypebox<{ deps: HealthDeps }> = async (app, { deps }) => {
  const databaseAnswers = async (request: FastifyRequest): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    });
    try {
      await Promise.race([deps.storage.ping(), timeout]);
      return true;
    } catch (error) {
      request.log.warn({ err: error }, 'health check failed: the database does not answer');
      return false;
    } finally {
      clearTimeout(timer);
    }
  };

  const live = async (request: FastifyRequest) => {
    if (!(await databaseAnswers(request))) throw new HookrelayError('unavailable', 'The database does not answer');
    return { status: 'ok' as const };
  };
  const liveSchema = (operationId: string) => ({ operationId, tags: ['Health'], summary: 'Check that the server and its database answer', security: [], response: { 200: HealthOut, 503: HttpError } });
  app.get('/health', { schema: liveSchema('health') }, live);
  app.get('/api/v1/health', { schema: liveSchema('v1.health.get') }, live);

  const ready = async (request: FastifyRequest, reply: FastifyReply) => {
    const status = deps.processStatus?.() ?? { role: 'all', required: {}, optional: {} };
    const required: Record<string, boolean> = { database: await databaseAnswers(request), ...status.required };
    const checks: Record<string, 'up' | 'down'> = {};
    for (const [name, up] of Object.entries({ ...required, ...status.optional })) checks[name] = up ? 'up' : 'down';
    const down = Object.keys(required).filter((name) => !required[name]);
    if (down.length === 0) return reply.code(200).send({ status: 'ready', role: status.role, checks });
    return reply.code(503).send({ status: 'unavailable', code: 'unavailable', detail: `Not ready: ${down.join(' and ')} ${down.length > 1 ? 'are' : 'is'} down`, role: status.role, checks });
  };
  const readySchema = (operationId: string) => ({
    operationId,
    tags: ['Health'],
    summary: 'Check that this process can do its work',
    description: 'Ready when the database answers and, in roles worker and all, the dispatcher runs; 503 with the checks that are down otherwise.',
    security: [],
    response: { 200: ReadinessOut, 503: ReadinessOut },
  });
  app.get('/health/ready', { schema: readySchema('health.ready') }, ready);
  app.get('/api/v1/health/ready', { schema: readySchema('v1.health.ready') }, ready);
};
