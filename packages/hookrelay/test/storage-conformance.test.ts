import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HookrelayError } from '../src/core/errors.js';
import { newId } from '../src/core/ids.js';
import { TriggerType, type Message } from '../src/storage/models.js';
import type { ClaimedDelivery, DeliveryOutcome, Storage } from '../src/storage/storage.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';
import { TEST_ENGINES, type TestDatabase } from './helpers/test-database.js';
import { outcomeOf } from './helpers/outcomes.js';
import { openTestStorage, seedBacklog, TEST_ENDPOINT, withTestStorage } from './helpers/storage-fixtures.js';

/**
 * The storage contract (storage.ts) exercised directly, below the API, on every engine: claims and
 * leases, completion and release, ordering of keys, number types and constraint errors. The API
 * and delivery suites cover the same stores end to end; this pins down what they rely on.
 */
const ENDPOINT = TEST_ENDPOINT;
const LEASE_MS = 60_000;

function open(database: TestDatabase): Promise<Storage> {
  return openTestStorage(database, 'storage conformance');
}

function message(appId: string, createdAt: number, eventId: string | null = null): Message {
  return { id: newId('msg', createdAt), appId, eventType: 'order.created', eventId, payload: '{"n":1}', channels: null, tags: null, createdAt };
}

for (const engine of TEST_ENGINES) describe(`storage conformance (${engine})`, () => {
  let database: TestDatabase;
  let storage: Storage;
  withTestStorage(engine, open, (s, d) => {
    storage = s;
    database = d;
  });

  /** An application with `endpoints` endpoints and `perEndpoint` due deliveries to each, due at `at`. */
  const backlogOf = (endpoints: number, perEndpoint: number, at: number) => seedBacklog(storage, { name: 'claims', endpoints, perEndpoint, firstCreatedAt: at });

  /** Claims until nothing is due at `now`; returns every claim. */
  async function drain(store: Storage, now: number): Promise<ClaimedDelivery[]> {
    const all: ClaimedDelivery[] = [];
    for (;;) {
      const batch = await store.deliveries.claimDue(now, LEASE_MS, 7, 1000, []);
      if (batch.length === 0) return all;
      all.push(...batch);
    }
  }

  /** The outcome of one attempt: a success, or a 500 with a retry at `retryAt`. */
  const outcome = (claim: ClaimedDelivery, createdAt: number, retryAt: number | null = null): DeliveryOutcome =>
    outcomeOf(claim, { createdAt, result: retryAt === null ? 'success' : 'failure', retryAt, url: ENDPOINT.url });

  // The claim tests run in order on one database and each leaves no delivery pending.
  it('a claim takes at most perEndpoint per endpoint, passes over skipped endpoints, and leases what it took', async () => {
    const t0 = 1_000_000_000_000;
    const { endpointIds } = await backlogOf(3, 5, t0);
    const [a, b, c] = endpointIds as [string, string, string];
    const now = t0 + 10;
    assert.deepEqual(await storage.deliveries.backlog(now), { due: 15, oldestDueAgeMs: 10 });

    const first = await storage.deliveries.claimDue(now, LEASE_MS, 100, 2, [c]);
    const count = (claims: ClaimedDelivery[], endpointId: string) => claims.filter((claim) => claim.endpointId === endpointId).length;
    assert.deepEqual([count(first, a), count(first, b), count(first, c)], [2, 2, 0]);
    assert.equal(new Set(first.map((claim) => claim.leaseToken)).size, 1, 'one lease token per claim');
    assert.ok(first.every((claim) => claim.attempts === 0 && claim.triggerType === TriggerType.Scheduled && typeof claim.deliveryId === 'number'));

    const limited = await storage.deliveries.claimDue(now, LEASE_MS, 3, 100, []);
    assert.equal(limited.length, 3, 'limit caps the batch');
    const rest = await storage.deliveries.claimDue(now, LEASE_MS, 100, 100, []);
    const taken = [...first, ...limited, ...rest].map((claim) => claim.deliveryId);
    assert.equal(taken.length, 15);
    assert.equal(new Set(taken).size, 15, 'a leased delivery is not claimed again while its lease runs');
    assert.deepEqual(await storage.deliveries.backlog(now), { due: 0, oldestDueAgeMs: 0 });
    assert.equal(await storage.deliveries.nextDueAt(), now + LEASE_MS, 'the lease is the next due time');

    const expired = await storage.deliveries.claimDue(now + LEASE_MS, LEASE_MS, 100, 100, []);
    assert.equal(expired.length, 15, 'an expired lease makes the delivery due again');
    await storage.deliveries.complete(expired.map((claim) => outcome(claim, now + LEASE_MS)), { disableAfterMs: null });
    assert.equal(await storage.deliveries.nextDueAt(), null);
  });

  /** Two endpoints (of two applications): 300 due rows at the first, then 5 due later at the second. */
  async function backlogBehindOne(t0: number) {
    const [busy] = (await backlogOf(1, 300, t0)).endpointIds as [string];
    const [other] = (await backlogOf(1, 5, t0 + 1_000)).endpointIds as [string];
    return { busy, other, now: t0 + 2_000 };
  }

  /** Claims and records as delivered everything due at `now`, so the next test finds nothing pending. */
  async function finishAll(now: number, claimed: ClaimedDelivery[]) {
    const all = [...claimed, ...(await drain(storage, now))];
    await storage.deliveries.complete(all.map((claim) => outcome(claim, now)), { disableAfterMs: null });
  }

  it('the backlog of an endpoint a claim passes over does not hide other endpoints\' due rows', async () => {
    const { busy, other, now } = await backlogBehindOne(1_100_000_000_000);
    // More due rows at the passed-over endpoint than a claim's walk reads (4 per row wanted).
    const claimed = await storage.deliveries.claimDue(now, LEASE_MS, 10, 20, [busy]);
    assert.deepEqual(
      claimed.map((c) => c.endpointId),
      Array(5).fill(other),
      'the other endpoint\'s 5, none of the passed-over one\'s',
    );
    await finishAll(now, claimed);
  });

  it('the backlog of an endpoint at its cap does not hide other endpoints\' due rows from the same claim', async () => {
    const { busy, other, now } = await backlogBehindOne(1_200_000_000_000);
    const claimed = await storage.deliveries.claimDue(now, LEASE_MS, 10, 3, []);
    const count = (endpointId: string) => claimed.filter((c) => c.endpointId === endpointId).length;
    assert.deepEqual([count(busy), count(other)], [3, 3], 'each endpoint\'s cap, the other\'s from behind the busy one\'s backlog');
    await finishAll(now, claimed);
  });

  it('completion needs the current lease token: a claimer whose lease ran out cannot overwrite', async () => {
    const t0 = 1_100_000_000_000;
    const { appId } = await backlogOf(1, 1, t0);
    const [stale] = await storage.deliveries.claimDue(t0, 1_000, 10, 10, []);
    assert.ok(stale);
    const [current] = await storage.deliveries.claimDue(t0 + 1_000, LEASE_MS, 10, 10, []);
    assert.equal(current?.deliveryId, stale.deliveryId, 'the lapsed lease let another claim take it');
    assert.notEqual(current.leaseToken, stale.leaseToken);

    await storage.deliveries.complete([outcome(stale, t0 + 1_500)], { disableAfterMs: null });
    assert.equal(await storage.deliveries.nextDueAt(), t0 + 1_000 + LEASE_MS, 'the stale completion left the delivery under the current lease');
    await storage.deliveries.complete([outcome(current, t0 + 2_000, t0 + 5_000)], { disableAfterMs: null });
    assert.equal(await storage.deliveries.nextDueAt(), t0 + 5_000, 'a retry is scheduled at its own time');
    const [retry] = await storage.deliveries.claimDue(t0 + 5_000, LEASE_MS, 10, 10, []);
    assert.equal(retry?.attempts, 1, 'the failed attempt was counted');

    await storage.deliveries.release([retry!]);
    assert.equal((await storage.deliveries.backlog(Date.now())).due, 1);
    const [again] = await storage.deliveries.claimDue(Date.now(), LEASE_MS, 10, 10, []);
    assert.equal(again?.deliveryId, retry!.deliveryId, 'a released delivery is due at once');
    await storage.deliveries.complete([outcome(again!, Date.now())], { disableAfterMs: null });
    assert.equal(await storage.deliveries.nextDueAt(), null);

    await storage.deliveries.resend(appId, again!.msgId, again!.endpointId, Date.now());
    const [manual] = await storage.deliveries.claimDue(Date.now(), LEASE_MS, 10, 10, []);
    assert.equal(manual?.deliveryId, again!.deliveryId, 'a resend reopens the same delivery');
    assert.equal(manual.triggerType, TriggerType.Manual);
    assert.equal(manual.attempts, 0);
    await storage.deliveries.complete([outcome(manual, Date.now())], { disableAfterMs: null });
    const attempts = await storage.attempts.listByMessage(appId, manual.msgId, { limit: 10 }, {});
    assert.equal(attempts.data.length, 4, 'every attempt is logged, the stale claimer\'s too');
  });

  it('concurrent claimers on separate connections never take the same delivery', async () => {
    const t0 = 1_200_000_000_000;
    await backlogOf(4, 25, t0);
    const other = await open(database);
    try {
      const [mine, theirs] = await Promise.all([drain(storage, t0 + 100), drain(other, t0 + 100)]);
      const ids = [...mine, ...theirs].map((claim) => claim.deliveryId);
      assert.equal(ids.length, 100, `every due delivery was claimed (${mine.length} + ${theirs.length})`);
      assert.equal(new Set(ids).size, 100, 'and none twice');
      await storage.deliveries.complete([...mine, ...theirs].map((claim) => outcome(claim, t0 + 200)), { disableAfterMs: null });
    } finally {
      await other.close();
    }
  });

  it("counts an endpoint's deliveries by state at a given time, within a creation window", async () => {
    const t0 = 1_300_000_000_000;
    const { appId, endpointIds } = await backlogOf(2, 4, t0);
    const [a, b] = endpointIds as [string, string];
    const all = { since: null, until: null };
    const counts = (success: number, fail: number, pending: number, sending: number) => ({ success, fail, pending, sending });
    assert.deepEqual(await storage.deliveries.countByEndpoint(a, t0 + 10, all), counts(0, 0, 4, 0), 'due and not claimed: pending');

    const claimedAt = t0 + 10;
    const claims = await drain(storage, claimedAt);
    assert.equal(claims.length, 8);
    // a's deliveries in creation order (message ids grow with time): created at t0, t0 + 1, t0 + 2, t0 + 3.
    const [delivered, failed, retried] = claims.filter((c) => c.endpointId === a).sort((x, y) => (x.msgId < y.msgId ? -1 : 1)) as [ClaimedDelivery, ClaimedDelivery, ClaimedDelivery];
    const gaveUp = outcomeOf(failed, { createdAt: t0 + 12, result: 'failure', url: ENDPOINT.url });
    await storage.deliveries.complete(
      [outcome(delivered, t0 + 11), gaveUp, outcome(retried, t0 + 13, t0 + 5_000)],
      { disableAfterMs: null },
    );

    assert.deepEqual(await storage.deliveries.countByEndpoint(a, t0 + 20, all), counts(1, 1, 1, 1), 'the fourth is still leased: sending');
    assert.deepEqual(await storage.deliveries.countByEndpoint(b, t0 + 20, all), counts(0, 0, 0, 4), 'another endpoint counts apart');
    const lapsed = claimedAt + LEASE_MS;
    assert.deepEqual(await storage.deliveries.countByEndpoint(a, lapsed, all), counts(1, 1, 2, 0), 'once its lease runs out (as claimDue sees it), pending again');
    assert.deepEqual(await storage.deliveries.countByEndpoint(b, lapsed, all), counts(0, 0, 4, 0));
    assert.deepEqual(await storage.deliveries.countByEndpoint(b, lapsed - 1, all), counts(0, 0, 0, 4), 'still live a millisecond before');

    const window = (since: number | null, until: number | null) => storage.deliveries.countByEndpoint(a, t0 + 20, { since, until });
    assert.deepEqual(await window(t0 + 1, null), counts(0, 1, 1, 1), 'since is inclusive');
    assert.deepEqual(await window(null, t0 + 2), counts(1, 1, 1, 0), 'until is inclusive');
    assert.deepEqual(await window(t0 + 3, t0 + 3), counts(0, 0, 0, 1));
    assert.deepEqual(await window(t0 + 4, null), counts(0, 0, 0, 0));
    assert.deepEqual(await window(t0 + 3, t0), counts(0, 0, 0, 0), 'an empty window');
    assert.deepEqual(await storage.deliveries.countByEndpoint('ep_000000000000000000000000000', t0 + 20, all), counts(0, 0, 0, 0));
    // Leaves nothing pending or leased for the tests after this one.
    await storage.applications.delete(appId);
  });

  it('loads delivery targets with plain keys, current first', async () => {
    const app = await storage.applications.create({ name: 'targets', uid: null, rateLimit: null, metadata: {} });
    const first = generateEndpointSecret();
    const second = generateEndpointSecret();
    const endpoint = await storage.endpoints.create(app.id, ENDPOINT, { 'x-team': 'a' }, first);
    await storage.endpoints.rotateSecret(endpoint.id, second, 60_000);
    const targets = await storage.deliveries.loadTargets([endpoint.id], Date.now());
    const target = targets.get(endpoint.id)!;
    assert.deepEqual(target.secrets, [second, first]);
    assert.deepEqual(target.headers, { 'x-team': 'a' });
    assert.equal(target.disabled, false);
    assert.equal(typeof target.updatedAt, 'number');
    assert.ok(target.validUntil > Date.now() && target.validUntil <= Date.now() + 60_000);
  });

  it("a claim brings each message's content (null once expunged) and its endpoint's version", async () => {
    const t0 = 1_000_000_500_000;
    const { appId, endpointIds } = await backlogOf(1, 2, t0);
    const endpoint = (await storage.endpoints.find(appId, endpointIds[0]!))!;
    const messages = (await storage.messages.list(appId, { limit: 10 }, {})).data;
    assert.equal(messages.length, 2);
    const expunged = messages.find((m) => m.createdAt === t0 + 1)!;
    const kept = messages.find((m) => m.createdAt === t0)!;
    assert.ok(await storage.messages.expungeContent(appId, expunged.id, t0));
    const claims = await drain(storage, t0 + 10);
    assert.deepEqual(claims.map((c) => c.msgId).sort(), [kept.id, expunged.id].sort());
    for (const claim of claims) assert.equal(claim.endpointUpdatedAt, endpoint.updatedAt);
    assert.deepEqual(claims.find((c) => c.msgId === kept.id)!.content, { payload: '{"n":1}', createdAt: t0 });
    assert.equal(claims.find((c) => c.msgId === expunged.id)!.content, null);
    await storage.applications.delete(appId);
  });

  it("every change to an endpoint gives it a new version (updatedAt), also within one millisecond", async (t) => {
    const app = await storage.applications.create({ name: 'versions', uid: null, rateLimit: null, metadata: {} });
    // Dispatchers reuse a cached target while a delivery carries its version: two changes in one
    // millisecond with the same updatedAt would leave the first one's target in use.
    t.mock.timers.enable({ apis: ['Date'], now: 1_900_000_000_000 });
    const created = await storage.endpoints.create(app.id, ENDPOINT, {}, generateEndpointSecret());
    const versions = [created.updatedAt];
    versions.push((await storage.endpoints.update(app.id, created.id, { ...ENDPOINT, url: 'https://example.com/v2' })).updatedAt);
    versions.push((await storage.endpoints.setHeaders(app.id, created.id, { 'x-v': '3' })).updatedAt);
    await storage.endpoints.rotateSecret(created.id, generateEndpointSecret(), 1_000);
    versions.push((await storage.endpoints.find(app.id, created.id))!.updatedAt);
    // Failure tracking disabling it is a change too.
    const [claim] = await storage.deliveries.claimDue(Date.now(), LEASE_MS, 10, 10, []).then(async (none) => {
      assert.equal(none.length, 0);
      await storage.ingest.acceptBatch([{ message: message(app.id, Date.now()), idempotency: null }], (eps) => eps);
      return storage.deliveries.claimDue(Date.now(), LEASE_MS, 10, 10, []);
    });
    const failed = outcomeOf(claim!, { createdAt: Date.now(), result: 'failure', health: 'failure', url: ENDPOINT.url });
    const { disabledEndpoints } = await storage.deliveries.complete([failed], { disableAfterMs: 0 });
    assert.deepEqual(disabledEndpoints, [created.id]);
    const disabled = (await storage.endpoints.find(app.id, created.id))!;
    assert.equal(disabled.disabled, true);
    versions.push(disabled.updatedAt);
    assert.equal(Date.now(), 1_900_000_000_000, 'the clock stood still throughout');
    assert.deepEqual(versions, [0, 1, 2, 3, 4].map((i) => 1_900_000_000_000 + i));
    t.mock.timers.reset();
    await storage.applications.delete(app.id);
  });

  it('timestamps, counts and ids come back as numbers, flags as booleans', async () => {
    const app = await storage.applications.create({ name: 'types', uid: 'types-app', rateLimit: 5, metadata: { a: 'b' } });
    const found = await storage.applications.find('types-app');
    assert.deepEqual(found, app);
    assert.equal(typeof found!.createdAt, 'number');
    assert.equal(found!.rateLimit, 5);
    const endpoint = await storage.endpoints.create(app.id, { ...ENDPOINT, disabled: true, filterTypes: ['a.*'] }, {}, generateEndpointSecret());
    const stored = await storage.endpoints.find(app.id, endpoint.id);
    assert.equal(stored!.disabled, true);
    assert.deepEqual(stored!.filterTypes, ['a.*']);
    assert.equal(typeof stored!.updatedAt, 'number');
    await storage.endpoints.rotateSecret(endpoint.id, generateEndpointSecret(), 1_000);
    const keys = await storage.endpoints.secrets(endpoint.id, Date.now());
    assert.equal(typeof keys[1]!.expiresAt, 'number');
    assert.equal(typeof keys[0]!.createdAt, 'number');
    assert.equal(typeof (await storage.apiKeys.count()), 'number');
    const backlog = await storage.deliveries.backlog(Date.now());
    assert.equal(typeof backlog.due, 'number');
    assert.equal(typeof backlog.oldestDueAgeMs, 'number');
    const eventType = await storage.eventTypes.create('types.flag', { description: '', archived: true, deprecated: false, schemas: { '1': { type: 'object' } }, featureFlag: null, groupName: null });
    assert.equal(eventType.archived, true);
    assert.deepEqual((await storage.eventTypes.find('types.flag'))!, eventType);
  });

  it('keys page in byte order whatever the database collation (ids are base62: 0-9 < A-Z < a-z)', async () => {
    const names = ['sort.b', 'Sort.B', 'sort.a', 'Sort.Z', 'sort_0', 'Sort-9'];
    for (const name of names) await storage.eventTypes.create(name, { description: '', archived: false, deprecated: false, schemas: null, featureFlag: null, groupName: null });
    const listed = (await storage.eventTypes.list({ limit: 250, includeArchived: true })).data.map((e) => e.name).filter((n) => names.includes(n));
    assert.deepEqual(listed, [...names].sort(), 'byte order, as JavaScript compares ASCII');
    const page = await storage.eventTypes.list({ limit: 2, iterator: 'Sort.Z', includeArchived: true });
    assert.deepEqual(page.data.map((e) => e.name), ['sort.a', 'sort.b'], 'the cursor compares byte-wise too');

    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await storage.applications.create({ name: `order ${i}`, uid: null, rateLimit: null, metadata: {} })).id);
    const all: string[] = [];
    let iterator: string | null = null;
    for (;;) {
      const result = await storage.applications.list({ limit: 50, iterator });
      all.push(...result.data.map((a) => a.id));
      if (result.done) break;
      iterator = result.iterator;
    }
    assert.deepEqual(all, [...all].sort(), 'applications are listed in byte order of their ids');
    assert.ok(ids.every((id) => all.includes(id)));
  });

  it('a duplicate eventId or a vanished application fails only its own item of a batch', async () => {
    const app = await storage.applications.create({ name: 'batch', uid: null, rateLimit: null, metadata: {} });
    const doomed = await storage.applications.create({ name: 'doomed', uid: null, rateLimit: null, metadata: {} });
    await storage.endpoints.create(app.id, ENDPOINT, {}, generateEndpointSecret());
    const now = Date.now();
    assert.ok((await storage.ingest.acceptBatch([{ message: message(app.id, now, 'evt-dup'), idempotency: null }], (eps) => eps))[0]!.ok);
    await storage.applications.delete(doomed.id);
    const twice = message(app.id, now + 6, 'evt-twice');
    const outcomes = await storage.ingest.acceptBatch(
      [
        { message: message(app.id, now + 1, 'evt-new'), idempotency: null },
        { message: message(app.id, now + 2, 'evt-dup'), idempotency: null },
        { message: message(doomed.id, now + 3), idempotency: null },
        { message: message(app.id, now + 4), idempotency: null },
        // The same new eventId twice in one batch: the first is taken, the second is a duplicate.
        { message: message(app.id, now + 5, 'evt-twice'), idempotency: null },
        { message: twice, idempotency: null },
      ],
      (eps) => eps,
    );
    const codes = outcomes.map((o) => (o.ok ? `ok:${o.deliveries.length}` : (o.error as HookrelayError).code));
    assert.deepEqual(codes, ['ok:1', 'duplicate_event_id', 'not_found', 'ok:1', 'ok:1', 'duplicate_event_id']);
    assert.equal(await storage.messages.find(app.id, twice.id), null, 'a refused duplicate stores no message');
    const ids = outcomes.flatMap((o) => (o.ok ? o.deliveries.map((d) => d.deliveryId) : []));
    assert.ok(ids.every((id) => typeof id === 'number' && id > 0), 'delivery ids are returned as numbers');
  });

  it('unique and foreign-key violations become conflict and not_found', async () => {
    await storage.applications.create({ name: 'unique', uid: 'unique-app', rateLimit: null, metadata: {} });
    await assert.rejects(storage.applications.create({ name: 'again', uid: 'unique-app', rateLimit: null, metadata: {} }), (error: unknown) => error instanceof HookrelayError && error.code === 'conflict');
    await assert.rejects(storage.endpoints.create('app_000000000000000000000000000', ENDPOINT, {}, generateEndpointSecret()), (error: unknown) => error instanceof HookrelayError && error.code === 'not_found');
    await assert.rejects(storage.eventTypes.create('sort.b', { description: '', archived: false, deprecated: false, schemas: null, featureFlag: null, groupName: null }), (error: unknown) => error instanceof HookrelayError && error.code === 'conflict');
  });
});
