import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateApiKey, hashApiKey } from '../src/api/plugins/authenticate.js';
import { requestHash } from '../src/api/plugins/idempotency.js';
import { STALE_RESERVATION_MS } from '../src/storage/stores/idempotency-store.js';
import { ADMIN_KEY, startHarness, type Harness } from './helpers/api-harness.js';
import { TEST_ENGINES } from './helpers/test-database.js';

for (const engine of TEST_ENGINES) describe(`idempotency (${engine})`, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ engine });
  });
  after(async () => {
    await h.close();
  });

  const withKey = (key: string) => ({ 'idempotency-key': key });

  async function appsNamed(harness: Harness, name: string): Promise<number> {
    const list = await harness.request('GET', '/api/v1/app?limit=250');
    return list.body.data.filter((a: any) => a.name === name).length;
  }

  describe('Idempotency-Key', () => {
    it('replays the same status and body and creates the resource once', async () => {
      const body = { name: 'Idempotent app', metadata: { n: '1' } };
      const first = await h.request('POST', '/api/v1/app', { body, headers: withKey('create-app-1') });
      assert.equal(first.status, 201);
      assert.equal(first.headers.get('idempotent-replayed'), null);
      const second = await h.request('POST', '/api/v1/app', { body, headers: withKey('create-app-1') });
      assert.equal(second.status, 201);
      assert.equal(second.text, first.text, 'byte-identical replay');
      assert.equal(second.headers.get('idempotent-replayed'), 'true');
      assert.match(second.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(await appsNamed(h, 'Idempotent app'), 1);
    });

    it('refuses the same key with a different request (422) and leaves the first one alone', async () => {
      const first = await h.request('POST', '/api/v1/app', { body: { name: 'Mismatch A' }, headers: withKey('mismatch') });
      assert.equal(first.status, 201);
      const other = await h.request('POST', '/api/v1/app', { body: { name: 'Mismatch B' }, headers: withKey('mismatch') });
      assert.equal(other.status, 422);
      assert.equal(other.body.code, 'idempotency_mismatch');
      const otherPath = await h.request('POST', `/api/v1/app/${first.body.id}/endpoint`, { body: { url: 'https://example.com' }, headers: withKey('mismatch') });
      assert.equal(otherPath.body.code, 'idempotency_mismatch');
      assert.equal(await appsNamed(h, 'Mismatch B'), 0);
      const replay = await h.request('POST', '/api/v1/app', { body: { name: 'Mismatch A' }, headers: withKey('mismatch') });
      assert.equal(replay.text, first.text);
    });

    it('answers 409 while the first request with the key is still in progress', async () => {
      const body = { name: 'In progress' };
      // Reserve the key the way the plugin does, as a request that has not finished would have.
      const reserved = await h.storage.idempotency.reserve(hashApiKey(ADMIN_KEY), 'busy', requestHash('POST', '/api/v1/app', body), Date.now(), 60_000);
      assert.equal(reserved, null);
      const res = await h.request('POST', '/api/v1/app', { body, headers: withKey('busy') });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, 'idempotency_conflict');
      assert.equal(await appsNamed(h, 'In progress'), 0);
    });

    it('stores 4xx responses and replays them', async () => {
      await h.request('POST', '/api/v1/app', { body: { name: 'Holder', uid: 'taken-uid' } });
      const conflict = await h.request('POST', '/api/v1/app', { body: { name: 'Late', uid: 'taken-uid' }, headers: withKey('conflict-4xx') });
      assert.equal(conflict.status, 409);
      assert.equal((await h.request('DELETE', '/api/v1/app/taken-uid')).status, 204);
      const replay = await h.request('POST', '/api/v1/app', { body: { name: 'Late', uid: 'taken-uid' }, headers: withKey('conflict-4xx') });
      assert.equal(replay.status, 409, 'the stored 409 is replayed although the uid is now free');
      assert.equal(replay.text, conflict.text);
      assert.equal((await h.request('GET', '/api/v1/app/taken-uid')).status, 404);
    });

    it('scopes keys to the API key that sent them', async () => {
      const otherKey = generateApiKey();
      await h.storage.apiKeys.create('second caller', hashApiKey(otherKey));
      const body = { name: 'Scoped' };
      const mine = await h.request('POST', '/api/v1/app', { body, headers: withKey('shared-key') });
      const theirs = await h.request('POST', '/api/v1/app', { body, headers: withKey('shared-key'), token: otherKey });
      assert.equal(mine.status, 201);
      assert.equal(theirs.status, 201);
      assert.notEqual(mine.body.id, theirs.body.id);
      assert.equal(await appsNamed(h, 'Scoped'), 2);
    });

    it('stores a message create in the message transaction and replays it', async () => {
      const app = (await h.request('POST', '/api/v1/app', { body: { name: 'Idempotent messages' } })).body;
      const body = { eventType: 'order.created', payload: { order: 42 } };
      const first = await h.request('POST', `/api/v1/app/${app.id}/msg`, { body, headers: withKey('msg-1') });
      assert.equal(first.status, 202);
      const row = (await h.database.dump())['idempotency_keys']!.find((r: any) => r.key === 'msg-1') as any;
      assert.equal(row.status_code, 202);
      assert.equal(row.response_body, first.text, 'the stored response is exactly what was sent');
      const second = await h.request('POST', `/api/v1/app/${app.id}/msg`, { body, headers: withKey('msg-1') });
      assert.equal(second.status, 202);
      assert.equal(second.text, first.text);
      const list = await h.request('GET', `/api/v1/app/${app.id}/msg`);
      assert.equal(list.body.data.length, 1, 'one message');
    });

    it('frees the key when the request fails with a 5xx, so a retry runs again', async () => {
      let failNext = true;
      const flaky = await startHarness({
        engine,
        wrapMessages: (real) => ({
          accept(appId, input, idempotency) {
            if (failNext) {
              failNext = false;
              return Promise.reject(new Error('disk on fire at /var/lib/secret-path'));
            }
            return real.accept(appId, input, idempotency);
          },
        }),
      });
      try {
        const app = (await flaky.request('POST', '/api/v1/app', { body: { name: 'Flaky' } })).body;
        const body = { eventType: 'x.y', payload: { a: 1 } };
        const failed = await flaky.request('POST', `/api/v1/app/${app.id}/msg`, { body, headers: withKey('retry-me') });
        assert.equal(failed.status, 500);
        assert.equal(failed.body.code, 'internal');
        assert.ok(!failed.text.includes('disk on fire') && !failed.text.includes('secret-path'), 'the internal error message is not leaked');
        const retried = await flaky.request('POST', `/api/v1/app/${app.id}/msg`, { body, headers: withKey('retry-me') });
        assert.equal(retried.status, 202, retried.text);
        const again = await flaky.request('POST', `/api/v1/app/${app.id}/msg`, { body, headers: withKey('retry-me') });
        assert.equal(again.text, retried.text);
        assert.equal((await flaky.request('GET', `/api/v1/app/${app.id}/msg`)).body.data.length, 1);
      } finally {
        await flaky.close();
      }
    });

    it('survives closing and reopening the server on the same database', async () => {
      const first = await startHarness({ engine });
      const body = { name: 'Across restarts' };
      const created = await first.request('POST', '/api/v1/app', { body, headers: withKey('restart-key') });
      assert.equal(created.status, 201);
      const database = first.database;
      await first.close({ keepDatabase: true });

      const second = await startHarness({ database });
      try {
        assert.notEqual(second.url, '', 'a new server');
        const replay = await second.request('POST', '/api/v1/app', { body, headers: withKey('restart-key') });
        assert.equal(replay.status, 201);
        assert.equal(replay.text, created.text);
        assert.equal(await appsNamed(second, 'Across restarts'), 1);
        const mismatch = await second.request('POST', '/api/v1/app', { body: { name: 'Different' }, headers: withKey('restart-key') });
        assert.equal(mismatch.status, 422);
      } finally {
        await second.close();
      }
    });
  });

  describe('idempotency store', () => {
    const scope = 'store-test';

    it('lets a retry take over a reservation abandoned by a crashed request, but not a live one', async () => {
      const store = h.storage.idempotency;
      const t0 = 1_000_000_000;
      assert.equal(await store.reserve(scope, 'crashed', 'hash-a', t0, 3_600_000), null);
      const live = await store.reserve(scope, 'crashed', 'hash-a', t0 + 1_000, 3_600_000);
      assert.deepEqual(live, { requestHash: 'hash-a', statusCode: null, body: null }, 'still in progress');
      const different = await store.reserve(scope, 'crashed', 'hash-b', t0 + STALE_RESERVATION_MS + 1, 3_600_000);
      assert.equal(different?.requestHash, 'hash-a', 'another request never takes it over: the caller reports a mismatch');
      assert.equal(await store.reserve(scope, 'crashed', 'hash-a', t0 + STALE_RESERVATION_MS + 1, 3_600_000), null, 'the same request takes over a stale reservation');
      const again = await store.reserve(scope, 'crashed', 'hash-a', t0 + STALE_RESERVATION_MS + 2, 3_600_000);
      assert.equal(again?.statusCode, null, 'and then holds it itself');
    });

    it('replays a completed response until it expires, then treats the key as new', async () => {
      const store = h.storage.idempotency;
      const t0 = 2_000_000_000;
      const ttl = STALE_RESERVATION_MS * 10;
      assert.equal(await store.reserve(scope, 'done', 'hash-a', t0, ttl), null);
      await store.complete(scope, 'done', 201, '{"ok":true}');
      const stored = { requestHash: 'hash-a', statusCode: 201, body: '{"ok":true}' };
      assert.deepEqual(await store.reserve(scope, 'done', 'hash-a', t0 + STALE_RESERVATION_MS * 2, ttl), stored, 'a completed response is never taken over');
      await store.abandon(scope, 'done');
      assert.deepEqual(await store.reserve(scope, 'done', 'hash-a', t0 + ttl - 1, ttl), stored, 'abandon never frees a completed response');
      assert.equal(await store.reserve(scope, 'done', 'hash-b', t0 + ttl, ttl), null, 'expired: any request may use the key again');
      assert.deepEqual(await store.reserve(scope, 'done', 'hash-a', t0 + ttl + 1, ttl), { requestHash: 'hash-b', statusCode: null, body: null });
    });

    it('an abandoned reservation frees the key at once', async () => {
      const store = h.storage.idempotency;
      assert.equal(await store.reserve(scope, 'abandon', 'hash-a', 3_000_000_000, 10_000), null);
      await store.abandon(scope, 'abandon');
      assert.equal(await store.reserve(scope, 'abandon', 'hash-b', 3_000_000_001, 10_000), null);
    });
  });
});
