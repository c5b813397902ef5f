import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { createHash } from 'node:crypto';
import { newId } from '../../src/core/ids.js';
import { loadConfig, type HookrelayConfig } from '../../src/config/config.js';
import { SecretBox } from '../../src/secrets/secret-box.js';
import { generateEndpointSecret } from '../../src/signing/endpoint-secret.js';
import { openStorage } from '../../src/storage/open-storage.js';
import type { EndpointFields, Storage } from '../../src/storage/storage.js';
import { createTestDatabase, type TestDatabase, type TestEngine } from './test-database.js';

/** The suites that test the stores directly, below the API, share these. */

/** An endpoint's fields; the URL is never called (these suites send nothing). */
export const TEST_ENDPOINT: EndpointFields = { url: 'https://example.com/hook', uid: null, description: '', disabled: false, filterTypes: null, channels: null, rateLimit: null, metadata: {}, version: 1 };

/** Opens (and migrates) a storage on `database`, its secrets sealed under a key derived from `suite`. */
export function openTestStorage(database: TestDatabase, suite: string, settings: Partial<HookrelayConfig> = {}): Promise<Storage> {
  const secretBox = new SecretBox(createHash('sha256').update(suite).digest());
  return openStorage({ database: loadConfig({}, { databaseUrl: database.url, ...settings }), secretBox });
}

/**
 * An application with `endpoints` endpoints and `perEndpoint` messages, each fanned out to every
 * endpoint: `perEndpoint` pending deliveries per endpoint, the i-th message created (and due) at
 * `firstCreatedAt + i`.
 */
export async function seedBacklog(storage: Storage, options: { name: string; endpoints: number; perEndpoint: number; firstCreatedAt: number }): Promise<{ appId: string; endpointIds: string[] }> {
  const app = await storage.applications.create({ name: options.name, uid: null, rateLimit: null, metadata: {} });
  const endpointIds: string[] = [];
  for (let i = 0; i < options.endpoints; i++) endpointIds.push((await storage.endpoints.create(app.id, TEST_ENDPOINT, {}, generateEndpointSecret())).id);
  const items = Array.from({ length: options.perEndpoint }, (_, i) => {
    const createdAt = options.firstCreatedAt + i;
    return { message: { id: newId('msg', createdAt), appId: app.id, eventType: 'order.created', eventId: null, payload: '{"n":1}', channels: null, tags: null, createdAt }, idempotency: null };
  });
  const outcomes = await storage.ingest.acceptBatch(items, (eps) => eps);
  assert.ok(outcomes.every((o) => o.ok));
  return { appId: app.id, endpointIds };
}

/**
 * Inside a describe: a fresh database of `engine` and a storage opened on it by `open` before the
 * suite's tests, handed to `use`; both closed and dropped after them.
 */
export function withTestStorage(engine: TestEngine, open: (database: TestDatabase) => Promise<Storage>, use: (storage: Storage, database: TestDatabase) => void): void {
  let database: TestDatabase | undefined;
  let storage: Storage | undefined;
  before(async () => {
    database = await createTestDatabase(engine);
    storage = await open(database);
    use(storage, database);
  });
  after(async () => {
    await storage?.close();
    await database?.drop();
  });
}
