import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type BetterSqlite3 from 'better-sqlite3';
import { newId } from '../src/core/ids.js';
import { DeliveryStatus, TriggerType } from '../src/storage/models.js';
import type { AcceptLease, ClaimedDelivery, Storage } from '../src/storage/storage.js';
import { openSqliteConnection } from '../src/storage/sqlite/open-sqlite.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.js';
import { openTestStorage, TEST_ENDPOINT } from './helpers/storage-fixtures.js';
import { outcomeOf } from './helpers/outcomes.js';

/**
 * SQLite keeps a leased delivery in status 3, "sending", under one small index of its own
 * (migration 10), and a claim returns rows whose lease ran out to pending before it reads the due
 * rows. These tests pin down what that must not change: an expired lease is due work (backlog,
 * next due time, per-endpoint counts), a claim takes it under a new lease, the old lease's late
 * outcome lands only while no new claim has taken it, retention never deletes it, and a row
 * leased in the representation before migration 10 (pending with a token) is still claimed when
 * its lease runs out. The storage conformance suite covers claims, leases and outcomes on both
 * engines; the crash-recovery suite covers a killed process's handed-off deliveries end to end.
 */
const LEASE_MS = 60_000;
const T0 = 1_700_000_000_000;

describe('SQLite: leased deliveries are "sending"', () => {
  let database: TestDatabase;
  let storage: Storage;
  let raw: BetterSqlite3.Database;
  let appId: string;
  let endpointId: string;

  before(async () => {
    database = await createTestDatabase('sqlite');
    storage = await openTestStorage(database, 'sqlite sending status');
    raw = openSqliteConnection({ path: join(database.dir, 'hookrelay.db'), syncCommit: false });
    appId = (await storage.applications.create({ name: 'sending', uid: null, rateLimit: null, metadata: {} })).id;
    endpointId = (await storage.endpoints.create(appId, TEST_ENDPOINT, {}, generateEndpointSecret())).id;
  });
  after(async () => {
    raw.close();
    await storage.close();
    await database.drop();
  });

  /** Accepts one message at `createdAt` whose delivery is handed off under a lease until createdAt + LEASE_MS, as the ingestor does. */
  async function handOff(createdAt: number): Promise<ClaimedDelivery> {
    const message = { id: newId('msg', createdAt), appId, eventType: 'order.created', eventId: null, payload: '{"n":1}', channels: null, tags: null, createdAt };
    const lease: AcceptLease = { token: `lease-${createdAt}`, until: createdAt + LEASE_MS, accepts: () => true };
    const [outcome] = await storage.ingest.acceptBatch([{ message, idempotency: null }], (endpoints) => endpoints, lease);
    assert.ok(outcome?.ok);
    const [delivery] = outcome.deliveries;
    assert.ok(delivery?.leased, 'the delivery was handed off');
    return { deliveryId: delivery.deliveryId, leaseToken: lease.token, msgId: message.id, appId, endpointId, attempts: 0, triggerType: TriggerType.Scheduled };
  }

  const row = (id: number) => raw.prepare('SELECT status, lease_token, next_attempt_at FROM deliveries WHERE id = ?').get(id) as { status: number; lease_token: string | null; next_attempt_at: number | null };
  const counts = (now: number) => storage.deliveries.countByEndpoint(endpointId, now, { since: null, until: null });
  /** Finishes every delivery still unfinished (claiming what is due far in the future), so each test starts from none. */
  async function finishAll(): Promise<void> {
    const now = T0 + 100 * LEASE_MS;
    for (;;) {
      const claims = await storage.deliveries.claimDue(now, LEASE_MS, 100, 100, []);
      if (claims.length === 0) return;
      await storage.deliveries.complete(claims.map((claim) => outcomeOf(claim, { createdAt: now })), { disableAfterMs: null });
    }
  }

  it('a delivery handed off under a lease is written "sending": not due, counted as sending, due again when the lease ends', async () => {
    const claim = await handOff(T0);
    assert.deepEqual(row(claim.deliveryId), { status: DeliveryStatus.Sending, lease_token: claim.leaseToken, next_attempt_at: T0 + LEASE_MS });
    assert.deepEqual(await storage.deliveries.backlog(T0 + 1), { due: 0, oldestDueAgeMs: 0 });
    assert.equal(await storage.deliveries.nextDueAt(), T0 + LEASE_MS, 'the lease end is the next due time');
    assert.deepEqual(await counts(T0 + 1), { success: 0, fail: 0, pending: 0, sending: 1 });
    assert.deepEqual(await storage.deliveries.claimDue(T0 + LEASE_MS - 1, LEASE_MS, 100, 100, []), [], 'no claim while the lease runs');
    assert.equal(row(claim.deliveryId).status, DeliveryStatus.Sending);

    const expiry = T0 + LEASE_MS;
    assert.deepEqual(await storage.deliveries.backlog(expiry + 5), { due: 1, oldestDueAgeMs: 5 }, 'an expired lease is due work');
    assert.deepEqual(await counts(expiry), { success: 0, fail: 0, pending: 1, sending: 0 }, 'an expired lease is pending');
    await finishAll();
  });

  it('a claim takes an expired lease under a new one; the old lease\'s outcome then no longer lands', async () => {
    const old = await handOff(T0 + 1000);
    const expiry = T0 + 1000 + LEASE_MS;
    const [fresh, ...others] = await storage.deliveries.claimDue(expiry, LEASE_MS, 100, 100, []);
    assert.equal(others.length, 0);
    assert.equal(fresh?.deliveryId, old.deliveryId);
    assert.notEqual(fresh.leaseToken, old.leaseToken);
    assert.deepEqual(row(old.deliveryId), { status: DeliveryStatus.Sending, lease_token: fresh.leaseToken, next_attempt_at: expiry + LEASE_MS });

    await storage.deliveries.complete([outcomeOf(old, { createdAt: expiry + 1 })], { disableAfterMs: null });
    assert.deepEqual(row(old.deliveryId), { status: DeliveryStatus.Sending, lease_token: fresh.leaseToken, next_attempt_at: expiry + LEASE_MS }, 'the stale lease changed nothing');
    await storage.deliveries.complete([outcomeOf(fresh, { createdAt: expiry + 2 })], { disableAfterMs: null });
    assert.equal(row(old.deliveryId).status, DeliveryStatus.Success);
  });

  it('an expired lease returned to pending keeps its token: its late outcome lands while no claim has taken it', async () => {
    const late = await handOff(T0 + 2000);
    const expiry = T0 + 2000 + LEASE_MS;
    // The claim passes over this endpoint, so it returns the row to pending without leasing it.
    assert.deepEqual(await storage.deliveries.claimDue(expiry, LEASE_MS, 100, 100, [endpointId]), []);
    assert.deepEqual(row(late.deliveryId), { status: DeliveryStatus.Pending, lease_token: late.leaseToken, next_attempt_at: expiry });
    await storage.deliveries.complete([outcomeOf(late, { createdAt: expiry + 1, result: 'failure', retryAt: expiry + 5000 })], { disableAfterMs: null });
    assert.deepEqual(row(late.deliveryId), { status: DeliveryStatus.Pending, lease_token: null, next_attempt_at: expiry + 5000 }, 'the retry is scheduled');
    await finishAll();
  });

  it('retention never deletes a "sending" delivery, nor its message', async () => {
    const held = await handOff(T0 + 3000);
    // Ids carry the time they were made (now, not T0: newId never goes back), so a cutoff a
    // second from now has every message of these tests expired.
    const cutoff = Date.now() + 1000;
    const deleted = await storage.retention.deleteExpiredBatch(cutoff, cutoff, 100);
    assert.equal(row(held.deliveryId).status, DeliveryStatus.Sending, 'the delivery is still there');
    assert.ok(raw.prepare('SELECT 1 FROM messages WHERE id = ?').get(held.msgId), 'its message is still there');
    assert.ok(deleted.deliveries > 0, 'finished deliveries of earlier tests were deleted meanwhile');
    await finishAll();
  });

  it('a delivery leased before migration 10 (pending with a token) is claimed when its lease ends, not before', async () => {
    const before10 = await handOff(T0 + 4000);
    const expiry = T0 + 4000 + LEASE_MS;
    raw.prepare('UPDATE deliveries SET status = ? WHERE id = ?').run(DeliveryStatus.Pending, before10.deliveryId);
    assert.deepEqual(await storage.deliveries.claimDue(expiry - 1, LEASE_MS, 100, 100, []), []);
    const [claim] = await storage.deliveries.claimDue(expiry, LEASE_MS, 100, 100, []);
    assert.equal(claim?.deliveryId, before10.deliveryId);
    assert.equal(row(before10.deliveryId).status, DeliveryStatus.Sending);
    await finishAll();
  });

  it('the reads of leased rows use their partial indexes, not a walk of the table', () => {
    const plan = (query: string, ...params: unknown[]) =>
      (raw.prepare(`EXPLAIN QUERY PLAN ${query}`).all(...params) as { detail: string }[]).map((step) => step.detail).join(' | ');
    // The statements that claimDue, nextDueAt and backlog run on SQLite (through Kysely: same shapes).
    assert.match(plan('SELECT id FROM deliveries WHERE status = 3 AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 1000', T0), /USING (COVERING )?INDEX deliveries_sending/);
    assert.match(plan('SELECT next_attempt_at FROM deliveries WHERE status = 3 ORDER BY next_attempt_at LIMIT 1'), /USING (COVERING )?INDEX deliveries_sending/);
    assert.match(plan('SELECT count(*), min(next_attempt_at) FROM deliveries WHERE status = 3 AND next_attempt_at <= ?', T0), /USING (COVERING )?INDEX deliveries_sending/);
    assert.match(plan('SELECT count(*), min(next_attempt_at) FROM deliveries WHERE status = 1 AND next_attempt_at <= ?', T0), /USING (COVERING )?INDEX deliveries_due/);
  });
});
