import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Client } from 'pg';
import { DeliveryStatus } from '../src/storage/models.js';
import { callApi, Cluster, CLUSTER_TOKEN, countDeliveries, createEndpoints, publishRoundRobin } from './helpers/cluster.js';
import { Receiver } from './helpers/receiver.js';
import type { ServerProcess } from './helpers/server-process.js';
import { createTestDatabase, POSTGRES_SKIP_REASON, TEST_POSTGRES_URL, type TestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * Horizontal scale-out on PostgreSQL with real processes: API processes that only accept, worker
 * processes that only deliver, woken across processes by LISTEN/NOTIFY and claiming with
 * FOR UPDATE SKIP LOCKED. 50 applications with one endpoint each, so every message is due once.
 */
const ENDPOINTS = 50;
const MESSAGES = 20_000;
const PUBLISH_CONCURRENCY = 64;

/** Deliveries by status, read straight from the database. */
async function deliveryStatuses(database: TestDatabase): Promise<{ success: number; other: number }> {
  const client = new Client({ connectionString: database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ success: number; other: number }>(
      'SELECT count(*) FILTER (WHERE status = $1)::int AS success, count(*) FILTER (WHERE status <> $1)::int AS other FROM deliveries',
      [DeliveryStatus.Success],
    );
    return rows[0]!;
  } finally {
    await client.end();
  }
}

/** Attempts with this outcome that a worker reports on its own /metrics (its operations listener). */
/** Attempts recorded as failed (a timeout among them may have reached the receiver all the same). */
async function failedAttempts(database: TestDatabase): Promise<number> {
  const client = new Client({ connectionString: database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ failed: number }>('SELECT count(*)::int AS failed FROM attempts WHERE status = $1', [DeliveryStatus.Fail]);
    return rows[0]!.failed;
  } finally {
    await client.end();
  }
}

async function attemptsMade(worker: ServerProcess, outcome: 'success' | 'failure' = 'success'): Promise<number> {
  const res = await fetch(worker.url + '/metrics', { headers: { authorization: `Bearer ${CLUSTER_TOKEN}` } });
  assert.equal(res.status, 200);
  const line = (await res.text()).split('\n').find((l) => l.startsWith('hookrelay_attempts_total{') && l.includes(`outcome="${outcome}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

interface Run {
  database: TestDatabase;
  receiver: Receiver;
  cluster: Cluster;
  apis: ServerProcess[];
  workers: ServerProcess[];
  appIds: string[];
}

/** A fresh database migrated by `hookrelay migrate`, 2 API processes, 3 workers, 50 endpoints. */
async function startRun(t: { after(fn: () => Promise<void>): void }, workerEnv: Record<string, string>): Promise<Run> {
  const database = await createTestDatabase('postgres');
  const receiver = await Receiver.start();
  // Small pools: five processes share the test server's 100 connections with whatever else runs.
  const cluster = new Cluster(database, { HOOKRELAY_PG_POOL_SIZE: '5' });
  t.after(async () => {
    await cluster.kill();
    await receiver.close();
    await database.drop();
  });
  cluster.migrate();
  const [apis, workers] = await Promise.all([
    Promise.all([cluster.start('api'), cluster.start('api')]),
    Promise.all([1, 2, 3].map(() => cluster.start('worker', workerEnv))),
  ]);
  const appIds = await createEndpoints(apis[0]!.url, receiver, ENDPOINTS);
  return { database, receiver, cluster, apis, workers, appIds };
}

if (!TEST_POSTGRES_URL) test('scale-out: API and worker processes on one PostgreSQL database', { skip: POSTGRES_SKIP_REASON }, () => {});
else describe('scale-out: API and worker processes on one PostgreSQL database', () => {
  test(`2 API and 3 worker processes deliver ${MESSAGES.toLocaleString('en')} messages to ${ENDPOINTS} endpoints, each exactly once`, async (t) => {
    const run = await startRun(t, {});
    const started = Date.now();
    const ids = await publishRoundRobin({ apiUrls: run.apis.map((a) => a.url), appIds: run.appIds, count: MESSAGES, concurrency: PUBLISH_CONCURRENCY });
    const published = Date.now();
    await waitFor('every delivery to arrive', () => run.receiver.requests.length >= MESSAGES, 120_000, 50);
    const delivered = Date.now();
    // Nothing is pending or leased any more, so no later request can arrive to change the count.
    await waitFor('every delivery recorded as successful', async () => (await deliveryStatuses(run.database)).success === MESSAGES, 30_000, 50);
    assert.deepEqual(await deliveryStatuses(run.database), { success: MESSAGES, other: 0 });
    const counts = countDeliveries(run.receiver, ids, ENDPOINTS);
    const perWorker = await Promise.all(run.workers.map((worker) => attemptsMade(worker)));
    t.diagnostic(
      `published ${MESSAGES} in ${published - started} ms (${Math.round((MESSAGES * 1000) / (published - started))}/s); ` +
        `all delivered ${delivered - started} ms after the first publish (${Math.round((MESSAGES * 1000) / (delivered - started))}/s); ` +
        `received ${counts.total}, duplicates ${counts.duplicates}, missing ${counts.missing}, unexpected ${counts.unexpected}; per worker ${perWorker.join('/')}`,
    );
    assert.deepEqual(counts, { total: MESSAGES, duplicates: 0, missing: 0, unexpected: 0 });
    assert.equal(perWorker.reduce((a, b) => a + b, 0), MESSAGES, 'the workers recorded one successful attempt per delivery');
    assert.ok(perWorker.every((n) => n > 0), `every worker delivered some (${perWorker.join('/')})`);
    assert.deepEqual(await run.cluster.stop(), [0, 0, 0, 0, 0], 'SIGTERM drains every process and it exits 0');
  });

  test('a worker killed by SIGKILL mid-run: every message still arrives, duplicates bounded by what that worker had unrecorded', async (t) => {
    const workerConcurrency = 32;
    // A short lease, so that the killed worker's claims are taken over within seconds (a lease must
    // outlast the request timeout).
    const run = await startRun(t, { HOOKRELAY_DISPATCHER_CONCURRENCY: String(workerConcurrency), HOOKRELAY_LEASE: '2s', HOOKRELAY_REQUEST_TIMEOUT: '1s' });
    const [victim, ...survivors] = run.workers;
    const started = Date.now();
    const publishing = publishRoundRobin({ apiUrls: run.apis.map((a) => a.url), appIds: run.appIds, count: MESSAGES, concurrency: PUBLISH_CONCURRENCY });
    // Mid-run: publishing still under way, and the victim busy delivering.
    await waitFor('a quarter delivered, the victim among the senders', async () => run.receiver.requests.length >= MESSAGES / 4 && (await attemptsMade(victim!)) > 0, 60_000, 50);
    victim!.child.kill('SIGKILL');
    assert.equal(await victim!.exited, 'SIGKILL');
    const killedAt = run.receiver.requests.length;
    const ids = await publishing;
    await waitFor('every message at its endpoint', () => countDeliveries(run.receiver, ids, ENDPOINTS).missing === 0, 120_000, 100);
    const delivered = Date.now();
    await waitFor('every delivery recorded as successful', async () => (await deliveryStatuses(run.database)).success === MESSAGES, 30_000, 50);
    const counts = countDeliveries(run.receiver, ids, ENDPOINTS);
    const failed = await failedAttempts(run.database);
    t.diagnostic(
      `killed a worker after ${killedAt} deliveries; all delivered ${delivered - started} ms after the first publish; ` +
        `received ${counts.total}, duplicates ${counts.duplicates} (worker concurrency ${workerConcurrency}), missing ${counts.missing}, unexpected ${counts.unexpected}; ` +
        `attempts recorded as failed ${failed}`,
    );
    assert.equal(counts.missing, 0);
    assert.equal(counts.unexpected, 0);
    // What the killed worker had sent but not recorded is sent again once its leases lapse. A
    // worker counts a request against its concurrency until the outcome is written, not only until
    // the response, so that is at most its concurrency. The only other source of a second copy is
    // an attempt recorded as failed that the receiver got all the same: with the 1 s request
    // timeout, a response slowed past it on a loaded machine (CI saw 33 with 32 in flight).
    // Two successful sends of one delivery would still fail this.
    assert.ok(
      counts.duplicates <= workerConcurrency + failed,
      `${counts.duplicates} duplicates: no more than the killed worker had sent and not recorded (at most ${workerConcurrency}) and the ${failed} attempts recorded as failed`,
    );
    assert.deepEqual(await Promise.all(survivors.map((w) => callApi(w.url, 'GET', '/health/ready').then((r) => r.status))), [200, 200]);
    const exits = await run.cluster.stop();
    assert.deepEqual(exits.filter((code) => code !== 0), ['SIGKILL'], 'the others drain and exit 0');
  });

  test('an endpoint\'s concurrency cap holds across all workers together', async (t) => {
    const cap = 4;
    const messages = 300;
    // Each worker sends at most 2 requests at a time, so that no worker can hold the whole cap:
    // more than 2 open at once means that workers overlapped, and the cap must hold across them.
    // (With no such limit, whichever worker first took the cap could keep it: a worker whose
    // request ends claims again at once, while the others, woken by new messages or their idle
    // poll, find the cap full again.)
    const perWorkerLimit = 2;
    const run = await startRun(t, { HOOKRELAY_ENDPOINT_CONCURRENCY: String(cap), HOOKRELAY_DISPATCHER_CONCURRENCY: String(perWorkerLimit) });
    // Every request to the endpoint is held for 30 ms; the receiver counts how many are open at once.
    let open = 0;
    let mostOpen = 0;
    run.receiver.reply = () => {
      open++;
      mostOpen = Math.max(mostOpen, open);
      return { status: 200, after: new Promise<void>((resolve) => setTimeout(() => { open--; resolve(); }, 30)) };
    };
    const started = Date.now();
    const ids = await publishRoundRobin({ apiUrls: run.apis.map((a) => a.url), appIds: [run.appIds[0]!], count: messages, concurrency: 16 });
    await waitFor('every message at the endpoint', () => run.receiver.distinctIds().size === messages, 60_000, 20);
    const drainedMs = Date.now() - started;
    const perWorker = await Promise.all(run.workers.map((worker) => attemptsMade(worker)));
    t.diagnostic(`${messages} messages delivered in ${drainedMs} ms; most requests open at once: ${mostOpen} (cap ${cap}); sent per worker ${perWorker.join('/')}; duplicates ${run.receiver.requests.length - messages}`);
    assert.ok(mostOpen <= cap, `${mostOpen} requests were open at once; the cap is ${cap} over all 3 workers`);
    assert.ok(mostOpen > perWorkerLimit, `${mostOpen} requests were open at once: more than one worker's at a time`);
    assert.ok(perWorker.filter((n) => n > 0).length >= 2, 'more than one worker delivered to the endpoint');
    assert.equal(run.receiver.requests.length, messages, 'nothing was sent twice');
    assert.equal(ids.length, messages);
    assert.deepEqual(await run.cluster.stop(), [0, 0, 0, 0, 0]);
  });

  test('endpoint failure tracking is one streak across all workers', async (t) => {
    const messages = 90;
    // One attempt per message, so that each message is exactly one failure. Each worker sends 2
    // requests at a time and each answer takes 20 ms, so that one worker cannot take every message
    // before the others are woken (see the cap test above).
    const run = await startRun(t, { HOOKRELAY_RETRY_SCHEDULE: '0', HOOKRELAY_DISPATCHER_CONCURRENCY: '2' });
    run.receiver.reply = () => ({ status: 503, delayMs: 20 });
    const appId = run.appIds[0]!;
    const endpoint = (await callApi(run.apis[0]!.url, 'GET', `/api/v1/app/${appId}/endpoint`)).body.data[0];
    await publishRoundRobin({ apiUrls: run.apis.map((a) => a.url), appIds: [appId], count: messages, concurrency: 16 });
    const health = await waitFor('every failure counted', async () => {
      const res = await callApi(run.apis[1]!.url, 'GET', `/api/v1/app/${appId}/endpoint/${endpoint.id}/health`);
      return res.body.consecutiveFailures === messages && res.body;
    }, 60_000, 50);
    const perWorker = await Promise.all(run.workers.map((worker) => attemptsMade(worker, 'failure')));
    t.diagnostic(`failures per worker ${perWorker.join('/')}; streak ${health.consecutiveFailures} since ${health.failingSince}`);
    assert.equal(run.receiver.requests.length, messages);
    assert.ok(perWorker.filter((n) => n > 0).length >= 2, 'more than one worker recorded failures');
    assert.equal(perWorker.reduce((a, b) => a + b, 0), messages);
    assert.equal(health.lastFailureCode, 'HTTP_503');
    assert.equal(health.disabledAt, null);
    assert.deepEqual(await run.cluster.stop(), [0, 0, 0, 0, 0]);
  });
});
