import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Client } from 'pg';
import { callApi, Cluster } from './helpers/cluster.js';
import { Receiver } from './helpers/receiver.js';
import type { ServerProcess } from './helpers/server-process.js';
import { createTestDatabase, postgresDatabaseName, POSTGRES_SKIP_REASON, TEST_POSTGRES_URL } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

/**
 * Publish-to-arrival times of messages sent one at a time to an idle API and worker: the median
 * shows whether the worker was woken across processes (LISTEN/NOTIFY: milliseconds) or found the
 * work by its idle poll (uniform over a second: median about 500 ms).
 */
async function medianWakeLatency(api: ServerProcess, appId: string, receiver: Receiver, samples: number): Promise<number> {
  const latencies: number[] = [];
  for (let i = 0; i < samples; i++) {
    const before = receiver.requests.length;
    const started = Date.now();
    const res = await callApi(api.url, 'POST', `/api/v1/app/${appId}/msg`, { eventType: 'wake.probe', payload: { i } });
    assert.equal(res.status, 202);
    const request = await waitFor('the probe to arrive', () => receiver.requests.slice(before).find((r) => r.headers['webhook-id'] === res.body.id), 10_000, 2);
    latencies.push(request.receivedAt - started);
  }
  return latencies.sort((a, b) => a - b)[Math.floor(samples / 2)]!;
}

if (!TEST_POSTGRES_URL) test('readiness and recovery of split processes on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else describe('readiness and recovery of split processes on PostgreSQL', () => {
  test('an API and a worker report 503 while their database refuses connections, lose nothing, and recover by themselves', async (t) => {
    const database = await createTestDatabase('postgres');
    const name = postgresDatabaseName(database.url);
    const receiver = await Receiver.start();
    const cluster = new Cluster(database, { HOOKRELAY_PG_POOL_SIZE: '4' });
    // On the server's own database: ALTER DATABASE cannot act on the database it is connected to.
    const admin = new Client({ connectionString: TEST_POSTGRES_URL! });
    await admin.connect();
    t.after(async () => {
      await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`).catch(() => {});
      await admin.end();
      await cluster.kill();
      await receiver.close();
      await database.drop();
    });
    cluster.migrate();
    // Roles by HOOKRELAY_ROLE here (the scale-out suite uses --role).
    const api = await cluster.start('api', {}, 'env');
    const worker = await cluster.start('worker', {}, 'env');

    for (const [server, body] of [
      [api, { status: 'ready', role: 'api', checks: { database: 'up', notifications: 'up' } }],
      [worker, { status: 'ready', role: 'worker', checks: { database: 'up', dispatcher: 'up', notifications: 'up' } }],
    ] as const) {
      assert.deepEqual(await getJson(server.url + '/health/ready'), { status: 200, body });
      assert.deepEqual(await getJson(server.url + '/api/v1/health/ready'), { status: 200, body });
    }

    const app = await callApi(api.url, 'POST', '/api/v1/app', { name: 'outage' });
    assert.equal((await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url() })).status, 201);
    const before = await medianWakeLatency(api, app.body.id, receiver, 15);
    t.diagnostic(`median publish-to-arrival before the outage: ${before} ms`);
    assert.ok(before < 250, `the worker is woken across processes (median ${before} ms; its idle poll alone would give about 500)`);

    // A backlog when the outage starts: requests the receiver holds (the endpoint's 20 slots) and
    // accepted messages still pending behind them.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    receiver.reply = () => ({ status: 200, after: held });
    const probes = receiver.requests.length;
    const accepted: string[] = [];
    for (let i = 0; i < 100; i++) {
      const res = await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'before.outage', payload: { i } });
      assert.equal(res.status, 202);
      accepted.push(res.body.id);
    }
    await waitFor('the worker to hold requests in flight', () => receiver.requests.length >= probes + 20);

    // The outage: no new connections to this database, and the open ones ended.
    await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
    await waitFor('every connection to the database to be ended', async () => {
      const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [name]);
      for (const { pid } of rows) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      return rows.length === 0;
    });
    for (const server of [api, worker]) {
      const down = await waitFor(`${server === api ? 'the API' : 'the worker'} to report the outage`, async () => {
        const [health, ready] = await Promise.all([getJson(server.url + '/health'), getJson(server.url + '/health/ready')]);
        return health.status === 503 && ready.status === 503 && ready.body.checks.notifications === 'down' ? { health, ready } : null;
      }, 15_000, 50);
      assert.equal(down.health.body.code, 'unavailable');
      assert.equal(down.ready.body.code, 'unavailable');
      assert.equal(down.ready.body.status, 'unavailable');
      assert.equal(down.ready.body.checks.database, 'down');
      assert.match(down.ready.body.detail, /database is down/);
      if (server === worker) assert.equal(down.ready.body.checks.dispatcher, 'up', 'the dispatcher keeps running, retrying');
    }
    const refused = await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'during.outage', payload: {} });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'unavailable');
    // The held requests finish now; their outcomes cannot be written until the database is back.
    // The outage lasts until the worker has failed both to record them and to claim more (it logs
    // each, and retries), so that recovery is tested from there.
    release();
    await waitFor('the worker to fail writing outcomes and claiming', () => /recording attempts failed/.test(worker.output()) && /claiming deliveries failed/.test(worker.output()), 15_000, 50);

    await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
    for (const server of [api, worker]) {
      await waitFor(`${server === api ? 'the API' : 'the worker'} to be ready again`, async () => {
        const [health, ready] = await Promise.all([getJson(server.url + '/health'), getJson(server.url + '/health/ready')]);
        return health.status === 200 && ready.status === 200 && ready.body.checks.notifications === 'up';
      }, 30_000, 50);
    }
    assert.equal(api.child.exitCode, null, 'the API process survived');
    assert.equal(worker.child.exitCode, null, 'the worker process survived');

    receiver.reply = () => ({ status: 200 });
    await waitFor('every message accepted before the outage to arrive', () => {
      const ids = receiver.distinctIds();
      return accepted.every((id) => ids.has(id));
    }, 30_000, 50);
    const after = await medianWakeLatency(api, app.body.id, receiver, 15);
    t.diagnostic(`median publish-to-arrival after the outage: ${after} ms`);
    assert.ok(after < 250, `the wake-up connection is back (median ${after} ms)`);
    const duplicates = receiver.requests.length - receiver.distinctIds().size;
    assert.equal(duplicates, 0, 'an outage shorter than the lease sends nothing twice: held outcomes are written when the database is back');
    assert.deepEqual(await cluster.stop(), [0, 0]);
  });
});
