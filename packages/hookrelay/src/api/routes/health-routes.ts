import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HookrelayError } from '../../core/errors.js';
import type { ApiDeps } from '../build-app.js';
import { HttpError } from '../schemas/common.js';

const HealthOut = Type.Object({ status: Type.Literal('ok') }, { title: 'HealthOut' });

/** Liveness that proves the database answers; public, so orchestrators need no key. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ deps: ApiDeps }> = async (app, { deps }) => {
  const check = async (request: FastifyRequest) => {
    try {
      await deps.storage.ping();
    } catch (error) {
      request.log.warn({ err: error }, 'health check failed: the database does not answer');
      throw new HookrelayError('unavailable', 'The database does not answer');
    }
    return { status: 'ok' as const };
  };
  const schema = (operationId: string) => ({ operationId, tags: ['Health'], summary: 'Check that the server and its database answer', security: [], response: { 200: HealthOut, 503: HttpError } });

  app.get('/health', { schema: schema('health') }, check);
  app.get('/api/v1/health', { schema: schema('v1.health.get') }, check);
};
