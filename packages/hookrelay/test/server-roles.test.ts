import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it, test } from 'node:test';
import { buildOperationsApp } from '../src/api/build-app.js';
import { ConfigError, loadConfig } from '../src/config/config.js';
import { startHarness } from './helpers/api-harness.js';
import { callApi, Cluster, CLUSTER_TOKEN } from './helpers/cluster.js';
import { startTestPlatform } from './helpers/platform.js';
import { Receiver } from './helpers/receiver.js';
import { createTestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

async function getJson(url: string, token?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
}

describe('server roles', () => {
  it('HOOKRELAY_ROLE is all by default, takes api and worker, and names itself when wrong', () => {
    assert.equal(loadConfig({}).role, 'all');
    assert.equal(loadConfig({ HOOKRELAY_ROLE: 'api' }).role, 'api');
    assert.equal(loadConfig({ HOOKRELAY_ROLE: 'worker' }).role, 'worker');
    assert.throws(() => loadConfig({ HOOKRELAY_ROLE: 'both' }), (error: unknown) => error instanceof ConfigError && error.setting === 'HOOKRELAY_ROLE');
    // The one refusal: nobody else can open an in-memory database, so a split role would be useless.
    assert.throws(() => loadConfig({ HOOKRELAY_ROLE: 'worker', HOOKRELAY_DATABASE_URL: 'sqlite::memory:' }), /in-memory SQLite database is private/);
    assert.equal(loadConfig({ HOOKRELAY_ROLE: 'all', HOOKRELAY_DATABASE_URL: 'sqlite::memory:' }).role, 'all');
  });

  it('`serve --role` refuses an unknown role like a bad setting (exit 78)', () => {
    const result = spawnSync(process.execPath, [CLI, 'serve', '--role', 'dispatcher'], { env: { ...process.env, HOOKRELAY_ROLE: '' }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(result.status, 78);
    assert.match(result.stderr, /Invalid setting HOOKRELAY_ROLE: expected one of api, worker, all, got "dispatcher"/);
  });

  it('/health/ready: 200 with the checks of role all, 503 naming what is down', async (t) => {
    const platform = await startTestPlatform();
    t.after(() => platform.close());
    const ready = await getJson(platform.server.url + '/health/ready');
    assert.deepEqual(ready, { status: 200, body: { status: 'ready', role: 'all', checks: { database: 'up', dispatcher: 'up' } } });

    // A worker's listener whose dispatcher is gone, and one whose database is gone.
    const harness = await startHarness();
    t.after(() => harness.close());
    let dispatcherUp = false;
    const ops = await buildOperationsApp({ config: harness.config, storage: harness.storage, renderMetrics: async () => ({ contentType: 'text/plain', body: '' }), logger: false, processStatus: () => ({ role: 'worker', required: { dispatcher: dispatcherUp }, optional: { notifications: false } }) });
    t.after(() => ops.close());
    const noDispatcher = await ops.inject({ method: 'GET', url: '/health/ready' });
    assert.equal(noDispatcher.statusCode, 503);
    assert.deepEqual(noDispatcher.json(), { status: 'unavailable', code: 'unavailable', detail: 'Not ready: dispatcher is down', role: 'worker', checks: { database: 'up', dispatcher: 'down', notifications: 'down' } });
    dispatcherUp = true;
    const onlyOptionalDown = await ops.inject({ method: 'GET', url: '/api/v1/health/ready' });
    assert.equal(onlyOptionalDown.statusCode, 200, 'the wake-up connection is reported, but its loss only slows things down');
    await harness.disconnect();
    const noDatabase = await ops.inject({ method: 'GET', url: '/health/ready' });
    assert.equal(noDatabase.statusCode, 503);
    assert.equal(noDatabase.json().detail, 'Not ready: database is down');
    assert.equal((await ops.inject({ method: 'GET', url: '/health' })).statusCode, 503);
  });

  test('an API process and a worker process on one SQLite file: the worker delivers what the API accepts; it serves only health and metrics', async (t) => {
    const database = await createTestDatabase('sqlite');
    const receiver = await Receiver.start();
    const cluster = new Cluster(database);
    t.after(async () => {
      await cluster.kill();
      await receiver.close();
      await database.drop();
    });
    const api = await cluster.start('api');
    const worker = await cluster.start('worker');
    assert.match(api.output(), /split role on SQLite works/, 'the API warns that scale-out is PostgreSQL\'s job');
    assert.deepEqual(await getJson(api.url + '/health/ready'), { status: 200, body: { status: 'ready', role: 'api', checks: { database: 'up' } } });
    assert.deepEqual(await getJson(worker.url + '/health/ready'), { status: 200, body: { status: 'ready', role: 'worker', checks: { database: 'up', dispatcher: 'up' } } });

    const app = await callApi(api.url, 'POST', '/api/v1/app', { name: 'roles' });
    assert.equal((await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url() })).status, 201);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await callApi(api.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'a.b', payload: { i } })).body.id);
    // No wake-up crosses processes on SQLite: the worker's idle poll (at most a second) finds them.
    await waitFor('the worker to deliver what the API accepted', () => ids.every((id) => receiver.distinctIds().has(id)), 10_000, 20);

    assert.equal((await getJson(worker.url + '/health')).status, 200);
    const metrics = await getJson(worker.url + '/metrics', CLUSTER_TOKEN);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /hookrelay_attempts_total\{outcome="success",status_class="2xx"\} 5/, 'the worker\'s metrics count its attempts');
    assert.equal((await getJson(worker.url + '/metrics')).status, 401, 'metrics need the key on a worker too');
    const noApi = await getJson(worker.url + `/api/v1/app/${app.body.id}`, CLUSTER_TOKEN);
    assert.equal(noApi.status, 404, 'a worker serves no API');
    assert.equal(noApi.body.code, 'not_found');
    assert.equal((await getJson(api.url + '/metrics', CLUSTER_TOKEN)).body.includes('hookrelay_attempts_total{'), false, 'the API process sends nothing');
    assert.deepEqual(await cluster.stop(), [0, 0]);
  });
});
