import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES, TEST_POSTGRES_URL, POSTGRES_SKIP_REASON, createTestDatabase } from './helpers/test-database.js';
import { Cluster, callApi, publishRoundRobin } from './helpers/cluster.js';
import { rateLimitBurst } from '../src/core/rate-limit.js';

for (const engine of TEST_ENGINES) {
  describe(`endpoint rateLimit (${engine})`, () => {
    test('deliveries to an endpoint with rateLimit 50 arrive at 50 per second, its neighbour is not slowed', async (t) => {
      const limited = await Receiver.start();
      const open = await Receiver.start();
      const platform = await startTestPlatform({ engine });
      t.after(async () => {
        await platform.close();
        await limited.close();
        await open.close();
      });
      const app = (await platform.api('POST', '/api/v1/app', { name: 'rate' })).body;
      assert.equal((await platform.api('POST', `/api/v1/app/${app.id}/endpoint`, { url: limited.url(), rateLimit: 50 })).status, 201);
      assert.equal((await platform.api('POST', `/api/v1/app/${app.id}/endpoint`, { url: open.url() })).status, 201);

      const total = 150;
      await Promise.all(Array.from({ length: total }, (_, i) => platform.api('POST', `/api/v1/app/${app.id}/msg`, { eventType: 'tick', payload: { i } })));
      await waitFor('the unlimited endpoint has everything', () => open.requests.length === total, 20_000);
      assert.ok(limited.requests.length < total, 'the unlimited endpoint did not wait for the limited one');
      await waitFor('the limited endpoint has everything', () => limited.requests.length === total, 20_000);

      // After the first burst, sends are paced by the bucket's refill: measure from the end of it.
      const burst = Math.ceil(rateLimitBurst(50));
      const times = limited.requests.map((r) => r.receivedAt).sort((a, b) => a - b);
      const seconds = (times[total - 1]! - times[burst - 1]!) / 1000;
      const rate = (total - burst) / seconds;
      t.diagnostic(`measured ${rate.toFixed(1)} deliveries/s over ${seconds.toFixed(2)} s`);
      assert.ok(rate <= 55, `rate ${rate.toFixed(1)}/s exceeds 50/s by more than 10 %`);
      assert.ok(rate >= 45, `rate ${rate.toFixed(1)}/s is more than 10 % under 50/s`);
      assert.equal(limited.distinctIds().size, total, 'each message once');
    });

    test('concurrent takers never spend more than the bucket holds, and it refills at the rate', async (t) => {
      const platform = await startTestPlatform({ engine });
      t.after(() => platform.close());
      const app = (await platform.api('POST', '/api/v1/app', { name: 'bucket' })).body;
      const endpoint = (await platform.api('POST', `/api/v1/app/${app.id}/endpoint`, { url: 'https://example.invalid/hook', rateLimit: 50 })).body;
      const deliveries = platform.server.storage.deliveries;
      const now = Date.now();
      const grants = await Promise.all(Array.from({ length: 20 }, () => deliveries.takeSendTokens(endpoint.id, 50, 1, now)));
      assert.equal(grants.reduce((a, b) => a + b, 0), rateLimitBurst(50), 'a full bucket holds one burst');
      assert.equal(await deliveries.takeSendTokens(endpoint.id, 50, 10, now), 0, 'empty at the same instant');
      assert.equal(await deliveries.takeSendTokens(endpoint.id, 50, 10, now + 60), 3, '60 ms at 50/s refills 3 tokens');
      assert.equal(await deliveries.takeSendTokens(endpoint.id, 50, 10, now + 10_000), rateLimitBurst(50), 'never more than one burst');
    });
  });
}

describe('endpoint rateLimit across processes (postgres)', { skip: TEST_POSTGRES_URL ? false : POSTGRES_SKIP_REASON }, () => {
  test('rateLimit 50/s holds across 3 worker processes (within 10 %)', async (t) => {
    const database = await createTestDatabase('postgres');
    const receiver = await Receiver.start();
    const cluster = new Cluster(database, { HOOKRELAY_PG_POOL_SIZE: '4' });
    t.after(async () => {
      await cluster.kill();
      await receiver.close();
      await database.drop();
    });
    cluster.migrate();
    const api = await cluster.start('api');
    for (let i = 0; i < 3; i++) await cluster.start('worker');
    const app = await callApi(api.url, 'POST', '/api/v1/app', { name: 'limited' });
    assert.equal(app.status, 201);
    assert.equal((await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url(), rateLimit: 50 })).status, 201);
    const total = 200;
    await publishRoundRobin({ apiUrls: [api.url], appIds: [app.body.id], count: total, concurrency: 16 });
    await waitFor('every message delivered', () => receiver.requests.length >= total, 30_000, 20);
    const burst = Math.ceil(rateLimitBurst(50));
    const times = receiver.requests.map((r) => r.receivedAt).sort((a, b) => a - b);
    const seconds = (times[total - 1]! - times[burst - 1]!) / 1000;
    const rate = (total - burst) / seconds;
    t.diagnostic(`3 workers: measured ${rate.toFixed(1)} deliveries/s over ${seconds.toFixed(2)} s`);
    assert.ok(rate <= 55 && rate >= 45, `rate ${rate.toFixed(1)}/s is not within 10 % of 50/s`);
    assert.equal(receiver.distinctIds().size, total);
  });
});
