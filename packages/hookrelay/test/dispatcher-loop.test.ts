import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Dispatcher } from '../src/dispatch/dispatcher.js';
import { createDispatcherMetrics } from '../src/observability/metrics.js';
import { capOf, type ClaimedDelivery, type DeliveryOutcome, type PerEndpointCap, type Storage } from '../src/storage/storage.js';
import type { SendResult } from '../src/transport/webhook-sender.js';
import { waitFor } from './helpers/wait-for.js';

/** A due-queue in memory that counts the queries the loop makes; enough of Storage for the dispatcher. */
function fakeStorage(due: ClaimedDelivery[]) {
  const calls = { claimDue: 0, nextDueAt: 0 };
  const completed: DeliveryOutcome[] = [];
  const deliveries = {
    async claimDue(_now: number, _lease: number, limit: number, perEndpoint: PerEndpointCap, skip: readonly string[]) {
      calls.claimDue++;
      const capFor = capOf(perEndpoint);
      const taken: ClaimedDelivery[] = [];
      const perEp = new Map<string, number>();
      for (const d of [...due]) {
        if (taken.length >= limit || skip.includes(d.endpointId) || (perEp.get(d.endpointId) ?? 0) >= capFor(d.endpointId)) continue;
        perEp.set(d.endpointId, (perEp.get(d.endpointId) ?? 0) + 1);
        taken.push(d);
        due.splice(due.indexOf(d), 1);
      }
      return taken;
    },
    async loadContext(msgIds: readonly string[], endpointIds: readonly string[]) {
      return {
        messages: new Map(msgIds.map((id) => [id, { payload: '{}', createdAt: Date.now() }])),
        endpoints: new Map(endpointIds.map((id) => [id, { updatedAt: 0, validUntil: Infinity, url: `http://127.0.0.1/${id}`, headers: {}, disabled: false, secrets: ['whsec_' + Buffer.alloc(24).toString('base64')] }])),
      };
    },
    async complete(outcomes: readonly DeliveryOutcome[]) {
      completed.push(...outcomes);
      return { disabledEndpoints: [] };
    },
    async release() {},
    async nextDueAt() {
      calls.nextDueAt++;
      return due.length > 0 ? Date.now() : null;
    },
  };
  return { storage: { engine: 'sqlite', deliveries } as unknown as Storage, calls, completed };
}

/** A sender whose requests finish only when the test says so. */
function manualSender() {
  const pending: { url: string; finish: () => void }[] = [];
  return {
    pending,
    send(url: string): Promise<SendResult> {
      return new Promise((resolve) => pending.push({ url, finish: () => resolve({ statusCode: 200, body: 'ok', durationMs: 1, retryAfter: undefined, errorCode: null }) }));
    },
  };
}

function delivery(i: number, endpointId: string): ClaimedDelivery {
  return { deliveryId: i, leaseToken: 't', msgId: `msg_${i}`, appId: 'app_1', endpointId, attempts: 0, triggerType: 0 };
}

function dispatcherFor(storage: Storage, sender: ReturnType<typeof manualSender>, maxInFlight: number, endpointConcurrency: number) {
  return new Dispatcher({
    storage,
    sender,
    metrics: createDispatcherMetrics(new Registry()),
    logger: pino({ level: 'silent' }),
    retryScheduleMs: [0],
    leaseMs: 60_000,
    maxInFlight,
    endpointConcurrency,
    sendSvixHeaders: false,
    idlePollMs: 60_000,
  });
}

test('at most endpointConcurrency requests per endpoint; the others proceed', async (t) => {
  const due = [...Array.from({ length: 20 }, (_, i) => delivery(i, 'ep_slow')), ...Array.from({ length: 5 }, (_, i) => delivery(100 + i, 'ep_fast'))];
  const { storage } = fakeStorage(due);
  const sender = manualSender();
  const dispatcher = dispatcherFor(storage, sender, 100, 3);
  dispatcher.start();
  t.after(async () => {
    for (const p of sender.pending) p.finish();
    await dispatcher.stop();
  });
  await waitFor('three slow and three fast requests in flight', () => sender.pending.filter((p) => p.url.endsWith('ep_slow')).length === 3 && sender.pending.filter((p) => p.url.endsWith('ep_fast')).length === 3);
  assert.equal(dispatcher.inFlight, 6);
});

test('while out of slots the loop does not poll; finished requests let it claim again', async (t) => {
  const due = Array.from({ length: 40 }, (_, i) => delivery(i, `ep_${i}`));
  const { storage, calls, completed } = fakeStorage(due);
  const sender = manualSender();
  const dispatcher = dispatcherFor(storage, sender, 16, 5);
  dispatcher.start();
  t.after(async () => {
    for (const p of sender.pending) p.finish();
    await dispatcher.stop();
  });
  await waitFor('16 in flight', () => sender.pending.length === 16);
  const before = { ...calls };
  // Give the loop many turns of the event loop: it must stay asleep, not spin on the backlog.
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, before, 'no queries while every slot is busy');
  // Slots are claimed in batches of at least 16 (MIN_CLAIM), so free them all.
  for (const p of sender.pending.splice(0, 16)) p.finish();
  await waitFor('16 outcomes recorded and 16 more requests started', () => completed.length === 16 && sender.pending.length === 16);
  assert.ok(calls.claimDue > before.claimDue);
});

test("outcomes wait out their engine's interval, or are written at once when half of maxInFlight wait", async (t) => {
  // Only setTimeout is frozen: the flush timer moves only when ticked; setImmediate still turns the loop.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const turns = async (count = 50) => {
    for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  for (const [engine, intervalMs] of [['sqlite', 50], ['postgres', 20]] as const) {
    const due = Array.from({ length: 15 }, (_, i) => delivery(i, `ep_${i}`));
    const { storage, completed } = fakeStorage(due);
    (storage as { engine: string }).engine = engine;
    const sender = manualSender();
    // maxInFlight 16: a batch is written at once when 8 outcomes wait.
    const dispatcher = dispatcherFor(storage, sender, 16, 5);
    dispatcher.start();
    await turns();
    assert.equal(sender.pending.length, 15, engine);
    for (const p of sender.pending.splice(0, 7)) p.finish();
    await turns();
    assert.equal(completed.length, 0, `${engine}: 7 outcomes wait for the interval`);
    t.mock.timers.tick(intervalMs - 1);
    await turns();
    assert.equal(completed.length, 0, `${engine}: still waiting 1 ms before the end of ${intervalMs} ms`);
    t.mock.timers.tick(1);
    await turns();
    assert.equal(completed.length, 7, `${engine}: written after ${intervalMs} ms`);
    for (const p of sender.pending.splice(0, 8)) p.finish();
    await turns();
    assert.equal(completed.length, 15, `${engine}: 8 waiting outcomes are written without a tick`);
    await dispatcher.stop();
  }
});
