import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, test } from 'node:test';
import { startHarness, type Harness } from './helpers/api-harness.js';
import { createAppWithEndpoint, startTestPlatform } from './helpers/platform.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

const SECRET_PAYLOAD = { card: '4242 4242 4242 4242', note: 'sent by mistake' };

for (const engine of TEST_ENGINES) describe(`message content expunge (${engine})`, () => {
  let h: Harness;
  let appId: string;
  let endpointId: string;
  before(async () => {
    h = await startHarness({ engine });
    const app = await h.request('POST', '/api/v1/app', { body: { name: 'expunge', uid: 'expunge-app' } });
    appId = app.body.id;
    const endpoint = await h.request('POST', `/api/v1/app/${appId}/endpoint`, { body: { url: 'https://example.com/hook', uid: 'expunge-ep' } });
    assert.equal(endpoint.status, 201, endpoint.text);
    endpointId = endpoint.body.id;
  });
  after(async () => {
    await h.close();
  });

  async function publish(body: Record<string, unknown>): Promise<any> {
    const res = await h.request('POST', `/api/v1/app/${appId}/msg`, { body: { eventType: 'card.saved', ...body } });
    assert.equal(res.status, 202, res.text);
    return res.body;
  }

  it('answers 204 without a body; the message then reads with payload {}, and a repeat is 204 too', async () => {
    const msg = await publish({ payload: SECRET_PAYLOAD, eventId: 'card-1', channels: ['billing'], tags: ['t1'] });
    const res = await h.request('DELETE', `/api/v1/app/${appId}/msg/${msg.id}/content`);
    assert.equal(res.status, 204);
    assert.equal(res.text, '');

    const got = await h.request('GET', `/api/v1/app/${appId}/msg/${msg.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, { ...msg, payload: {} }, 'everything but the payload is kept');
    const listed = await h.request('GET', `/api/v1/app/${appId}/msg?limit=250`);
    assert.deepEqual(listed.body.data.find((m: any) => m.id === msg.id).payload, {});
    assert.ok(!JSON.stringify((await h.database.dump())['messages']).includes('4242'), 'the payload is gone from the database');

    assert.equal((await h.request('DELETE', `/api/v1/app/${appId}/msg/${msg.id}/content`)).status, 204);
  });

  it('takes the message by eventId and the application by uid, as the other message routes do', async () => {
    const msg = await publish({ payload: SECRET_PAYLOAD, eventId: 'card-2' });
    assert.equal((await h.request('DELETE', '/api/v1/app/expunge-app/msg/card-2/content')).status, 204);
    assert.deepEqual((await h.request('GET', `/api/v1/app/${appId}/msg/${msg.id}`)).body.payload, {});
  });

  it('is 404 for an unknown application or message, and for a message of another application', async () => {
    const msg = await publish({ payload: SECRET_PAYLOAD });
    const other = await h.request('POST', '/api/v1/app', { body: { name: 'other' } });
    for (const path of [`/api/v1/app/app_unknown/msg/${msg.id}/content`, `/api/v1/app/${appId}/msg/msg_unknown/content`, `/api/v1/app/${other.body.id}/msg/${msg.id}/content`]) {
      const res = await h.request('DELETE', path);
      assert.equal(res.status, 404, path);
      assert.equal(res.body.code, 'not_found');
    }
    assert.deepEqual((await h.request('GET', `/api/v1/app/${appId}/msg/${msg.id}`)).body.payload, SECRET_PAYLOAD, 'nothing was expunged');
  });

  it('needs a key, and is in the OpenAPI document as v1.message.expunge-content', async () => {
    const msg = await publish({ payload: SECRET_PAYLOAD });
    assert.equal((await h.request('DELETE', `/api/v1/app/${appId}/msg/${msg.id}/content`, { token: null })).status, 401);
    assert.deepEqual((await h.request('GET', `/api/v1/app/${appId}/msg/${msg.id}`)).body.payload, SECRET_PAYLOAD);
    const doc = await h.request('GET', '/api/v1/openapi.json', { token: null });
    const operation = doc.body.paths['/api/v1/app/{app_id}/msg/{msg_id}/content']?.delete;
    assert.equal(operation?.operationId, 'v1.message.expunge-content');
    assert.ok(operation.responses['204'] && operation.responses['404']);
  });

  it('refuses to resend an expunged message (400 missing_payload, as Svix) and writes nothing', async () => {
    const msg = await publish({ payload: SECRET_PAYLOAD, eventId: 'card-resend' });
    const kept = await publish({ payload: { fine: true } });
    assert.equal((await h.request('DELETE', `/api/v1/app/${appId}/msg/${msg.id}/content`)).status, 204);
    const snapshot = await h.database.dump();
    const wakes = h.wakes;
    // By ids, and by application uid, eventId and endpoint uid.
    for (const path of [`/api/v1/app/${appId}/msg/${msg.id}/endpoint/${endpointId}/resend`, '/api/v1/app/expunge-app/msg/card-resend/endpoint/expunge-ep/resend']) {
      const res = await h.request('POST', path);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'missing_payload');
      assert.match(res.body.detail, /expunged/);
    }
    assert.deepEqual(await h.database.dump(), snapshot, 'no delivery was reset and no attempt recorded');
    assert.equal(h.wakes, wakes, 'the dispatcher was not woken');

    // Unknown parts of the path are still 404 first, and a message with its content is resent.
    const unknownEndpoint = await h.request('POST', `/api/v1/app/${appId}/msg/${msg.id}/endpoint/ep_000000000000000000000000000/resend`);
    assert.equal(unknownEndpoint.status, 404);
    assert.equal(unknownEndpoint.body.code, 'not_found');
    assert.equal((await h.request('POST', `/api/v1/app/${appId}/msg/${kept.id}/endpoint/${endpointId}/resend`)).status, 202);

    const doc = await h.request('GET', '/api/v1/openapi.json', { token: null });
    const operation = doc.body.paths['/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend']?.post;
    assert.equal(operation?.operationId, 'v1.message-attempt.resend');
    assert.ok(operation.responses['400'], 'the refusal is in the OpenAPI document');
  });

  it('the dispatcher is given no payload for an expunged message; a real {} payload is still sent', async () => {
    // No dispatcher runs in the harness: the deliveries of these messages wait, pending.
    const expunged = await publish({ payload: SECRET_PAYLOAD });
    const empty = await publish({ payload: {} });
    assert.equal((await h.request('DELETE', `/api/v1/app/${appId}/msg/${expunged.id}/content`)).status, 204);
    const context = await h.storage.deliveries.loadContext([expunged.id, empty.id], [], Date.now());
    assert.deepEqual([...context.messages.keys()], [empty.id]);
    assert.equal(context.messages.get(empty.id)?.payload, '{}');
  });
});

/**
 * A receiver that holds the first request until `release` is called, so a test can act while a
 * delivery is in flight; it answers that one 500 and any later one 200.
 */
async function gatedReceiver() {
  const bodies: string[] = [];
  let held: ServerResponse | null = null;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      bodies.push(body);
      if (bodies.length === 1) held = res;
      else res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    bodies,
    release: () => held?.writeHead(500).end('not now'),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

for (const engine of TEST_ENGINES) describe(`expunge and delivery (${engine})`, () => {
  test('a retry after the expunge sends nothing: the delivery ends as a failed HOOKRELAY_GONE attempt', async (t) => {
    const receiver = await gatedReceiver();
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 20, 20] });
    t.after(async () => {
      await platform.close();
      await receiver.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url);
    const msg = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'card.saved', payload: SECRET_PAYLOAD });
    assert.equal(msg.status, 202);

    // The first attempt is in flight with the payload (a request already sent cannot be recalled).
    await waitFor('the first request', () => receiver.bodies.length === 1);
    assert.deepEqual(JSON.parse(receiver.bodies[0]!), SECRET_PAYLOAD);
    assert.equal((await platform.api('DELETE', `/api/v1/app/${appId}/msg/${msg.body.id}/content`)).status, 204);
    receiver.release();

    const attempts = await waitFor('the retry, refused', async () => {
      const list = (await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msg.body.id}`)).body.data as any[];
      return list.length === 2 && list.reverse();
    });
    assert.equal(attempts[0].responseStatusCode, 500);
    assert.equal(attempts[1].responseStatusCode, 0);
    assert.equal(attempts[1].status, 2, 'failed for good: the schedule had another retry left');
    assert.match(attempts[1].response, /^HOOKRELAY_GONE/);
    // The retry's attempt is the HOOKRELAY_GONE record (a send would have recorded the receiver's
    // answer), and the delivery is finished, so no later send can come: no wait is needed here.
    assert.equal(receiver.bodies.length, 1, 'nothing was sent after the expunge');
  });
});
