import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { spawnServer, freePort, type ServerProcess } from './helpers/server-process.js';
import { waitFor } from './helpers/wait-for.js';
import { createTestDatabase, TEST_ENGINES } from './helpers/test-database.js';

const TOKEN = 'crash-test-token';

async function call(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => null)) as any };
}

for (const engine of TEST_ENGINES) describe(`crash recovery (${engine})`, () => {
  test('kill -9 while 1,000 messages are being published and delivered: every accepted message arrives after restart', async (t) => {
    const database = await createTestDatabase(engine);
    const receiver = await Receiver.start();
    // Slow enough that the kill lands with deliveries in flight and a backlog still pending.
    receiver.reply = () => ({ status: 200, delayMs: 5 });
    const env = {
      HOOKRELAY_DATABASE_URL: database.url,
      HOOKRELAY_DATA_DIR: database.dir,
      HOOKRELAY_API_KEY: TOKEN,
      HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32',
      HOOKRELAY_LEASE: '2s',
      HOOKRELAY_REQUEST_TIMEOUT: '1s',
      HOOKRELAY_ENDPOINT_CONCURRENCY: '8',
    };
    let server: ServerProcess | null = null;
    t.after(async () => {
      server?.child.kill('SIGKILL');
      await receiver.close();
      await database.drop();
    });

    server = await spawnServer(env, await freePort());
    const app = await call(server.url, 'POST', '/api/v1/app', { name: 'crash' });
    assert.equal(app.status, 201);
    assert.equal((await call(server.url, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url() })).status, 201);

    const total = 1000;
    const accepted = new Set<string>();
    const refused: number[] = [];
    let killed = false;
    let next = 0;
    const publishOne = async (i: number, base: string) => {
      try {
        const res = await call(base, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'load.test', payload: { i }, eventId: `evt-${i}` });
        if (res.status === 202) accepted.add(res.body.id);
        else if (res.status === 409) return; // accepted before the crash; its response was lost
        else refused.push(i);
      } catch {
        refused.push(i); // connection reset by the kill: not accepted
      }
    };
    const firstUrl = server.url;
    const workers = Array.from({ length: 16 }, async () => {
      while (next < total && !killed) await publishOne(next++, firstUrl);
    });
    // Kill while publishers are still sending and deliveries are in flight.
    await waitFor('publishing and deliveries under way', () => accepted.size >= 400 && receiver.requests.length >= 20, 30_000, 2);
    server.child.kill('SIGKILL');
    killed = true;
    assert.equal(await server.exited, 'SIGKILL');
    await Promise.all(workers);
    const deliveredBeforeCrash = receiver.requests.length;

    server = await spawnServer(env, await freePort());
    // Whatever was never acknowledged is published again (same eventId: duplicates are refused).
    const pending = [...refused, ...Array.from({ length: total - next }, (_, k) => next + k)];
    refused.length = 0;
    for (const i of pending) await publishOne(i, server.url);
    assert.deepEqual(refused, [], 'the restarted server accepts the rest');

    await waitFor('every accepted message delivered', () => [...accepted].every((id) => receiver.distinctIds().has(id)), 60_000, 50);
    const messages = await call(server.url, 'GET', `/api/v1/app/${app.body.id}/msg?limit=1`);
    assert.equal(messages.status, 200);
    const distinct = receiver.distinctIds().size;
    const duplicates = receiver.requests.length - distinct;
    t.diagnostic(`accepted=${accepted.size} delivered before crash=${deliveredBeforeCrash} distinct delivered=${distinct} duplicates=${duplicates}`);
    assert.ok(accepted.size >= total - 16, 'nearly every message got its 202 (at most one per publisher was cut by the kill)');
    assert.equal(distinct, await countMessages(server.url, app.body.id), 'every stored message was delivered');

    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, 'SIGTERM drains and exits 0');
    server = null;
  });
});

async function countMessages(base: string, appId: string): Promise<number> {
  let count = 0;
  let iterator: string | null = null;
  for (;;) {
    const res = await call(base, 'GET', `/api/v1/app/${appId}/msg?limit=250${iterator ? `&iterator=${iterator}` : ''}`);
    count += res.body.data.length;
    if (res.body.done) return count;
    iterator = res.body.iterator;
  }
}
