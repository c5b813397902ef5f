import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

for (const engine of TEST_ENGINES) describe(`delivery isolation (${engine})`, () => {
  test('an endpoint that never answers does not hold back a healthy one', async (t) => {
    const stuck = await Receiver.start();
    stuck.reply = () => ({ hang: true });
    const healthy = await Receiver.start();
    const platform = await startTestPlatform({ engine, requestTimeoutMs: 60_000, endpointConcurrency: 5 });
    t.after(async () => {
      await stuck.close(); // ends the hanging requests, so shutdown need not wait for their timeout
      await platform.close();
      await healthy.close();
    });
    const app = await platform.api('POST', '/api/v1/app', { name: 'isolation' });
    const appId = app.body.id;
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/endpoint`, { url: stuck.url() })).status, 201);
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/endpoint`, { url: healthy.url() })).status, 201);

    const total = 300;
    for (let i = 0; i < total; i++) {
      const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'ping', payload: { i } });
      assert.equal(res.status, 202);
    }
    await waitFor('every message at the healthy endpoint', () => healthy.distinctIds().size === total, 30_000);
    // The stuck endpoint holds at most its concurrency cap, and none of its requests has finished:
    // the healthy endpoint was served while all of them were still hanging.
    assert.ok(stuck.requests.length <= 5, `stuck endpoint got ${stuck.requests.length} concurrent requests, cap is 5`);
    const attempts = await platform.server.storage.attempts.listByEndpoint(appId, (await platform.api('GET', `/api/v1/app/${appId}/endpoint`)).body.data.find((e: any) => e.url === stuck.url()).id, { limit: 10 }, {});
    assert.equal(attempts.data.length, 0, 'no attempt to the stuck endpoint has completed yet');
  });
});
