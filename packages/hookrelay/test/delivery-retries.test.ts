import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint, type TestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

async function attemptsOf(platform: TestPlatform, appId: string, msgId: string) {
  const res = await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msgId}`);
  assert.equal(res.status, 200);
  return (res.body.data as any[]).slice().reverse();
}

async function publish(platform: TestPlatform, appId: string): Promise<string> {
  const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'invoice.paid', payload: { amount: 42 } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id;
}

for (const engine of TEST_ENGINES) describe(`delivery retries (${engine})`, () => {
  test('a delivery is retried after 500s and succeeds; each attempt is logged', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = (_r, i) => (i < 2 ? { status: 500, body: 'boom ' + i } : { status: 200, body: 'thanks' });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 20, 20, 20] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url());
    const msgId = await publish(platform, appId);
    const attempts = await waitFor('three attempts recorded', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 3 && list;
    });
    assert.deepEqual(attempts.map((a) => a.responseStatusCode), [500, 500, 200]);
    assert.deepEqual(attempts.map((a) => a.statusText), ['fail', 'fail', 'success']);
    assert.equal(attempts[0].response, 'boom 0');
    assert.equal(attempts[2].response, 'thanks');
    assert.ok(attempts.every((a) => a.triggerType === 0 && a.msgId === msgId && a.url === receiver.url()));
    assert.equal(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size, 1, 'webhook-id is the same on every retry');
  });

  test('a request that outlasts the timeout is a failed attempt with a timeout code', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = (_r, i) => (i === 0 ? { hang: true } : { status: 204 });
    const platform = await startTestPlatform({ engine, requestTimeoutMs: 300, retryScheduleMs: [0, 10] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url());
    const msgId = await publish(platform, appId);
    const attempts = await waitFor('timeout then success', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 2 && list;
    });
    assert.equal(attempts[0].responseStatusCode, 0);
    assert.match(attempts[0].response, /UND_ERR_HEADERS_TIMEOUT/);
    assert.equal(attempts[1].responseStatusCode, 204);
  });

  test('Retry-After on a 429 delays the next attempt beyond the schedule', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = (_r, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 200 });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 10, 10] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url());
    await publish(platform, appId);
    await waitFor('the retry', () => receiver.requests.length === 2, 10_000);
    const gap = receiver.requests[1]!.receivedAt - receiver.requests[0]!.receivedAt;
    // The schedule alone would retry after 10 ms; Retry-After asks for 2 s.
    assert.ok(gap >= 1_900, `retry came after ${gap} ms, expected about 2000`);
  });

  test('a Retry-After shorter than the schedule does not bring the next attempt forward', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = () => ({ status: 503, headers: { 'retry-after': '1' } });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 60_000] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url());
    const publishedAt = Date.now();
    const msgId = await publish(platform, appId);
    await waitFor('the failed first attempt', async () => (await attemptsOf(platform, appId, msgId)).length === 1);
    const due = await waitFor('the retry scheduled', () => platform.server.storage.deliveries.nextDueAt());
    // The schedule's 60 s, less its 20 % jitter; Retry-After alone would have said 1 s.
    assert.ok(due - publishedAt >= 48_000, `next attempt due ${due - publishedAt} ms after publishing`);
    assert.equal(receiver.requests.length, 1);
  });

  test('after the last attempt the delivery is failed, and a resend delivers it', async (t) => {
    const receiver = await Receiver.start();
    let healthy = false;
    receiver.reply = () => (healthy ? { status: 200 } : { status: 503, body: 'down' });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 10, 10] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url());
    const msgId = await publish(platform, appId);
    const attempts = await waitFor('three failed attempts', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 3 && list[2].status === 2 && list;
    });
    assert.deepEqual(attempts.map((a) => a.statusText), ['fail', 'fail', 'fail']);
    // No fourth attempt is scheduled: the delivery has given up.
    const backlog = await platform.server.storage.deliveries.nextDueAt();
    assert.equal(backlog, null);

    healthy = true;
    const resend = await platform.api('POST', `/api/v1/app/${appId}/msg/${msgId}/endpoint/${endpointId}/resend`);
    assert.equal(resend.status, 202);
    const after = await waitFor('the manual attempt', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 4 && list;
    });
    assert.equal(after[3].status, 0);
    assert.equal(after[3].triggerType, 1, 'a resend is a manual trigger');
  });

  test('a redirect is not followed and counts as a failed attempt', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = (request) => (request.path === '/webhook' ? { status: 302, headers: { location: '/elsewhere' } } : { status: 200 });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url('/webhook'));
    const msgId = await publish(platform, appId);
    const attempts = await waitFor('the failed attempt', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 1 && list;
    });
    assert.equal(attempts[0].responseStatusCode, 302);
    assert.equal(attempts[0].status, 2, 'with a one-attempt schedule a 302 fails the delivery');
    assert.deepEqual(receiver.requests.map((r) => r.path), ['/webhook'], 'the redirect target was never requested');
  });

  test('the attempt log keeps at most 20 KB of a response body', async (t) => {
    const receiver = await Receiver.start();
    receiver.reply = () => ({ status: 200, body: 'x'.repeat(20 * 1024) + 'y'.repeat(200 * 1024) });
    const platform = await startTestPlatform({ engine });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url());
    const msgId = await publish(platform, appId);
    const [attempt] = await waitFor('the attempt', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 1 && list;
    });
    assert.equal(attempt.status, 0);
    assert.equal(attempt.response.length, 20 * 1024);
    assert.ok(!attempt.response.includes('y'));
    assert.ok(attempt.responseDurationMs >= 0);
  });
});
