import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';

test('with loopback not allowed, a delivery to 127.0.0.1 is refused and recorded as a failed attempt', async (t) => {
  const receiver = await Receiver.start();
  const platform = await startTestPlatform({ ssrfAllow: [], retryScheduleMs: [0] });
  t.after(async () => {
    await platform.close();
    await receiver.close();
  });
  const { appId } = await createAppWithEndpoint(platform, receiver.url());
  const msg = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'a.b', payload: {} });
  assert.equal(msg.status, 202);
  const attempt = await waitFor('the refused attempt', async () => (await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msg.body.id}`)).body.data[0]);
  assert.equal(attempt.status, 2);
  assert.equal(attempt.responseStatusCode, 0);
  assert.match(attempt.response, /127\.0\.0\.1/);
  assert.match(attempt.response, /loopback/i);
  assert.equal(receiver.requests.length, 0, 'the receiver never saw a request');
});
