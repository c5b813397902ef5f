import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';

for (const engine of TEST_ENGINES) describe(`delivery refusals (${engine})`, () => {
  test('with HOOKRELAY_REQUIRE_HTTPS, http endpoints are refused by the API and, if older, at send time', async (t) => {
    const receiver = await Receiver.start();
    const platform = await startTestPlatform({ engine, requireHttps: true });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const app = await platform.api('POST', '/api/v1/app', { name: 'https only' });
    const refused = await platform.api('POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url() });
    assert.equal(refused.status, 422);
    assert.deepEqual(refused.body.detail[0].loc, ['body', 'url']);

    // An endpoint created before the setting was turned on, written straight to storage.
    await platform.server.storage.endpoints.create(
      app.body.id,
      { url: receiver.url(), uid: null, description: '', disabled: false, filterTypes: null, channels: null, rateLimit: null, metadata: {}, version: 1 },
      {},
      generateEndpointSecret(),
    );
    const msg = await platform.api('POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'a.b', payload: {} });
    assert.equal(msg.status, 202);
    const attempt = await waitFor('the refused attempt', async () => (await platform.api('GET', `/api/v1/app/${app.body.id}/attempt/msg/${msg.body.id}`)).body.data[0]);
    assert.equal(attempt.status, 2, 'failed for good: a retry cannot change the URL');
    assert.match(attempt.response, /^HOOKRELAY_HTTPS_REQUIRED/);
    assert.equal(receiver.requests.length, 0);
  });

  test('a disabled endpoint receives nothing; its enabled neighbour receives everything', async (t) => {
    const off = await Receiver.start();
    const on = await Receiver.start();
    const platform = await startTestPlatform({ engine });
    t.after(async () => {
      await platform.close();
      await off.close();
      await on.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, off.url());
    assert.equal((await platform.api('PATCH', `/api/v1/app/${appId}/endpoint/${endpointId}`, { disabled: true })).status, 200);
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/endpoint`, { url: on.url() })).status, 201);
    for (let i = 0; i < 10; i++) assert.equal((await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'a.b', payload: { i } })).status, 202);
    await waitFor('ten deliveries to the enabled endpoint', () => on.requests.length === 10);
    const attempts = await platform.api('GET', `/api/v1/app/${appId}/attempt/endpoint/${endpointId}`);
    assert.equal(attempts.body.data.length, 0, 'no delivery was even created for the disabled endpoint');
    assert.equal(off.requests.length, 0);
  });

  test('filterTypes with wildcards and channels pick the endpoints a message goes to', async (t) => {
    const orders = await Receiver.start();
    const eu = await Receiver.start();
    const all = await Receiver.start();
    const platform = await startTestPlatform({ engine });
    t.after(async () => {
      await platform.close();
      await Promise.all([orders.close(), eu.close(), all.close()]);
    });
    const app = (await platform.api('POST', '/api/v1/app', { name: 'routing' })).body;
    for (const [url, extra] of [[orders.url(), { filterTypes: ['order.*'] }], [eu.url(), { channels: ['eu'] }], [all.url(), {}]] as const) {
      assert.equal((await platform.api('POST', `/api/v1/app/${app.id}/endpoint`, { url, ...extra })).status, 201);
    }
    const send = async (eventType: string, channels?: string[]) => (await platform.api('POST', `/api/v1/app/${app.id}/msg`, { eventType, payload: {}, ...(channels ? { channels } : {}) })).body.id as string;
    const orderCreated = await send('order.created');
    const orderItem = await send('order.item.added', ['eu']);
    const userEu = await send('user.created', ['eu']);
    const user = await send('user.created');
    await waitFor('all deliveries', () => all.requests.length === 4 && orders.requests.length === 2 && eu.requests.length === 2);
    assert.deepEqual([...orders.distinctIds()].sort(), [orderCreated, orderItem].sort());
    assert.deepEqual([...eu.distinctIds()].sort(), [orderItem, userEu].sort());
    assert.deepEqual([...all.distinctIds()].sort(), [orderCreated, orderItem, userEu, user].sort());
  });
});
