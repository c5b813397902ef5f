import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, createAppWithEndpoint, TEST_TOKEN } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

function metricValue(text: string, name: string, labels = ''): number | null {
  const line = text.split('\n').find((l) => l.startsWith(name + (labels ? `{${labels}}` : ' ')) || (labels === '' && l.startsWith(name + '{') === false && l.startsWith(name + ' ')));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : null;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url + '/metrics', { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  return res.text();
}

for (const engine of TEST_ENGINES) describe(`observability (${engine})`, () => {
  test('/metrics reports acceptance, attempts by outcome and class, latency, backlog and in-flight, across the dispatcher thread', async (t) => {
    const good = await Receiver.start();
    const bad = await Receiver.start();
    bad.reply = () => ({ status: 502 });
    const platform = await startTestPlatform({ engine, retryScheduleMs: [0, 60_000] });
    t.after(async () => {
      await platform.close();
      await good.close();
      await bad.close();
    });
    assert.equal(platform.config.dispatcherThread, true, 'the dispatcher runs in its worker thread here');
    const { appId } = await createAppWithEndpoint(platform, good.url());
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/endpoint`, { url: bad.url() })).status, 201);

    const health = await fetch(platform.server.url + '/health');
    assert.equal(health.status, 200);

    await Promise.all(Array.from({ length: 30 }, (_, i) => platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'x.y', payload: { i } })));
    await waitFor('30 good and 30 bad attempts', () => good.requests.length === 30 && bad.requests.length === 30);

    const text = await waitFor('metrics to show every attempt', async () => {
      const body = await scrape(platform.server.url);
      return metricValue(body, 'hookrelay_attempts_total', 'outcome="failure",status_class="5xx"') === 30 && body;
    });
    assert.equal(metricValue(text, 'hookrelay_messages_accepted_total'), 30);
    assert.equal(metricValue(text, 'hookrelay_deliveries_created_total'), 60);
    assert.equal(metricValue(text, 'hookrelay_attempts_total', 'outcome="success",status_class="2xx"'), 30);
    assert.equal(metricValue(text, 'hookrelay_delivery_latency_seconds_count'), 30);
    assert.equal(metricValue(text, 'hookrelay_deliveries_in_flight'), 0);
    assert.ok(metricValue(text, 'hookrelay_ingest_group_size_count')! <= 30);
    // The failed deliveries wait a minute for their retry: pending, but not due.
    assert.equal(metricValue(text, 'hookrelay_due_backlog'), 0);
    assert.equal(metricValue(text, 'hookrelay_oldest_due_age_seconds'), 0);
    // The process's own health, under Node's usual names.
    assert.ok(metricValue(text, 'process_resident_memory_bytes')! > 10 * 1024 * 1024, 'resident memory');
    assert.ok(metricValue(text, 'process_cpu_seconds_total')! > 0, 'CPU used');
    assert.ok(metricValue(text, 'nodejs_heap_size_used_bytes')! > 0, 'heap');
    assert.notEqual(metricValue(text, 'nodejs_eventloop_lag_p99_seconds'), null, 'event loop delay');
    // SQLite's WAL, from the checkpoint thread (PostgreSQL has no such thread).
    if (engine === 'sqlite') assert.ok(metricValue(text, 'hookrelay_sqlite_wal_bytes')! >= 0, 'WAL in use');
    else assert.equal(metricValue(text, 'hookrelay_sqlite_wal_bytes'), null);
  });

  test('the due backlog and its age show deliveries that wait', async (t) => {
    const stuck = await Receiver.start();
    stuck.reply = () => ({ hang: true });
    const platform = await startTestPlatform({ engine, endpointConcurrency: 1, requestTimeoutMs: 30_000 });
    t.after(async () => {
      await stuck.close(); // ends the hanging request, so shutdown need not wait for its timeout
      await platform.close();
    });
    const { appId } = await createAppWithEndpoint(platform, stuck.url());
    assert.equal((await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'x.y', payload: { i: 0 } })).status, 202);
    await waitFor('one request hanging', () => stuck.requests.length === 1);
    // The endpoint is now at its cap, so these are stored as due deliveries rather than handed over.
    for (let i = 1; i < 5; i++) assert.equal((await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'x.y', payload: { i } })).status, 202);
    const text = await waitFor('a backlog with age', async () => {
      const body = await scrape(platform.server.url);
      return (metricValue(body, 'hookrelay_oldest_due_age_seconds') ?? 0) > 0 && body;
    });
    // One is in flight (leased, so not due); the other four wait behind the endpoint's cap of 1.
    assert.equal(metricValue(text, 'hookrelay_due_backlog'), 4);
    assert.equal(metricValue(text, 'hookrelay_deliveries_in_flight'), 1);
  });

  test('concurrent publishes share group commits', async (t) => {
    const platform = await startTestPlatform({ engine, syncCommit: true });
    t.after(() => platform.close());
    const app = await platform.api('POST', '/api/v1/app', { name: 'group commit' });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => platform.api('POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'x.y', payload: { i } })));
    assert.ok(results.every((r) => r.status === 202));
    const text = await scrape(platform.server.url);
    const commits = metricValue(text, 'hookrelay_ingest_group_size_count')!;
    assert.equal(metricValue(text, 'hookrelay_ingest_group_size_sum'), 100);
    assert.ok(commits < 100, `100 concurrent messages took ${commits} commits`);
  });
});
