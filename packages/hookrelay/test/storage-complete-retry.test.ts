import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Client } from 'pg';
import { DeliveryStatus } from '../src/storage/models.js';
import type { ClaimedDelivery, DeliveryOutcome, Storage } from '../src/storage/storage.js';
import { TEST_ENGINES, type TestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';
import { outcomeOf } from './helpers/outcomes.js';
import { openTestStorage, seedBacklog, TEST_ENDPOINT, withTestStorage } from './helpers/storage-fixtures.js';

/**
 * DeliveryStore.complete may be called again with a batch it was given before: the dispatcher
 * retries a batch whose write failed, and the failure may have come after the commit (a lost
 * acknowledgement) or, on PostgreSQL before this was atomic, between the attempts and the health
 * writes. The repeat must succeed, record each attempt once, and count it toward its endpoint's
 * health once; and a batch that fails must leave nothing of itself written.
 */
const ENDPOINT = TEST_ENDPOINT;
const LEASE_MS = 60_000;
const POLICY = { disableAfterMs: null };

function open(database: TestDatabase, pgStatementTimeoutMs?: number): Promise<Storage> {
  return openTestStorage(database, 'storage complete retry', pgStatementTimeoutMs === undefined ? {} : { pgStatementTimeoutMs });
}

type Health = 'success' | 'failure' | null;

/**
 * One attempt's outcome: a success (finished), a failure (a 500, retried at `retryAt`, or given up
 * when null), or a refusal without a request (health null, finished as failed).
 */
function outcome(claim: ClaimedDelivery, health: Health, createdAt: number, retryAt: number | null = null): DeliveryOutcome {
  return outcomeOf(claim, { createdAt, result: health === null ? 'refused' : health, retryAt, health, url: ENDPOINT.url });
}

interface DeliveryRow {
  id: number;
  status: number;
  attempts: number;
  next_attempt_at: number | null;
  lease_token: string | null;
}

for (const engine of TEST_ENGINES) describe(`DeliveryStore.complete repeated (${engine})`, () => {
  let database: TestDatabase;
  let storage: Storage;
  withTestStorage(engine, open, (s, d) => {
    storage = s;
    database = d;
  });

  /** An application with `endpoints` endpoints, `perEndpoint` messages to each, all claimed at `now`. */
  async function claimed(endpoints: number, perEndpoint: number, now: number) {
    const { appId, endpointIds } = await seedBacklog(storage, { name: 'retry', endpoints, perEndpoint, firstCreatedAt: now - 1_000 });
    const claims: ClaimedDelivery[] = [];
    // Bounded: every round takes at least one of the endpoints × perEndpoint due rows.
    for (let round = 0; round <= endpoints * perEndpoint; round++) {
      const batch = (await storage.deliveries.claimDue(now, LEASE_MS, 100, 1000, [])).filter((c) => c.appId === appId);
      if (batch.length === 0) break;
      claims.push(...batch);
    }
    assert.equal(claims.length, endpoints * perEndpoint);
    const of = (endpointId: string) => claims.filter((c) => c.endpointId === endpointId);
    return { appId, endpointIds, claims, of };
  }

  /** The stored attempts with these ids (each id as many times as it is stored) and the deliveries with these ids, read through a connection of their own. */
  async function stored(attemptIds: readonly string[], deliveryIds: readonly number[]) {
    const dump = await database.dump();
    const attempts = (dump['attempts'] as { id: string }[]).map((a) => a.id).filter((id) => attemptIds.includes(id)).sort();
    const deliveries = (dump['deliveries'] as Record<string, unknown>[])
      .map((d): DeliveryRow => ({ id: Number(d['id']), status: Number(d['status']), attempts: Number(d['attempts']), next_attempt_at: d['next_attempt_at'] === null ? null : Number(d['next_attempt_at']), lease_token: d['lease_token'] as string | null }))
      .filter((d) => deliveryIds.includes(d.id))
      .sort((a, b) => a.id - b.id);
    return { attempts, deliveries };
  }

  async function consecutiveFailures(appId: string, endpointId: string): Promise<number> {
    return (await storage.endpoints.health(appId, endpointId))!.consecutiveFailures;
  }

  it('completing the same outcomes twice succeeds both times, stores each attempt once, and leaves the deliveries as the first did', async () => {
    const now = Date.now();
    const { claims } = await claimed(2, 2, now);
    const retryAt = now + 3_600_000;
    const [a, b, c, d] = claims as [ClaimedDelivery, ClaimedDelivery, ClaimedDelivery, ClaimedDelivery];
    const batch = [outcome(a, 'success', now + 1), outcome(b, 'failure', now + 2, retryAt), outcome(c, null, now + 3), outcome(d, 'failure', now + 4)];
    const attemptIds = batch.map((o) => o.attempt.id);
    const deliveryIds = claims.map((claim) => claim.deliveryId);

    assert.deepEqual(await storage.deliveries.complete(batch, POLICY), { disabledEndpoints: [] });
    const first = await stored(attemptIds, deliveryIds);
    assert.deepEqual(first.attempts, [...attemptIds].sort());
    const expected = (claim: ClaimedDelivery, status: number, nextAttemptAt: number | null): DeliveryRow => ({ id: claim.deliveryId, status, attempts: 1, next_attempt_at: nextAttemptAt, lease_token: null });
    const final = [expected(a, DeliveryStatus.Success, null), expected(b, DeliveryStatus.Pending, retryAt), expected(c, DeliveryStatus.Fail, null), expected(d, DeliveryStatus.Fail, null)].sort((x, y) => x.id - y.id);
    assert.deepEqual(first.deliveries, final);

    assert.deepEqual(await storage.deliveries.complete(batch, POLICY), { disabledEndpoints: [] }, 'the repeat succeeds');
    assert.deepEqual(await stored(attemptIds, deliveryIds), first, 'the repeat changed nothing');
  });

  it('a failure at an endpoint deleted while its request was in flight completes, with nothing to track', async () => {
    const now = Date.now();
    const { appId, endpointIds, claims } = await claimed(2, 1, now);
    const [deleted, kept] = endpointIds as [string, string];
    await storage.endpoints.delete(appId, deleted);
    const batch = claims.map((claim, i) => outcome(claim, 'failure', now + i, now + 3_600_000));
    // Before, the health row's foreign key failed the whole batch, and every retry of it.
    assert.deepEqual(await storage.deliveries.complete(batch, POLICY), { disabledEndpoints: [] });
    assert.deepEqual((await stored(batch.map((o) => o.attempt.id), [])).attempts, batch.map((o) => o.attempt.id).sort());
    assert.equal(await consecutiveFailures(appId, kept), 1);
    assert.equal(await storage.endpoints.health(appId, deleted), null);
  });

  it('a repeated batch does not count its failures twice; outcomes added to it count once', async () => {
    const now = Date.now();
    const { appId, endpointIds, of } = await claimed(2, 3, now);
    const [failing, healthy] = endpointIds as [string, string];
    const [f1, f2, f3] = of(failing) as [ClaimedDelivery, ClaimedDelivery, ClaimedDelivery];
    const [h1, h2] = of(healthy) as [ClaimedDelivery, ClaimedDelivery];
    const retryAt = now + 3_600_000;
    const batch = [outcome(f1, 'failure', now + 1, retryAt), outcome(h1, 'success', now + 2), outcome(f2, 'failure', now + 3, retryAt)];

    await storage.deliveries.complete(batch, POLICY);
    assert.equal(await consecutiveFailures(appId, failing), 2);
    await storage.deliveries.complete(batch, POLICY);
    assert.equal(await consecutiveFailures(appId, failing), 2, 'the repeat added no failure');

    // As the dispatcher retries: the failed batch with what came since appended.
    const more = [...batch, outcome(f3, 'failure', now + 4, retryAt), outcome(h2, 'success', now + 5)];
    await storage.deliveries.complete(more, POLICY);
    assert.equal(await consecutiveFailures(appId, failing), 3, 'only the new failure counted');
    assert.equal(await consecutiveFailures(appId, healthy), 0);
    const health = (await storage.endpoints.health(appId, failing))!;
    assert.equal(health.failingSince, now + 1);
    assert.equal(health.lastFailureAt, now + 4);
    const attemptIds = more.map((o) => o.attempt.id);
    assert.deepEqual((await stored(attemptIds, [])).attempts, [...attemptIds].sort());
  });

  it('a repeated success does not end a failing streak that began after it was first recorded', async () => {
    const now = Date.now();
    const { appId, endpointIds, of } = await claimed(1, 3, now);
    const endpointId = endpointIds[0]!;
    const [x, y, z] = of(endpointId) as [ClaimedDelivery, ClaimedDelivery, ClaimedDelivery];
    const retryAt = now + 3_600_000;

    await storage.deliveries.complete([outcome(x, 'failure', now + 1, retryAt)], POLICY);
    assert.equal(await consecutiveFailures(appId, endpointId), 1);
    const success = [outcome(y, 'success', now + 2)];
    await storage.deliveries.complete(success, POLICY);
    assert.equal(await consecutiveFailures(appId, endpointId), 0, 'the success ended the streak');
    await storage.deliveries.complete([outcome(z, 'failure', now + 3, retryAt)], POLICY);
    assert.equal(await consecutiveFailures(appId, endpointId), 1);

    await storage.deliveries.complete(success, POLICY);
    const health = (await storage.endpoints.health(appId, endpointId))!;
    assert.equal(health.consecutiveFailures, 1, 'the repeated success is not news');
    assert.equal(health.failingSince, now + 3);
    assert.equal(health.recoveredAt, now + 2);
  });

  if (engine === 'postgres') {
    it('a batch whose health write times out on a locked row leaves nothing written, and its repeat records it once', { timeout: 60_000 }, async () => {
      const now = Date.now();
      const { appId, endpointIds, of } = await claimed(3, 3, now);
      const [failing, recovering, healthy] = endpointIds as [string, string, string];
      const retryAt = now + 3_600_000;
      // Both with an open streak stored.
      await storage.deliveries.complete([outcome(of(failing)[0]!, 'failure', now + 1, retryAt), outcome(of(recovering)[0]!, 'failure', now + 1, retryAt)], POLICY);
      assert.equal(await consecutiveFailures(appId, failing), 1);
      assert.equal(await consecutiveFailures(appId, recovering), 1);

      // A store whose statements give up after 300 ms, and a session holding the health rows.
      const impatient = await open(database, 300);
      const locker = new Client({ connectionString: database.url });
      await locker.connect();
      try {
        const lock = async (endpointId: string) => {
          await locker.query('BEGIN');
          const { rowCount } = await locker.query('SELECT 1 FROM endpoint_health WHERE endpoint_id = $1 FOR UPDATE', [endpointId]);
          assert.equal(rowCount, 1);
        };

        // A batch in which an endpoint fails: its health extends a stored streak.
        const failingBatch = [outcome(of(healthy)[0]!, 'success', now + 10), outcome(of(failing)[1]!, 'failure', now + 11, retryAt), outcome(of(failing)[2]!, 'failure', now + 12)];
        // A batch in which an endpoint only succeeds: its health ends a stored streak.
        const recoveringBatch = [outcome(of(healthy)[1]!, 'success', now + 20), outcome(of(recovering)[1]!, 'success', now + 21)];
        for (const [batch, endpointId, failuresAfter] of [
          [failingBatch, failing, 3],
          [recoveringBatch, recovering, 0],
        ] as const) {
          const attemptIds = batch.map((o) => o.attempt.id);
          const deliveryIds = batch.map((o) => o.deliveryId);
          const before = await stored(attemptIds, deliveryIds);
          assert.deepEqual(before.attempts, []);
          assert.ok(before.deliveries.every((d) => d.lease_token !== null && d.attempts === 0));
          const failuresBefore = await consecutiveFailures(appId, endpointId);

          await lock(endpointId);
          await assert.rejects(impatient.deliveries.complete(batch, POLICY), (error: Error & { code?: string }) => error.code === '57014', 'statement timeout');
          assert.deepEqual(await stored(attemptIds, deliveryIds), before, 'nothing of the failed batch was written');
          await locker.query('ROLLBACK');
          assert.equal(await consecutiveFailures(appId, endpointId), failuresBefore);

          await impatient.deliveries.complete(batch, POLICY);
          const after = await stored(attemptIds, deliveryIds);
          assert.deepEqual(after.attempts, [...attemptIds].sort(), 'each attempt stored once');
          assert.ok(after.deliveries.every((d) => d.lease_token === null && d.attempts === 1));
          assert.equal(await consecutiveFailures(appId, endpointId), failuresAfter);
          // And once more, as after a lost acknowledgement.
          await impatient.deliveries.complete(batch, POLICY);
          assert.deepEqual(await stored(attemptIds, deliveryIds), after);
          assert.equal(await consecutiveFailures(appId, endpointId), failuresAfter);
        }
      } finally {
        await locker.end();
        await impatient.close();
      }
    });

    it('a batch that ends a streak locks its deliveries before the health row, as the failing path and endpoint deletion do', { timeout: 60_000 }, async () => {
      const now = Date.now();
      const { appId, endpointIds, of } = await claimed(1, 2, now);
      const endpointId = endpointIds[0]!;
      const [x, y] = of(endpointId) as [ClaimedDelivery, ClaimedDelivery];
      await storage.deliveries.complete([outcome(x, 'failure', now + 1, now + 3_600_000)], POLICY);
      assert.equal(await consecutiveFailures(appId, endpointId), 1);

      const holder = new Client({ connectionString: database.url });
      const prober = new Client({ connectionString: database.url });
      await holder.connect();
      await prober.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE', [y.deliveryId]);
        const completing = storage.deliveries.complete([outcome(y, 'success', now + 2)], POLICY);
        const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        await waitFor('the batch to wait for the delivery row', async () => (await prober.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [holderPid])).rowCount === 1);
        // While it waits on the delivery, the health row is free.
        await prober.query('BEGIN');
        const { rowCount } = await prober.query('SELECT 1 FROM endpoint_health WHERE endpoint_id = $1 FOR UPDATE NOWAIT', [endpointId]);
        assert.equal(rowCount, 1);
        await prober.query('ROLLBACK');
        await holder.query('ROLLBACK');
        await completing;
        assert.equal(await consecutiveFailures(appId, endpointId), 0);
      } finally {
        await holder.end();
        await prober.end();
      }
    });
  }
});
