import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../build-app.js';
import { HttpError } from '../schemas/common.js';

/**
 * Prometheus metrics. Behind the API key like everything with data in it: Prometheus sends it with
 * `authorization: { type: Bearer, credentials_file: /path/to/key }` in the scrape config.
 */
export const metricsRoutes: FastifyPluginAsyncTypebox<{ deps: Pick<ApiDeps, 'renderMetrics'> }> = async (app, { deps }) => {
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'metrics',
        tags: ['Operations'],
        summary: 'Prometheus metrics (text exposition format)',
        produces: ['text/plain'],
        response: { 200: Type.String(), 401: HttpError },
      },
    },
    async (_request, reply) => {
      const { contentType, body } = await deps.renderMetrics();
      return reply.type(contentType).send(body);
    },
  );
};
