import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { newId } from '../src/core/ids.js';
import { DeliveryStatus, TriggerType } from '../src/storage/models.js';
import type { DeliveryOutcome } from '../src/storage/storage.js';
import { summarizeStreaks } from '../src/storage/stores/endpoint-health-store.js';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint, type TestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

function outcome(endpointId: string, at: number, health: DeliveryOutcome['health'], statusCode = health === 'success' ? 200 : 500): DeliveryOutcome {
  return {
    deliveryId: 1,
    leaseToken: 'token',
    nextAttemptAt: null,
    health,
    attempt: {
      id: newId('atmpt', at),
      msgId: 'msg_x',
      endpointId,
      appId: 'app_x',
      url: 'http://127.0.0.1/',
      status: health === 'success' ? DeliveryStatus.Success : DeliveryStatus.Fail,
      responseStatusCode: statusCode,
      response: '',
      responseDurationMs: 1,
      triggerType: TriggerType.Scheduled,
      errorCode: statusCode === 0 ? 'HOOKRELAY_TIMEOUT' : null,
      createdAt: at,
    },
  };
}

describe('failure streaks of one batch of outcomes', () => {
  test('a batch ends with the failures after its last success; refusals without a request do not count', () => {
    const streaks = summarizeStreaks([
      outcome('ep_a', 1, 'failure'),
      outcome('ep_a', 2, 'success'),
      outcome('ep_a', 3, 'failure', 0),
      outcome('ep_a', 4, 'failure', 503),
      outcome('ep_b', 5, 'failure'),
      outcome('ep_b', 6, 'success'),
      outcome('ep_c', 7, 'failure'),
      outcome('ep_d', 8, null, 0),
    ]);
    assert.deepEqual(Object.fromEntries(streaks), {
      ep_a: { lastSuccessAt: 2, failures: 2, firstFailureAt: 3, lastFailureAt: 4, lastFailureCode: 'HTTP_503' },
      ep_b: { lastSuccessAt: 6, failures: 0, firstFailureAt: null, lastFailureAt: 5, lastFailureCode: 'HTTP_500' },
      ep_c: { lastSuccessAt: null, failures: 1, firstFailureAt: 7, lastFailureAt: 7, lastFailureCode: 'HTTP_500' },
    });
  });
});

async function health(platform: TestPlatform, appId: string, endpointId: string) {
  const res = await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}/health`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function publish(platform: TestPlatform, appId: string, i: number): Promise<string> {
  const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'health.probe', payload: { i } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id;
}

for (const engine of TEST_ENGINES) describe(`endpoint failure tracking (${engine})`, () => {
  test('failures build a streak that the store keeps across batches; a success ends it', async (t) => {
    const receiver = await Receiver.start();
    let failing = true;
    receiver.reply = () => (failing ? { status: 503 } : { status: 200 });
    // One attempt per message, so that each failure is a final one and nothing retries behind the test's back.
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url());
    assert.deepEqual(await health(platform, appId, endpointId), { consecutiveFailures: 0, failingSince: null, lastFailureAt: null, lastFailureCode: null, recoveredAt: null, disabledAt: null });

    // Published one at a time, each waited for: every failure lands in a batch of its own.
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      await publish(platform, appId, i);
      await waitFor(`failure ${i + 1} recorded`, async () => (await health(platform, appId, endpointId)).consecutiveFailures === i + 1);
    }
    const streak = await health(platform, appId, endpointId);
    assert.equal(streak.lastFailureCode, 'HTTP_503');
    assert.ok(Date.parse(streak.failingSince) >= started - 5 && Date.parse(streak.failingSince) <= Date.parse(streak.lastFailureAt));
    assert.equal(streak.recoveredAt, null);
    assert.equal(streak.disabledAt, null);

    failing = false;
    await publish(platform, appId, 3);
    const recovered = await waitFor('the success to end the streak', async () => {
      const h = await health(platform, appId, endpointId);
      return h.consecutiveFailures === 0 && h;
    });
    assert.equal(recovered.failingSince, null);
    assert.ok(recovered.recoveredAt !== null && Date.parse(recovered.recoveredAt) >= Date.parse(streak.lastFailureAt));
    assert.equal(recovered.lastFailureAt, streak.lastFailureAt, 'the last failure is still shown');

    // A failure after the recovery starts a new streak from 1.
    failing = true;
    await publish(platform, appId, 4);
    const again = await waitFor('a new streak', async () => {
      const h = await health(platform, appId, endpointId);
      return h.consecutiveFailures === 1 && h;
    });
    assert.ok(Date.parse(again.failingSince) > Date.parse(streak.failingSince));

    const unknown = await platform.api('GET', `/api/v1/app/${appId}/endpoint/ep_2xxxxxxxxxxxxxxxxxxxxxxxxxx/health`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'not_found');
  });

  test('HOOKRELAY_ENDPOINT_DISABLE_AFTER=0 never disables an endpoint', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = () => ({ status: 500 });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 50, 50, 50], endpointDisableAfterMs: 0 });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url());
    await publish(platform, appId, 0);
    // Every failure after the first is past any positive limit taken as 0 ms.
    const h = await waitFor('four failures recorded', async () => {
      const current = await health(platform, appId, endpointId);
      return current.consecutiveFailures === 4 && current;
    });
    assert.equal(h.disabledAt, null);
    assert.equal((await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}`)).body.disabled, false);
  });

  test('an endpoint failing for longer than HOOKRELAY_ENDPOINT_DISABLE_AFTER is disabled; enabling it again starts afresh', async (t) => {
    const receiver = await Receiver.start();
    let failing = true;
    receiver.reply = () => (failing ? { status: 500 } : { status: 200 });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100], endpointDisableAfterMs: 600 });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url());
    const healthy = await createAppWithEndpoint(platform, receiver.url('/healthy'));
    receiver.reply = (request) => (failing && request.path !== '/healthy' ? { status: 500 } : { status: 200 });
    const msgId = await publish(platform, appId, 0);
    await publish(platform, healthy.appId, 0);

    const endpoint = await waitFor('the failing endpoint to be disabled', async () => {
      const res = await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}`);
      return res.body.disabled === true && res.body;
    }, 15_000);
    const h = await health(platform, appId, endpointId);
    assert.ok(h.disabledAt !== null);
    assert.ok(Date.parse(h.disabledAt) - Date.parse(h.failingSince) >= 600, `disabled ${Date.parse(h.disabledAt) - Date.parse(h.failingSince)} ms after the first failure`);
    assert.ok(h.consecutiveFailures >= 2);
    const metrics = await fetch(platform.server.url + '/metrics', { headers: { authorization: `Bearer ${platform.token}` } });
    assert.match(await metrics.text(), /^hookrelay_endpoints_disabled_total 1$/m);
    assert.equal((await platform.api('GET', `/api/v1/app/${healthy.appId}/endpoint/${healthy.endpointId}`)).body.disabled, false, 'a healthy endpoint is left alone');

    // The message's remaining retries are not sent to the disabled endpoint.
    const attempts = await waitFor('the delivery to end', async () => {
      const list = (await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msgId}`)).body.data as any[];
      return list.some((a) => a.status === 2) && list;
    }, 15_000);
    const requestsBefore = receiver.requests.filter((r) => r.path === '/webhook').length;
    assert.equal(requestsBefore, attempts.filter((a: any) => a.responseStatusCode === 500).length, 'every request was logged, and none followed the disabling');

    // Enabled again (Svix: PATCH disabled=false): the old streak is gone, so it is not disabled at once.
    failing = false;
    const enabled = await platform.api('PATCH', `/api/v1/app/${appId}/endpoint/${endpointId}`, { disabled: false });
    assert.equal(enabled.status, 200, JSON.stringify(enabled.body));
    assert.equal(endpoint.id, endpointId);
    const fresh = await health(platform, appId, endpointId);
    assert.equal(fresh.disabledAt, null);
    assert.equal(fresh.consecutiveFailures, 0);
    const next = await publish(platform, appId, 1);
    await waitFor('the message after re-enabling to arrive', () => receiver.requests.some((r) => r.headers['webhook-id'] === next));
  });
});
