import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Webhook } from 'standardwebhooks';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { HOOKRELAY_VERSION } from '../src/core/version.js';

for (const engine of TEST_ENGINES) describe(`delivery signing (${engine})`, () => {
  test('every delivery is signed per Standard Webhooks and carries the documented headers', async (t) => {
    const receiver = await Receiver.start();
    const platform = await startTestPlatform({ engine, sendSvixHeaders: true });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const secret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const { appId } = await createAppWithEndpoint(platform, receiver.url(), { secret, headers: { 'x-tenant': 'acme' } });

    const sent = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      const payload = { type: 'order.created', n: i, text: 'ünïcode ✓', nested: { list: [1, 2.5, null, true] } };
      const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'order.created', payload });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      sent.set(res.body.id, JSON.stringify(payload));
    }
    await waitFor('20 deliveries', () => receiver.requests.length >= 20);

    const verifier = new Webhook(secret);
    for (const request of receiver.requests) {
      const id = String(request.headers['webhook-id']);
      assert.ok(sent.has(id), `unknown webhook-id ${id}`);
      assert.equal(request.body, sent.get(id), 'the body is the payload bytes as stored');
      assert.deepEqual(verifier.verify(request.body, request.headers as Record<string, string>), JSON.parse(sent.get(id)!));
      assert.equal(request.headers['content-type'], 'application/json');
      assert.equal(request.headers['user-agent'], `Hookrelay/${HOOKRELAY_VERSION}`);
      assert.equal(request.headers['x-tenant'], 'acme', 'custom endpoint headers are sent');
      assert.equal(request.headers['svix-id'], id);
      assert.equal(request.headers['svix-signature'], request.headers['webhook-signature']);
    }
  });

  test('during secret rotation both keys sign, and each verifies alone', async (t) => {
    const receiver = await Receiver.start();
    const platform = await startTestPlatform({ engine });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId, secret: oldSecret } = await createAppWithEndpoint(platform, receiver.url());
    const rotated = await platform.api('POST', `/api/v1/app/${appId}/endpoint/${endpointId}/secret/rotate`, {});
    assert.equal(rotated.status, 204);
    const newSecret = (await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}/secret`)).body.key as string;
    assert.notEqual(newSecret, oldSecret);

    const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'user.created', payload: { id: 1 } });
    assert.equal(res.status, 202);
    const request = await waitFor('the delivery', () => receiver.requests[0]);
    const signatures = String(request.headers['webhook-signature']).split(' ');
    assert.equal(signatures.length, 2, 'current and rotated-out key both sign');
    for (const key of [oldSecret, newSecret]) {
      assert.deepEqual(new Webhook(key).verify(request.body, request.headers as Record<string, string>), { id: 1 });
    }
  });

  test('a change to the endpoint applies from the next delivery on, whatever the dispatcher has cached', async (t) => {
    const receiver = await Receiver.start();
    const platform = await startTestPlatform({ engine });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url(), { headers: { 'x-tenant': 'alpha' } });
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'user.created', payload: { n: 1 } })).status, 202);
    const first = await waitFor('the first delivery', () => receiver.requests[0]);
    assert.equal(first.headers['x-tenant'], 'alpha');

    assert.equal((await platform.api('PUT', `/api/v1/app/${appId}/endpoint/${endpointId}/headers`, { headers: { 'x-tenant': 'beta' } })).status, 204);
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/endpoint/${endpointId}/secret/rotate`, {})).status, 204);
    const newSecret = (await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}/secret`)).body.key as string;
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'user.created', payload: { n: 2 } })).status, 202);
    const second = await waitFor('the second delivery', () => receiver.requests[1]);
    assert.equal(second.headers['x-tenant'], 'beta', 'the new headers are sent');
    assert.equal(String(second.headers['webhook-signature']).split(' ').length, 2, 'the rotated secret signs beside the old one');
    assert.deepEqual(new Webhook(newSecret).verify(second.body, second.headers as Record<string, string>), { n: 2 });
  });
});
