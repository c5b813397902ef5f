import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { loadConfig, type HookrelayConfig } from '../src/config/config.js';
import { startDispatcherInProcess, type DispatcherHandle } from '../src/dispatch/dispatcher-host.js';
import { MessageIngestor } from '../src/ingest/message-ingestor.js';
import { createLogger } from '../src/observability/logger.js';
import { SecretBox } from '../src/secrets/secret-box.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';
import { openStorage } from '../src/storage/open-storage.js';
import type { EndpointFields, Storage } from '../src/storage/storage.js';
import { parseCidrList } from '../src/transport/ssrf/cidr.js';
import { Receiver } from './helpers/receiver.js';
import { createTestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * Deliveries that wait in the dispatcher's memory for a slot at a busy endpoint: the ingestor's
 * handoff and the dispatcher's waiting queues, driven directly (one group commit of a whole burst
 * is hard to get over HTTP on demand) with a real SQLite file, an in-process dispatcher and real
 * receivers on 127.0.0.1.
 */
interface Rig {
  storage: Storage;
  dispatcher: DispatcherHandle;
  ingestor: MessageIngestor;
  appId: string;
  endpoint(url: string, eventType: string): Promise<string>;
  publish(eventType: string, i: number): Promise<string>;
}

const fields = (url: string, eventType: string): EndpointFields => ({ url, uid: null, description: '', disabled: false, filterTypes: [eventType], channels: null, rateLimit: null, metadata: {}, version: 1 });

async function rig(t: TestContext, settings: Record<string, string>, wrap: (storage: Storage) => void = () => {}): Promise<Rig> {
  const database = await createTestDatabase('sqlite');
  const config: HookrelayConfig = {
    ...loadConfig({ HOOKRELAY_DATABASE_URL: database.url, HOOKRELAY_DATA_DIR: database.dir, HOOKRELAY_LOG_LEVEL: 'silent', ...settings }),
    ssrfAllow: parseCidrList('127.0.0.1/32', 'HOOKRELAY_SSRF_ALLOW'),
  };
  const storage = await openStorage({ database: config, secretBox: new SecretBox(createHash('sha256').update('waiting').digest()) });
  wrap(storage);
  const dispatcher = startDispatcherInProcess(config, storage, createLogger('silent', 'test'));
  const ingestor = new MessageIngestor(storage, (stats) => stats.pending > 0 && dispatcher.wake(), dispatcher.handoff);
  t.after(async () => {
    await dispatcher.stop();
    await storage.close();
    await database.drop();
  });
  const app = await storage.applications.create({ name: 'waiting', uid: null, rateLimit: null, metadata: {} });
  return {
    storage,
    dispatcher,
    ingestor,
    appId: app.id,
    endpoint: async (url, eventType) => (await storage.endpoints.create(app.id, fields(url, eventType), {}, generateEndpointSecret())).id,
    publish: async (eventType, i) => (await ingestor.accept(app.id, { eventType, payload: JSON.stringify({ i }), eventId: null, channels: null, tags: null }, null)).id,
  };
}

async function receiver(t: TestContext, delayMs: number): Promise<Receiver> {
  const r = await Receiver.start();
  r.reply = () => ({ status: 200, body: 'ok', delayMs });
  t.after(() => r.close());
  return r;
}

const ids = (r: Receiver) => new Set(r.requests.map((q) => q.headers['webhook-id'] as string));

describe('deliveries waiting for a busy endpoint', () => {
  test('a burst handed over for one slow endpoint does not hold back the others, and all of it arrives', async (t) => {
    const slow = await receiver(t, 250);
    const fast = await receiver(t, 0);
    const r = await rig(t, { HOOKRELAY_ENDPOINT_CONCURRENCY: '2', HOOKRELAY_DISPATCHER_CONCURRENCY: '32', HOOKRELAY_LEASE: '8s', HOOKRELAY_REQUEST_TIMEOUT: '4s' });
    await r.endpoint(slow.url(), 'slow');
    await r.endpoint(fast.url(), 'fast');
    const burst = 60;
    // One group commit: every accept is queued before the ingestor's first turn.
    const slowIds = await Promise.all(Array.from({ length: burst }, (_, i) => r.publish('slow', i)));
    const healthyId = await r.publish('fast', 0);
    await waitFor('the healthy endpoint got its message', () => ids(fast).has(healthyId), 20_000);
    // Before the fix the whole burst was handed over and queued past the dispatcher's capacity:
    // the claim loop stopped for every endpoint until about 3/4 of the lease (6 s, some 24 slow
    // responses) had passed.
    assert.ok(slow.requests.length < 20, `the healthy message waited for ${slow.requests.length} slow responses`);
    await waitFor('every burst message at the slow endpoint', () => slowIds.every((id) => ids(slow).has(id)), 30_000);
  });

  test('deliveries waiting for an endpoint go to its new URL once it is changed', async (t) => {
    const before = await receiver(t, 300);
    const after = await receiver(t, 0);
    const r = await rig(t, { HOOKRELAY_ENDPOINT_CONCURRENCY: '2' });
    const endpointId = await r.endpoint(before.url(), 'e');
    // One group: its deliveries beyond the cap wait in memory, with the target read at handoff.
    const msgIds = await Promise.all(Array.from({ length: 12 }, (_, i) => r.publish('e', i)));
    await waitFor('the first requests at the old URL', () => before.requests.length >= 2, 10_000);
    await r.storage.endpoints.update(r.appId, endpointId, fields(after.url(), 'e'));
    await waitFor('every message delivered somewhere', () => msgIds.every((id) => ids(before).has(id) || ids(after).has(id)), 20_000);
    // The two in flight when the URL changed, and at most the two started while the change committed.
    assert.ok(ids(before).size <= 4, `${ids(before).size} messages went to the old URL after it was changed`);
    assert.ok(ids(after).size >= 8);
  });

  test('deliveries waiting for an endpoint that is disabled are recorded as refused, not sent', async (t) => {
    const slow = await receiver(t, 300);
    const r = await rig(t, { HOOKRELAY_ENDPOINT_CONCURRENCY: '2' });
    const endpointId = await r.endpoint(slow.url(), 'e');
    await Promise.all(Array.from({ length: 12 }, (_, i) => r.publish('e', i)));
    await waitFor('the first requests', () => slow.requests.length >= 2, 10_000);
    await r.storage.endpoints.update(r.appId, endpointId, { ...fields(slow.url(), 'e'), disabled: true });
    const attempts = await waitFor('an attempt for every message', async () => {
      const page = await r.storage.attempts.listByEndpoint(r.appId, endpointId, { limit: 50 }, {});
      return page.data.length === 12 && page.data;
    }, 20_000);
    assert.ok(slow.requests.length <= 4, `${slow.requests.length} requests reached the endpoint after it was disabled`);
    const refused = attempts.filter((a) => a.errorCode === 'HOOKRELAY_ENDPOINT_DISABLED');
    assert.equal(refused.length + slow.requests.length, 12);
  });

  test('a handoff taken while the dispatcher stops is given back, not sent after stop()', async (t) => {
    const target = await receiver(t, 0);
    let slowLoads = false;
    const r = await rig(t, {}, (storage) => {
      // Stands in for a target read that waits for the connection (another transaction holds it).
      const load = storage.deliveries.loadTargets.bind(storage.deliveries);
      storage.deliveries.loadTargets = async (ids, now) => {
        if (slowLoads) await new Promise((resolve) => setTimeout(resolve, 300));
        return load(ids, now);
      };
    });
    await r.endpoint(target.url(), 'e');
    slowLoads = true;
    await r.publish('e', 0);
    await r.dispatcher.stop();
    // stop() returned only once the handoff was taken: given back (due now, not at the end of a
    // lease), and not sent. Before the fix it was sent some 300 ms after stop() had returned.
    assert.equal(target.requests.length, 0);
    const due = await r.storage.deliveries.nextDueAt();
    assert.ok(due !== null && due <= Date.now(), `the delivery is due at ${due}, not now`);
  });

  test('a read that fails right after a claim gives the claimed deliveries back at once', async (t) => {
    const target = await receiver(t, 0);
    let failNext = false;
    const r = await rig(t, { HOOKRELAY_LEASE: '60s' }, (storage) => {
      const load = storage.deliveries.loadTargets.bind(storage.deliveries);
      storage.deliveries.loadTargets = async (ids, now) => {
        if (failNext) {
          failNext = false;
          throw new Error('injected: the database went away for a moment');
        }
        return load(ids, now);
      };
    });
    await r.endpoint(target.url(), 'e');
    // Written pending (no handoff: the dispatcher is told nothing), then claimed: the claim's
    // target read fails once.
    await r.dispatcher.stop();
    const dispatcher = startDispatcherInProcess({ ...loadConfig({ HOOKRELAY_LOG_LEVEL: 'silent', HOOKRELAY_LEASE: '60s' }), ssrfAllow: parseCidrList('127.0.0.1/32', 'x') }, r.storage, createLogger('silent', 'test'));
    t.after(() => dispatcher.stop());
    const msgId = (await new MessageIngestor(r.storage, () => {}).accept(r.appId, { eventType: 'e', payload: '{}', eventId: null, channels: null, tags: null }, null)).id;
    failNext = true;
    dispatcher.wake();
    // Without the release it would wait out the 60 s lease.
    await waitFor('the delivery sent after the failed read', () => ids(target).has(msgId), 10_000);
  });
});
