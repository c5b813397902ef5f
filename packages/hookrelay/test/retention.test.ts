import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { startRetentionSweeper } from '../src/retention/retention-sweeper.js';
import { SecretBox } from '../src/secrets/secret-box.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';
import type { Message } from '../src/storage/models.js';
import { openStorage } from '../src/storage/open-storage.js';
import { newRetentionCursor, type RetentionBatchResult, type RetentionCursor, type RetentionStore, type Storage } from '../src/storage/storage.js';
import { idAt } from './helpers/id-at.js';
import { createTestDatabase, TEST_ENGINES, type TestDatabase } from './helpers/test-database.js';
import { TEST_ENDPOINT } from './helpers/storage-fixtures.js';
import { waitFor } from './helpers/wait-for.js';
import { outcomeOf } from './helpers/outcomes.js';
import { startTestPlatform } from './helpers/platform.js';

const DAY = 86_400_000;
const RETENTION_MS = 30 * DAY;
const SECRET_BOX = new SecretBox(createHash('sha256').update('retention').digest());
const ENDPOINT = TEST_ENDPOINT;
const NOTHING: RetentionBatchResult = { messages: 0, deliveries: 0, attempts: 0, idempotencyKeys: 0 };

/** A logger that keeps its lines, to read what the sweeper reported. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }), lines };
}

async function openFresh(t: TestContext, engine: (typeof TEST_ENGINES)[number]): Promise<{ storage: Storage; database: TestDatabase }> {
  const database = await createTestDatabase(engine);
  const storage = await openStorage({ database: loadConfig({}, { databaseUrl: database.url }), secretBox: SECRET_BOX });
  t.after(async () => {
    await storage.close();
    await database.drop();
  });
  return { storage, database };
}

/**
 * Seven messages from 40 days ago and three from yesterday, each sent to two endpoints and
 * attempted once at its own time. Of the old ones, the first has a delivery still pending (a
 * retry due in an hour) and the second's deliveries failed for good; the rest succeeded.
 */
async function seed(storage: Storage, now: number) {
  const app = await storage.applications.create({ name: 'retention', uid: null, rateLimit: null, metadata: {} });
  for (let i = 0; i < 2; i++) await storage.endpoints.create(app.id, ENDPOINT, {}, generateEndpointSecret());
  const messagesAt = (at: number, count: number): Message[] =>
    Array.from({ length: count }, (_, i) => ({ id: idAt('msg', at + i), appId: app.id, eventType: 'order.created', eventId: null, payload: '{"n":1}', channels: null, tags: null, createdAt: at + i }));
  const old = messagesAt(now - 40 * DAY, 7);
  const young = messagesAt(now - DAY, 3);
  const accepted = await storage.ingest.acceptBatch([...old, ...young].map((message) => ({ message, idempotency: null })), (endpoints) => endpoints);
  assert.ok(accepted.every((o) => o.ok));

  const claims = await storage.deliveries.claimDue(now, 60_000, 100, 100, []);
  assert.equal(claims.length, 20);
  const createdAt = new Map([...old, ...young].map((m) => [m.id, m.createdAt]));
  const pendingClaim = claims.find((c) => c.msgId === old[0]!.id)!;
  await storage.deliveries.complete(
    claims.map((claim) => {
      const at = createdAt.get(claim.msgId)! + 1_000;
      if (claim === pendingClaim) return outcomeOf(claim, { createdAt: at, result: 'failure', retryAt: now + 3_600_000, attemptId: idAt('atmpt', at) });
      return outcomeOf(claim, { createdAt: at, result: claim.msgId === old[1]!.id ? 'failure' : 'success', attemptId: idAt('atmpt', at) });
    }), { disableAfterMs: null },
  );

  // Expired idempotency keys, and a live one. The live one first: a reserve sweeps expired keys itself.
  await storage.idempotency.reserve('scope', 'live', 'hash', now, DAY);
  for (const key of ['expired-1', 'expired-2']) await storage.idempotency.reserve('scope', key, 'hash', now - 2 * DAY, DAY);
  return { old, young, pendingClaim };
}

/**
 * Runs batches of `limit` until one is short in every kind, as the sweeper does (with one cursor
 * for the sweep, unless `cursor` is null); returns them all.
 */
async function sweepAll(retention: RetentionStore, cutoff: number, now: number, limit: number, cursor: RetentionCursor | null = newRetentionCursor()): Promise<RetentionBatchResult[]> {
  const batches: RetentionBatchResult[] = [];
  for (;;) {
    const batch = await retention.deleteExpiredBatch(cutoff, now, limit, cursor ?? undefined);
    batches.push(batch);
    if (Object.values(batch).every((n) => n < limit)) return batches;
  }
}

function sum(batches: readonly RetentionBatchResult[]): RetentionBatchResult {
  const total = { ...NOTHING };
  for (const b of batches) for (const kind of Object.keys(total) as (keyof RetentionBatchResult)[]) total[kind] += b[kind];
  return total;
}

/** Every delivery belongs to a message that exists, and no row left is older than the cutoff unless kept on purpose. */
async function assertConsistent(database: TestDatabase): Promise<Record<string, unknown[]>> {
  const dump = await database.dump();
  const messageIds = new Set((dump['messages'] as { id: string }[]).map((m) => m.id));
  for (const d of dump['deliveries'] as { msg_id: string }[]) assert.ok(messageIds.has(d.msg_id), `delivery of a deleted message ${d.msg_id}`);
  return dump;
}

for (const engine of TEST_ENGINES) describe(`retention store (${engine})`, () => {
  test('deletes expired messages, their finished deliveries and old attempts in bounded batches; keeps young data and pending deliveries', async (t) => {
    const { storage, database } = await openFresh(t, engine);
    const now = Date.now();
    const { old, young, pendingClaim } = await seed(storage, now);

    const batches = await sweepAll(storage.retention, now - RETENTION_MS, now, 3);
    for (const batch of batches) for (const n of Object.values(batch)) assert.ok(n <= 3, `a batch deleted ${n} rows of one kind`);
    assert.ok(batches.length >= 5, `14 old attempts take at least 5 batches of 3 (took ${batches.length})`);
    // 14 old attempts; 13 finished deliveries of old messages (one is pending); 6 old messages
    // (the one with a pending delivery stays); 2 expired idempotency keys.
    assert.deepEqual(sum(batches), { messages: 6, deliveries: 13, attempts: 14, idempotencyKeys: 2 });

    for (const m of old.slice(1)) assert.equal(await storage.messages.find(m.appId, m.id), null, 'an expired message is gone');
    assert.ok(await storage.messages.find(old[0]!.appId, old[0]!.id), 'a message with a pending delivery is kept');
    for (const m of young) assert.ok(await storage.messages.find(m.appId, m.id), 'a young message is kept');
    const dump = await assertConsistent(database);
    assert.equal(dump['deliveries']!.length, 7, "the pending delivery and the young messages' six");
    assert.equal(dump['attempts']!.length, 6, "the young messages' attempts");
    assert.deepEqual((dump['idempotency_keys'] as { key: string }[]).map((k) => k.key), ['live']);

    // Once the pending delivery finishes, its message goes too; the attempt just made stays until it expires itself.
    const [retry] = await storage.deliveries.claimDue(now + 3_600_000, 60_000, 10, 10, []);
    assert.equal(retry?.deliveryId, pendingClaim.deliveryId);
    await storage.deliveries.complete([outcomeOf(retry!, { createdAt: now, attemptId: idAt('atmpt', now) })], { disableAfterMs: null });
    assert.deepEqual(sum(await sweepAll(storage.retention, now - RETENTION_MS, now, 3)), { ...NOTHING, messages: 1, deliveries: 1 });
    assert.equal(await storage.messages.find(old[0]!.appId, old[0]!.id), null);
    const after = await assertConsistent(database);
    assert.equal(after['attempts']!.length, 7);
    assert.deepEqual(await storage.retention.deleteExpiredBatch(now - RETENTION_MS, now, 3), NOTHING, 'nothing left to delete');
  });

  /**
   * Forty messages from 40 days ago, one millisecond apart: every fourth to an application with
   * no endpoint (no deliveries at all), the rest to two endpoints, every fifth of those with one
   * delivery still pending. Plus two young ones. Returns the messages in order of id.
   */
  async function seedMixed(storage: Storage, now: number) {
    const fanned = await storage.applications.create({ name: 'two endpoints', uid: null, rateLimit: null, metadata: {} });
    const silent = await storage.applications.create({ name: 'no endpoint', uid: null, rateLimit: null, metadata: {} });
    for (let i = 0; i < 2; i++) await storage.endpoints.create(fanned.id, ENDPOINT, {}, generateEndpointSecret());
    const at = (i: number) => (i < 40 ? now - 40 * DAY + i : now - DAY + i);
    const messages: Message[] = Array.from({ length: 42 }, (_, i) => ({
      id: idAt('msg', at(i)), appId: i % 4 === 3 ? silent.id : fanned.id, eventType: 'order.created', eventId: null, payload: '{"n":1}', channels: null, tags: null, createdAt: at(i),
    }));
    assert.ok((await storage.ingest.acceptBatch(messages.map((message) => ({ message, idempotency: null })), (endpoints) => endpoints)).every((o) => o.ok));
    const claims = await storage.deliveries.claimDue(now, 60_000, 200, 200, []);
    assert.equal(claims.length, 64, '32 messages (30 old, 2 young) with two deliveries each');
    const index = new Map(messages.map((m, i) => [m.id, i]));
    const pendingFor = new Set<string>();
    await storage.deliveries.complete(
      claims.map((claim) => {
        const i = index.get(claim.msgId)!;
        const createdAt = at(i) + 1_000;
        // One delivery of every fifth fanned-out message is still to be retried: it and its message stay.
        if (i % 5 === 0 && !pendingFor.has(claim.msgId)) {
          pendingFor.add(claim.msgId);
          return outcomeOf(claim, { createdAt, result: 'failure', retryAt: now + 3_600_000, attemptId: idAt('atmpt', createdAt) });
        }
        return outcomeOf(claim, { createdAt, attemptId: idAt('atmpt', createdAt) });
      }),
      { disableAfterMs: null },
    );
    return messages.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  test('a sweep that carries a cursor deletes exactly what batches from the oldest rows delete', async (t) => {
    const now = Date.now();
    const remaining: Record<string, unknown[]>[] = [];
    for (const cursor of [newRetentionCursor(), null]) {
      const { storage, database } = await openFresh(t, engine);
      const messages = await seedMixed(storage, now);
      // Ids differ between the two databases (random parts): rows are compared by message position.
      const position = (id: string) => messages.findIndex((m) => m.id === id);
      const batches = await sweepAll(storage.retention, now - RETENTION_MS, now, 3, cursor);
      for (const batch of batches) for (const n of Object.values(batch)) assert.ok(n <= 3, `a batch deleted ${n} rows of one kind`);
      // Old: 40 messages, 30 of them with two deliveries and an attempt each (60), of which 6 have
      // one still pending (0, 5, 10, 20, 25, 30). Kept: those 6 messages and their pending deliveries.
      assert.deepEqual(sum(batches), { messages: 34, deliveries: 54, attempts: 60, idempotencyKeys: 0 }, cursor ? 'with a cursor' : 'without');
      const dump = await assertConsistent(database);
      const order = (a: number, b: number) => a - b;
      remaining.push({
        messages: dump['messages']!.map((m) => position((m as { id: string }).id)).sort(order),
        deliveries: dump['deliveries']!.map((d) => position((d as { msg_id: string }).msg_id)).sort(order),
      });
    }
    assert.deepEqual(remaining[0], remaining[1]);
  });

  test("each batch starts where the sweep's last one stopped, and messages are not looked at past the deliveries' progress", async (t) => {
    const { storage } = await openFresh(t, engine);
    const now = Date.now();
    const messages = await seedMixed(storage, now);
    const position = (id: string | null) => (id === null ? -1 : messages.findIndex((m) => m.id === id));
    const cursor = newRetentionCursor();
    // Batch 1 (limit 4): message 0's finished delivery (the other is pending), message 1's two,
    // one of message 2's. Then the messages up to message 2: only message 1 has none left.
    // Message 3 has no deliveries at all, but lies past them: a later batch takes it.
    const first = await storage.retention.deleteExpiredBatch(now - RETENTION_MS, now, 4, cursor);
    assert.equal(first.deliveries, 4);
    assert.equal(position(cursor.deliveriesFrom), 2, 'the deliveries stopped at message 2');
    assert.equal(first.messages, 1, 'message 1 only');
    assert.equal(position(cursor.messagesAfter), 1);
    // Batch 2: message 2's other delivery, message 4's two, message 5's finished one; then
    // messages 2, 3 and 4 (5 keeps a pending delivery).
    const second = await storage.retention.deleteExpiredBatch(now - RETENTION_MS, now, 4, cursor);
    assert.equal(second.deliveries, 4);
    assert.equal(position(cursor.deliveriesFrom), 5);
    assert.equal(second.messages, 3);
    assert.equal(position(cursor.messagesAfter), 4);
    // Message 0's pending delivery finishes now: this sweep has walked past it, the next one deletes it.
    const [retry] = (await storage.deliveries.claimDue(now + 3_600_000, 60_000, 100, 100, [])).filter((c) => c.msgId === messages[0]!.id);
    await storage.deliveries.complete([outcomeOf(retry!, { createdAt: now, attemptId: idAt('atmpt', now) })], { disableAfterMs: null });
    await sweepAll(storage.retention, now - RETENTION_MS, now, 4, cursor);
    assert.ok(await storage.messages.find(messages[0]!.appId, messages[0]!.id), 'behind this sweep: kept until the next');
    const next = sum(await sweepAll(storage.retention, now - RETENTION_MS, now, 4));
    assert.equal(next.messages, 1);
    assert.equal(await storage.messages.find(messages[0]!.appId, messages[0]!.id), null);
  });

  test('a cutoff of 0 (retention off) keeps messages and attempts; expired idempotency keys still go', async (t) => {
    const { storage, database } = await openFresh(t, engine);
    const now = Date.now();
    await seed(storage, now);
    const before = await database.dump();
    assert.deepEqual(await storage.retention.deleteExpiredBatch(0, now, 100), { ...NOTHING, idempotencyKeys: 2 });
    const after = await database.dump();
    for (const table of ['messages', 'deliveries', 'attempts']) assert.equal(after[table]!.length, before[table]!.length, table);
  });

  test('the sweeper deletes everything expired batch after batch, reports it, and stops at once', async (t) => {
    const { storage, database } = await openFresh(t, engine);
    const now = Date.now();
    await seed(storage, now);
    const { logger, lines } = capturingLogger();
    const sweeper = startRetentionSweeper({ storage, retentionMs: RETENTION_MS, batchSize: 2, intervalMs: 60_000, logger });
    const report = await waitFor('the sweep report', () => lines.find((l) => l['msg'] === 'retention: deleted expired data'));
    assert.deepEqual([report['messages'], report['deliveries'], report['attempts'], report['idempotencyKeys']], [6, 13, 14, 2]);
    assert.ok((report['batches'] as number) >= 7, `14 attempts take 7 batches of 2 at least (took ${String(report['batches'])})`);
    const stopping = Date.now();
    await sweeper.stop();
    assert.ok(Date.now() - stopping < 1_000, 'stop does not wait for the 60 s interval');
    assert.equal((await assertConsistent(database))['messages']!.length, 4);
  });
});

describe('retention sweeper', () => {
  /** A retention store that answers full batches `fullBatches` times, then empty ones; it records each call. */
  function fakeStore(fullBatches: number, batchSize: number) {
    const calls: { cutoff: number; now: number; limit: number; immediateRanSinceLastCall: boolean }[] = [];
    let immediateRan = true;
    const store: RetentionStore = {
      async deleteExpiredBatch(cutoff, now, limit) {
        calls.push({ cutoff, now, limit, immediateRanSinceLastCall: immediateRan });
        immediateRan = false;
        setImmediate(() => (immediateRan = true));
        return calls.length <= fullBatches ? { ...NOTHING, attempts: batchSize } : NOTHING;
      },
    };
    return { store, calls };
  }

  test('batches of a sweep are separated by a turn of the event loop, and share one cutoff', async () => {
    const { store, calls } = fakeStore(20, 10);
    const { logger } = capturingLogger();
    const startedAt = Date.now();
    const sweeper = startRetentionSweeper({ storage: { retention: store }, retentionMs: DAY, batchSize: 10, intervalMs: 60_000, logger });
    await waitFor('the sweep to end', () => calls.length === 21);
    await sweeper.stop();
    assert.equal(calls.length, 21, 'one short batch ends the sweep');
    assert.ok(calls.every((c) => c.immediateRanSinceLastCall), JSON.stringify(calls.map((c) => c.immediateRanSinceLastCall)) + 'the loop yielded before every batch');
    assert.equal(new Set(calls.map((c) => c.cutoff)).size, 1);
    assert.ok(Math.abs(calls[0]!.cutoff - (startedAt - DAY)) < 1_000);
    assert.ok(calls.every((c) => c.limit === 10 && c.now === calls[0]!.now));
  });

  test('stop() ends a long sweep at the next batch; retention 0 passes cutoff 0', async () => {
    const { store, calls } = fakeStore(Number.POSITIVE_INFINITY, 5);
    const { logger } = capturingLogger();
    const sweeper = startRetentionSweeper({ storage: { retention: store }, retentionMs: 0, batchSize: 5, intervalMs: 60_000, logger });
    await waitFor('a few batches', () => calls.length >= 3);
    await sweeper.stop();
    const stoppedAt = calls.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls.length, stoppedAt, 'no batch after stop()');
    assert.ok(calls.every((c) => c.cutoff === 0));
  });

  test('a failing batch is logged and the next sweep tries again', async () => {
    let failures = 0;
    let successes = 0;
    const store: RetentionStore = {
      async deleteExpiredBatch() {
        if (failures === 0) {
          failures++;
          throw new Error('database unreachable');
        }
        successes++;
        return NOTHING;
      },
    };
    const { logger, lines } = capturingLogger();
    const sweeper = startRetentionSweeper({ storage: { retention: store }, retentionMs: DAY, batchSize: 5, intervalMs: 20, logger });
    await waitFor('a sweep after the failure', () => successes > 0);
    await sweeper.stop();
    const error = lines.find((l) => l['level'] === 50);
    assert.match(String(error?.['msg']), /retention sweep failed/);
    assert.match(JSON.stringify(error?.['err']), /database unreachable/);
  });
});

for (const engine of TEST_ENGINES) describe(`retention in the running server (${engine})`, () => {
  test('the server sweeps: a message older than HOOKRELAY_RETENTION goes, a young one stays', async (t) => {
    const platform = await startTestPlatform({ engine, retentionMs: 60_000, retentionIntervalMs: 1_000 });
    t.after(() => platform.close());
    const app = await platform.api('POST', '/api/v1/app', { name: 'retention' });
    assert.equal(app.status, 201);
    // Written as if published two minutes ago (the API dates messages now); no endpoint, so no deliveries.
    const now = Date.now();
    const old: Message = { id: idAt('msg', now - 120_000), appId: app.body.id, eventType: 'order.created', eventId: null, payload: '{}', channels: null, tags: null, createdAt: now - 120_000 };
    assert.ok((await platform.server.storage.ingest.acceptBatch([{ message: old, idempotency: null }], (endpoints) => endpoints))[0]!.ok);
    const young = await platform.api('POST', `/api/v1/app/${app.body.id}/msg`, { eventType: 'order.created', payload: {} });
    assert.equal(young.status, 202);
    await waitFor('the next sweep to delete the old message', async () => (await platform.api('GET', `/api/v1/app/${app.body.id}/msg/${old.id}`)).status === 404, 15_000);
    assert.equal((await platform.api('GET', `/api/v1/app/${app.body.id}/msg/${young.body.id}`)).status, 200);
  });
});
