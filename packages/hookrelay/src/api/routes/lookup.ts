import { notFound } from '../../core/errors.js';
import type { Application, Endpoint, Message } from '../../storage/models.js';
import type { Storage } from '../../storage/storage.js';

/** Path lookups shared by the routes: each resolves "id or uid" or answers 404. */
export async function requireApp(storage: Storage, appIdOrUid: string): Promise<Application> {
  const app = await storage.applications.find(appIdOrUid);
  if (!app) throw notFound('Application');
  return app;
}

export async function requireEndpoint(storage: Storage, appId: string, endpointIdOrUid: string): Promise<Endpoint> {
  const endpoint = await storage.endpoints.find(appId, endpointIdOrUid);
  if (!endpoint) throw notFound('Endpoint');
  return endpoint;
}

export async function requireMessage(storage: Storage, appId: string, msgIdOrEventId: string): Promise<Message> {
  const message = await storage.messages.find(appId, msgIdOrEventId);
  if (!message) throw notFound('Message');
  return message;
}
