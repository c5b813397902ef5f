import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startHarness, type Harness } from './helpers/api-harness.js';
import { createAppWithEndpoint, startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { Receiver } from './helpers/receiver.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * GET /app/{app_id}/endpoint/{endpoint_id}/stats (Svix's v1.endpoint.get-stats): the harness,
 * which runs no dispatcher, pins down lookups, errors and the creation-time window over deliveries
 * that stay pending; the whole platform, delivering to a receiver on 127.0.0.1, the other states.
 */
const counts = (success: number, fail: number, pending: number, sending: number) => ({ success, fail, pending, sending, canceled: 0 });

for (const engine of TEST_ENGINES) describe(`endpoint stats (${engine})`, () => {
  describe('lookups, errors and the creation window (no dispatcher: deliveries stay pending)', () => {
    let h: Harness;
    let appId: string;
    let endpointId: string;
    /** Creation times of the three messages sent to stats-ep, strictly increasing. */
    const created: number[] = [];

    const stats = (query = '', app = 'stats-app', endpoint = 'stats-ep') => h.request('GET', `/api/v1/app/${app}/endpoint/${endpoint}/stats${query}`);

    before(async () => {
      h = await startHarness({ engine });
      appId = (await h.request('POST', '/api/v1/app', { body: { name: 'stats', uid: 'stats-app' } })).body.id;
      endpointId = (await h.request('POST', `/api/v1/app/${appId}/endpoint`, { body: { url: 'https://example.com/a', uid: 'stats-ep', filterTypes: ['order.paid'] } })).body.id;
      await h.request('POST', `/api/v1/app/${appId}/endpoint`, { body: { url: 'https://example.com/b', uid: 'other-ep' } });
      for (let i = 0; i < 3; i++) {
        // Each message a millisecond after the last, so the window bounds can tell them apart.
        const last = created.at(-1) ?? 0;
        await waitFor('the clock to pass the previous message', () => Date.now() > last);
        const res = await h.request('POST', `/api/v1/app/${appId}/msg`, { body: { eventType: 'order.paid', payload: { i } } });
        assert.equal(res.status, 202, res.text);
        created.push(Date.parse(res.body.timestamp));
      }
      assert.equal((await h.request('POST', `/api/v1/app/${appId}/msg`, { body: { eventType: 'order.refunded', payload: {} } })).status, 202);
    });
    after(async () => {
      await h?.close();
    });

    test('counts the endpoint\'s own deliveries, by id or uid, with or without a trailing slash', async () => {
      for (const [app, endpoint] of [['stats-app', 'stats-ep'], [appId, endpointId], [appId, 'stats-ep']] as const) {
        for (const slash of ['', '/']) {
          const res = await stats(slash, app, endpoint);
          assert.equal(res.status, 200, `${app}/${endpoint}${slash}: ${res.text}`);
          assert.deepEqual(res.body, counts(0, 0, 3, 0), 'three messages, all waiting for their first attempt');
        }
      }
      assert.deepEqual((await stats('', 'stats-app', 'other-ep')).body, counts(0, 0, 4, 0), 'the other endpoint also got the refund');
    });

    test('a claim in progress counts as sending until its lease runs out', async () => {
      const leaseMs = 60_000;
      const now = Date.now();
      const claimed = await h.storage.deliveries.claimDue(now, leaseMs, 100, 1, []);
      try {
        assert.ok(claimed.some((c) => c.endpointId === endpointId));
        assert.deepEqual((await stats()).body, counts(0, 0, 2, 1));
      } finally {
        await h.storage.deliveries.release(claimed);
      }
      assert.deepEqual((await stats()).body, counts(0, 0, 3, 0), 'released: pending again');
    });

    test('since and until bound the deliveries by creation time, both inclusive', async () => {
      const [first, second, third] = created as [number, number, number];
      const at = (millis: number) => encodeURIComponent(new Date(millis).toISOString());
      assert.deepEqual((await stats(`?since=${at(second)}`)).body, counts(0, 0, 2, 0));
      assert.deepEqual((await stats(`?until=${at(second)}`)).body, counts(0, 0, 2, 0));
      assert.deepEqual((await stats(`?since=${at(second)}&until=${at(second)}`)).body, counts(0, 0, 1, 0));
      assert.deepEqual((await stats(`?since=${at(first)}&until=${at(third)}`)).body, counts(0, 0, 3, 0));
      assert.deepEqual((await stats(`?since=${at(third + 1)}`)).body, counts(0, 0, 0, 0));
      assert.deepEqual((await stats(`?until=${at(first - 1)}`)).body, counts(0, 0, 0, 0));
      assert.deepEqual((await stats(`?since=${at(third)}&until=${at(first)}`)).body, counts(0, 0, 0, 0), 'since after until: an empty window');
      // The same instant as the second message, written with a +01:00 offset.
      const offset = new Date(second + 3_600_000).toISOString().replace('Z', '+01:00');
      assert.deepEqual((await stats(`?since=${encodeURIComponent(offset)}`)).body, counts(0, 0, 2, 0), 'an RFC 3339 offset is honoured');
    });

    test('unknown application or endpoint: 404 not_found, as the other endpoint routes answer', async () => {
      const otherApp = (await h.request('POST', '/api/v1/app', { body: { name: 'elsewhere' } })).body.id;
      const cases = [
        ['no-such-app', 'stats-ep'],
        ['app_000000000000000000000000000', endpointId],
        ['stats-app', 'no-such-ep'],
        ['stats-app', 'ep_000000000000000000000000000'],
        [otherApp, endpointId],
      ];
      for (const [app, endpoint] of cases) {
        const res = await stats('', app, endpoint);
        assert.equal(res.status, 404, `${app}/${endpoint}: ${res.text}`);
        assert.equal(res.body.code, 'not_found');
        assert.equal(typeof res.body.detail, 'string');
        assert.deepEqual((await h.request('GET', `/api/v1/app/${app}/endpoint/${endpoint}`)).body, res.body, 'the same body as GET on the endpoint');
      }
    });

    test('a malformed since or until: 422 validation naming the parameter', async () => {
      const cases: [string, string][] = [
        ['?since=yesterday', 'since'],
        ['?since=', 'since'],
        ['?until=2026-13-01T00:00:00Z', 'until'],
        ['?since=2026-01-01T00:00:00Z&until=1700000000', 'until'],
      ];
      for (const [query, param] of cases) {
        const res = await stats(query);
        assert.equal(res.status, 422, `${query}: ${res.text}`);
        assert.equal(res.body.code, 'validation');
        assert.deepEqual(res.body.detail[0].loc, ['query', param], query);
      }
      assert.equal((await stats('?since=yesterday', 'no-such-app')).status, 422, 'the query is checked before the lookups');
    });

    test('needs a key', async () => {
      for (const token of [null, 'wrong-key']) {
        const res = await h.request('GET', '/api/v1/app/stats-app/endpoint/stats-ep/stats', { token });
        assert.equal(res.status, 401);
        assert.equal(res.body.code, 'authentication_failed');
      }
    });

    test('is in the OpenAPI document as v1.endpoint.get-stats, with since, until and EndpointStats', async () => {
      const doc = await h.request('GET', '/api/v1/openapi.json', { token: null });
      const operation = doc.body.paths['/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats']?.get;
      assert.equal(operation?.operationId, 'v1.endpoint.get-stats');
      const query = (operation.parameters as { in: string; name: string; required?: boolean; schema: { format?: string } }[]).filter((p) => p.in === 'query');
      assert.deepEqual(query.map((p) => [p.name, p.required ?? false, p.schema.format]).sort(), [['since', false, 'date-time'], ['until', false, 'date-time']]);
      const schema = operation.responses['200'].content['application/json'].schema;
      assert.deepEqual(Object.keys(schema.properties).sort(), ['canceled', 'fail', 'pending', 'sending', 'success']);
      assert.deepEqual([...schema.required].sort(), ['canceled', 'fail', 'pending', 'sending', 'success']);
      assert.ok(operation.responses['404'] && operation.responses['422']);
      assert.match(operation.description, /lease/);
    });
  });

  describe('over real deliveries', () => {
    let receiver: Receiver;
    before(async () => {
      receiver = await Receiver.start();
    });
    after(async () => {
      await receiver?.close();
    });

    async function statsOf(platform: TestPlatform, appId: string, endpointId: string) {
      const res = await platform.api('GET', `/api/v1/app/${appId}/endpoint/${endpointId}/stats`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    }

    async function publish(platform: TestPlatform, appId: string, payload: Record<string, unknown>): Promise<string> {
      const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'order.paid', payload });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      return res.body.id;
    }

    test('delivered messages count as success, a request still in flight as sending', async (t) => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      receiver.reply = (request) => (request.body.includes('"hold":true') ? { status: 200, after: held } : { status: 200 });
      const platform = await startTestPlatform({ engine });
      t.after(async () => {
        release();
        await platform.close();
      });
      const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url('/ok'));
      assert.deepEqual(await statsOf(platform, appId, endpointId), counts(0, 0, 0, 0));

      await publish(platform, appId, { n: 1 });
      await publish(platform, appId, { n: 2 });
      await waitFor('two successes', async () => (await statsOf(platform, appId, endpointId)).success === 2);
      assert.deepEqual(await statsOf(platform, appId, endpointId), counts(2, 0, 0, 0));

      await publish(platform, appId, { hold: true });
      await waitFor('the held request to reach the receiver', () => receiver.requests.some((r) => r.path === '/ok' && r.body.includes('"hold":true')));
      assert.deepEqual(await statsOf(platform, appId, endpointId), counts(2, 0, 0, 1), 'the receiver has not answered yet');
      release();
      await waitFor('the third success', async () => (await statsOf(platform, appId, endpointId)).success === 3);
      assert.deepEqual(await statsOf(platform, appId, endpointId), counts(3, 0, 0, 0));
    });

    test('a failing endpoint: a delivery out of attempts counts as fail, one waiting for its retry as pending', async (t) => {
      // Two attempts per delivery. A 503 asking to come back in an hour keeps its delivery
      // pending for the rest of the test; plain 500s use up both attempts at once.
      receiver.reply = (request) => (request.body.includes('"later":true') ? { status: 503, headers: { 'retry-after': '3600' } } : { status: 500, body: 'boom' });
      const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 10] });
      t.after(async () => {
        await platform.close();
      });
      const { appId, endpointId } = await createAppWithEndpoint(platform, receiver.url('/failing'));
      const failing = await publish(platform, appId, { n: 1 });
      const later = await publish(platform, appId, { later: true });
      const attemptsOf = async (msgId: string) => (await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msgId}`)).body.data.length as number;
      await waitFor('both attempts of the failing message and the first of the other', async () => (await attemptsOf(failing)) === 2 && (await attemptsOf(later)) === 1);
      // Each attempt is recorded with its delivery's new state, so both states are settled now.
      assert.deepEqual(await statsOf(platform, appId, endpointId), counts(0, 1, 1, 0));
    });
  });
});
