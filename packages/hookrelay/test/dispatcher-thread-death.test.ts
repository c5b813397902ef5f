import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { callApi, Cluster } from './helpers/cluster.js';
import { Receiver } from './helpers/receiver.js';
import { createTestDatabase, TEST_ENGINES } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/** Makes the dispatcher thread of the child die on SIGUSR2 (see the file). */
const FAULT_PRELOAD = fileURLToPath(new URL('./helpers/dispatcher-thread-fault.cjs', import.meta.url));

interface LogLine {
  level: number;
  msg: string;
  err?: { message?: string };
}

function fatalLines(output: string): LogLine[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine)
    .filter((line) => line.level === 60);
}

// `hookrelay serve` runs its dispatcher in a worker thread on either engine; on SQLite it is the
// only dispatcher there is, so a process that went on without it would deliver nothing.
for (const engine of TEST_ENGINES) test(`the dispatcher thread dies: the process logs it and exits 1, and a message accepted before is delivered after a restart (${engine})`, async (t) => {
  const database = await createTestDatabase(engine);
  const receiver = await Receiver.start();
  // The first request is never answered: when the thread dies, the delivery is in flight and leased.
  receiver.reply = (_request, index) => (index === 0 ? { hang: true } : { status: 200, body: 'ok' });
  // The lease must be at least twice the request timeout (config.ts); short, so that the restarted
  // server takes the delivery soon.
  const cluster = new Cluster(database, { HOOKRELAY_REQUEST_TIMEOUT: '1500ms', HOOKRELAY_LEASE: '3s' });
  t.after(async () => {
    await cluster.kill();
    await receiver.close();
    await database.drop();
  });

  const first = await cluster.start('all', {}, 'flag', [`--require=${FAULT_PRELOAD}`]);
  const app = await callApi(first.url, 'POST', '/api/v1/app', { name: 'thread death' });
  assert.equal(app.status, 201);
  assert.equal((await callApi(first.url, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url() })).status, 201);
  const msg = await callApi(first.url, 'POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'thread.death', payload: { n: 1 } });
  assert.equal(msg.status, 202);
  await waitFor('the first request, in flight', () => receiver.requests.length === 1);

  let exitCode: number | string | undefined;
  void first.exited.then((code) => (exitCode = code));
  const faultAt = Date.now();
  first.child.kill('SIGUSR2');
  await waitFor('the process to exit after its dispatcher thread died', () => exitCode !== undefined, 15_000, 20);
  t.diagnostic(`exited ${Date.now() - faultAt} ms after the fault`);
  assert.equal(exitCode, 1, `exit code 1, for a supervisor to restart it; output:\n${first.output()}`);
  const fatal = fatalLines(first.output());
  assert.ok(fatal.some((line) => line.msg === 'dispatcher thread failed' && /fault injected by the test/.test(line.err?.message ?? '')), "the thread's error is logged");
  assert.ok(fatal.some((line) => line.msg === 'dispatcher thread exited'), 'and its exit');
  assert.equal(receiver.requests.length, 1, 'nothing more was sent by the dying process');

  const second = await cluster.start('all');
  const redelivered = await waitFor('the message delivered by the restarted server', () => receiver.requests.find((r, i) => i > 0 && r.headers['webhook-id'] === msg.body.id), 20_000, 20);
  assert.deepEqual(JSON.parse(redelivered.body), { n: 1 });
  const attempts = await waitFor('the successful attempt recorded', async () => {
    const list = await callApi(second.url, 'GET', `/api/v1/app/${app.body.id}/attempt/msg/${msg.body.id}`);
    return list.body.data.some((a: { status: number }) => a.status === 0) && (list.body.data as unknown[]);
  });
  assert.equal(attempts.length, 1, 'the attempt the death cut short was never recorded; the redelivery was');

  assert.deepEqual(await cluster.stop(), [1, 0], 'the restarted server drains on SIGTERM and exits 0');
});
