import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { callApi, Cluster } from './helpers/cluster.js';
import { PrivatePostgres, privatePostgresUnavailable } from './helpers/private-postgres.js';
import { Receiver } from './helpers/receiver.js';
import type { ServerProcess } from './helpers/server-process.js';
import { POSTGRES_SKIP_REASON, TEST_POSTGRES_URL, type TestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

function isRunning(server: ServerProcess): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

/** Fails with the process's exit code and the end of its output if it is no longer running. */
function assertRunning(server: ServerProcess, name: string): void {
  if (isRunning(server)) return;
  assert.fail(`${name} process died (${server.child.exitCode ?? server.child.signalCode}); its last output:\n${server.output().slice(-3000)}`);
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

/**
 * The suite runs where PostgreSQL tests are opted in (HOOKRELAY_TEST_POSTGRES_URL, as CI sets it),
 * but on a private cluster of its own: restarting the shared server would break the other suites.
 */
const SKIP_REASON = TEST_POSTGRES_URL ? privatePostgresUnavailable() : POSTGRES_SKIP_REASON;

if (SKIP_REASON) test('readiness and recovery of split processes on PostgreSQL', { skip: SKIP_REASON }, () => {});
else describe('readiness and recovery of split processes on PostgreSQL', () => {
  test('an API and a worker report 503 while their PostgreSQL server is down (crashed, then restarted), lose nothing, and recover by themselves', async (t) => {
    const privatePg = await PrivatePostgres.start();
    let database: TestDatabase | undefined;
    let receiver: Receiver | undefined;
    let cluster: Cluster | undefined;
    t.after(async () => {
      // Every step runs, whatever failed before it: no server, process or directory is left behind.
      const errors: unknown[] = [];
      for (const step of [() => cluster?.kill(), () => receiver?.close(), () => database?.drop(), () => privatePg.destroy()]) {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
    });
    database = await privatePg.createTestDatabase();
    receiver = await Receiver.start();
    // A 20 s lease: far longer than the outage, so held outcomes are written in time and nothing is
    // sent twice; short enough that a claim whose commit reply the crash swallowed (leased rows
    // the worker never heard of) falls due again within the wait below.
    cluster = new Cluster(database, { HOOKRELAY_PG_POOL_SIZE: '4', HOOKRELAY_LEASE: '20s', HOOKRELAY_REQUEST_TIMEOUT: '5s' });
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
    await waitFor('the worker to hold requests in flight', () => receiver!.requests.length >= probes + 20);

    // The outage: the server crashes (an immediate stop: its processes quit at once, connections
    // drop, no shutdown checkpoint). Messages are published up to the last moment and while it goes
    // down: each one answered 202 was committed, and must survive the crash (fsync is on).
    for (let i = 0; i < 5; i++) {
      const res = await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'before.crash', payload: { i } });
      assert.equal(res.status, 202);
      accepted.push(res.body.id);
    }
    let crashed = false;
    const racing: { status: number; body: any }[] = [];
    const racer = (async () => {
      for (let i = 0; i < 500 && !crashed; i++) {
        // No answer at all (the API process died) is recorded, and reported below with its output.
        racing.push(await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'at.crash', payload: { i } }).catch((error: Error) => ({ status: 0, body: { error: String((error.cause as Error | undefined) ?? error) } })));
      }
    })();
    await waitFor('publishes to be racing the crash', () => racing.length >= 3);
    const stopStarted = Date.now();
    await privatePg.stop('immediate');
    t.diagnostic(`pg_ctl stop -m immediate took ${Date.now() - stopStarted} ms`);
    crashed = true;
    await racer;
    assertRunning(api, 'the API');
    assertRunning(worker, 'the worker');
    for (const res of racing) {
      if (res.status === 202) accepted.push(res.body.id);
      else assert.deepEqual([res.status, res.body?.code], [503, 'unavailable'], JSON.stringify(res.body));
    }
    const racedAccepted = racing.filter((r) => r.status === 202).length;
    t.diagnostic(`publishes racing the crash: ${racing.length}, of which ${racedAccepted} answered 202 and ${racing.length - racedAccepted} 503`);

    for (const server of [api, worker]) {
      const name = server === api ? 'the API' : 'the worker';
      const down = await waitFor(`${name} to report the outage`, async () => {
        if (!isRunning(server)) return 'died';
        const [health, ready] = await Promise.all([getJson(server.url + '/health'), getJson(server.url + '/health/ready')]);
        return health.status === 503 && ready.status === 503 && ready.body.checks.notifications === 'down' ? { health, ready } : null;
      }, 15_000, 50);
      assertRunning(server, name);
      assert.ok(down !== 'died');
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
    assertRunning(api, 'the API');
    assertRunning(worker, 'the worker');

    // The server comes back on the same port, from the crash: WAL recovery first.
    const restartStarted = Date.now();
    await privatePg.start();
    const restarted = Date.now();
    const serverLog = privatePg.log();
    assert.match(serverLog, /database system was not properly shut down; automatic recovery in progress/, 'the restart recovered from a crash');
    t.diagnostic(`pg_ctl start (crash recovery included) took ${restarted - restartStarted} ms; ${/redo done at .*/.exec(serverLog)?.[0] ?? 'no redo line in the server log'}`);
    for (const server of [api, worker]) {
      const name = server === api ? 'the API' : 'the worker';
      await waitFor(`${name} to be ready again`, async () => {
        if (!isRunning(server)) return true;
        const [health, ready] = await Promise.all([getJson(server.url + '/health'), getJson(server.url + '/health/ready')]);
        return health.status === 200 && ready.status === 200 && ready.body.checks.notifications === 'up';
      }, 30_000, 50);
      assertRunning(server, name);
      t.diagnostic(`${name} was ready again ${Date.now() - restarted} ms after the server accepted connections`);
    }

    receiver.reply = () => ({ status: 200 });
    await waitFor('every message accepted before the outage to arrive', () => {
      const ids = receiver!.distinctIds();
      return accepted.every((id) => ids.has(id));
    }, 45_000, 50);
    const after = await medianWakeLatency(api, app.body.id, receiver, 15);
    t.diagnostic(`median publish-to-arrival after the outage: ${after} ms`);
    assert.ok(after < 250, `the wake-up connection is back (median ${after} ms)`);
    const duplicates = receiver.requests.length - receiver.distinctIds().size;
    assert.equal(duplicates, 0, 'an outage shorter than the lease sends nothing twice: held outcomes are written when the database is back');
    assert.deepEqual(await cluster.stop(), [0, 0]);
  });
});
