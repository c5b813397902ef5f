import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newId } from '../src/core/ids.js';
import { DeliveryStatus, TriggerType } from '../src/storage/models.js';
import { startHarness, type Harness } from './helpers/api-harness.js';
import { TEST_ENGINES } from './helpers/test-database.js';

/** A valid secret: whsec_ + base64 of 24 bytes. */
const SECRET_A = 'whsec_' + Buffer.alloc(24, 1).toString('base64');
const SECRET_B = 'whsec_' + Buffer.alloc(32, 2).toString('base64');

for (const engine of TEST_ENGINES) describe(`API CRUD (${engine})`, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ engine });
  });
  after(async () => {
    await h.close();
  });

  async function createApp(body: Record<string, unknown>): Promise<any> {
    const res = await h.request('POST', '/api/v1/app', { body });
    assert.equal(res.status, 201, res.text);
    return res.body;
  }

  async function createEndpoint(appId: string, body: Record<string, unknown>): Promise<any> {
    const res = await h.request('POST', `/api/v1/app/${appId}/endpoint`, { body });
    assert.equal(res.status, 201, res.text);
    return res.body;
  }

  async function sendMessage(appId: string, body: Record<string, unknown>): Promise<any> {
    const res = await h.request('POST', `/api/v1/app/${appId}/msg`, { body });
    assert.equal(res.status, 202, res.text);
    return res.body;
  }

  /** Walks a list by `iterator` until done; returns the pages. */
  async function allPages(path: string, limit: number): Promise<any[]> {
    const pages: any[] = [];
    let iterator: string | null = null;
    for (let guard = 0; guard < 100; guard++) {
      const sep = path.includes('?') ? '&' : '?';
      const res = await h.request('GET', `${path}${sep}limit=${limit}${iterator ? `&iterator=${iterator}` : ''}`);
      assert.equal(res.status, 200, res.text);
      pages.push(res.body);
      if (res.body.done) return pages;
      iterator = res.body.iterator;
    }
    throw new Error('the list never reported done');
  }

  describe('applications', () => {
    it('creates, reads by id and by uid, and lists', async () => {
      const app = await createApp({ name: 'Crud app', uid: 'crud-app', metadata: { team: 'a' }, throttleRate: 5 });
      assert.match(app.id, /^app_[0-9A-Za-z]{27}$/);
      assert.equal(app.name, 'Crud app');
      assert.equal(app.uid, 'crud-app');
      assert.deepEqual(app.metadata, { team: 'a' });
      assert.equal(app.throttleRate, 5);
      assert.equal(app.rateLimit, 5);
      assert.ok(!Number.isNaN(Date.parse(app.createdAt)));
      assert.equal(app.createdAt, app.updatedAt);

      const byId = await h.request('GET', `/api/v1/app/${app.id}`);
      assert.equal(byId.status, 200);
      assert.deepEqual(byId.body, app);
      const byUid = await h.request('GET', '/api/v1/app/crud-app');
      assert.deepEqual(byUid.body, app);

      const list = await h.request('GET', '/api/v1/app?limit=250');
      assert.equal(list.status, 200);
      assert.ok(list.body.data.some((a: any) => a.id === app.id));
    });

    it('get_if_exists returns the existing application (200); without it a duplicate uid is 409', async () => {
      const app = await createApp({ name: 'Once', uid: 'get-or-create' });
      const again = await h.request('POST', '/api/v1/app?get_if_exists=true', { body: { name: 'Other name', uid: 'get-or-create' } });
      assert.equal(again.status, 200);
      assert.equal(again.body.id, app.id);
      assert.equal(again.body.name, 'Once');
      const fresh = await h.request('POST', '/api/v1/app?get_if_exists=true', { body: { name: 'New', uid: 'get-or-create-2' } });
      assert.equal(fresh.status, 201);
      const dup = await h.request('POST', '/api/v1/app', { body: { name: 'Dup', uid: 'get-or-create' } });
      assert.equal(dup.status, 409);
      assert.equal(dup.body.code, 'conflict');
    });

    it('PUT replaces an application, or creates it when absent (as Svix)', async () => {
      const app = await createApp({ name: 'Put me', uid: 'put-app', metadata: { a: '1' }, rateLimit: 3 });
      const put = await h.request('PUT', '/api/v1/app/put-app', { body: { name: 'Replaced', uid: 'put-app' } });
      assert.equal(put.status, 200);
      assert.equal(put.body.id, app.id);
      assert.equal(put.body.name, 'Replaced');
      assert.deepEqual(put.body.metadata, {}, 'PUT replaces: absent metadata is cleared');
      assert.equal(put.body.throttleRate, null);
      assert.ok(Date.parse(put.body.updatedAt) >= Date.parse(app.updatedAt));

      const created = await h.request('PUT', '/api/v1/app/put-new', { body: { name: 'Made by PUT', uid: 'put-new' } });
      assert.equal(created.status, 201);
      assert.equal((await h.request('GET', '/api/v1/app/put-new')).body.id, created.body.id);
    });

    it('PATCH changes only the fields sent, and null clears a nullable one', async () => {
      const app = await createApp({ name: 'Patch me', uid: 'patch-app', metadata: { keep: 'yes' }, throttleRate: 7 });
      const renamed = await h.request('PATCH', `/api/v1/app/${app.id}`, { body: { name: 'Patched' } });
      assert.equal(renamed.status, 200);
      assert.equal(renamed.body.name, 'Patched');
      assert.equal(renamed.body.uid, 'patch-app');
      assert.deepEqual(renamed.body.metadata, { keep: 'yes' });
      assert.equal(renamed.body.throttleRate, 7);

      const cleared = await h.request('PATCH', '/api/v1/app/patch-app', { body: { uid: null, throttleRate: null } });
      assert.equal(cleared.status, 200);
      assert.equal(cleared.body.uid, null);
      assert.equal(cleared.body.throttleRate, null);
      assert.equal((await h.request('GET', '/api/v1/app/patch-app')).status, 404);
    });

    it('DELETE removes the application with its endpoints, messages and attempts (204, then 404)', async () => {
      const app = await createApp({ name: 'Doomed', uid: 'doomed' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/doomed' });
      const msg = await sendMessage(app.id, { eventType: 'doomed.event', payload: { x: 1 } });
      await completeDueDeliveries();
      const attempts = await h.request('GET', `/api/v1/app/${app.id}/attempt/msg/${msg.id}`);
      assert.equal(attempts.body.data.length, 1, 'an attempt exists before the delete');

      const del = await h.request('DELETE', '/api/v1/app/doomed');
      assert.equal(del.status, 204);
      assert.equal(del.text, '');
      assert.equal((await h.request('GET', `/api/v1/app/${app.id}`)).status, 404);
      assert.equal(await h.storage.endpoints.find(app.id, ep.id), null);
      assert.equal(await h.storage.messages.find(app.id, msg.id), null);
      const left = await h.storage.attempts.listByMessage(app.id, msg.id, { limit: 10 }, {});
      assert.equal(left.data.length, 0, 'attempts are deleted with the application');
      assert.equal((await h.request('DELETE', '/api/v1/app/doomed')).status, 404);
    });

    it('accepts paths with a trailing slash', async () => {
      const created = await h.request('POST', '/api/v1/app/', { body: { name: 'Slash', uid: 'slash-app' } });
      assert.equal(created.status, 201);
      assert.equal((await h.request('GET', '/api/v1/app/slash-app/')).body.id, created.body.id);
      assert.equal((await h.request('GET', `/api/v1/app/${created.body.id}/endpoint/`)).status, 200);
    });
  });

  describe('pagination', () => {
    it('walks applications oldest first over several pages, and prevIterator walks back', async () => {
      const own = await startHarness({ engine });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 7; i++) {
          const res = await own.request('POST', '/api/v1/app', { body: { name: `App ${i}` } });
          ids.push(res.body.id);
        }
        const page1 = await own.request('GET', '/api/v1/app?limit=3');
        assert.deepEqual(page1.body.data.map((a: any) => a.id), ids.slice(0, 3));
        assert.equal(page1.body.done, false);
        assert.equal(page1.body.iterator, ids[2]);
        assert.equal(page1.body.prevIterator, '-' + ids[0]);

        const page2 = await own.request('GET', `/api/v1/app?limit=3&iterator=${page1.body.iterator}`);
        assert.deepEqual(page2.body.data.map((a: any) => a.id), ids.slice(3, 6));
        assert.equal(page2.body.done, false);
        const page3 = await own.request('GET', `/api/v1/app?limit=3&iterator=${page2.body.iterator}`);
        assert.deepEqual(page3.body.data.map((a: any) => a.id), ids.slice(6));
        assert.equal(page3.body.done, true);

        const back = await own.request('GET', `/api/v1/app?limit=3&iterator=${encodeURIComponent(page3.body.prevIterator)}`);
        assert.deepEqual(back.body.data.map((a: any) => a.id), ids.slice(3, 6), 'the page before page 3 is page 2, in list order');
        assert.equal(back.body.done, false);
        const first = await own.request('GET', `/api/v1/app?limit=3&iterator=${encodeURIComponent(page2.body.prevIterator)}`);
        assert.deepEqual(first.body.data.map((a: any) => a.id), ids.slice(0, 3));
        assert.equal(first.body.done, true, 'nothing before the first page');

        const descending = await own.request('GET', '/api/v1/app?limit=2&order=descending');
        assert.deepEqual(descending.body.data.map((a: any) => a.id), [ids[6], ids[5]]);
      } finally {
        await own.close();
      }
    });

    it('walks endpoints newest first with limit and iterator until done', async () => {
      const app = await createApp({ name: 'Many endpoints' });
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) ids.push((await createEndpoint(app.id, { url: `https://example.com/${i}` })).id);
      const pages = await allPages(`/api/v1/app/${app.id}/endpoint`, 3);
      assert.equal(pages.length, 3);
      assert.deepEqual(pages.flatMap((p) => p.data.map((e: any) => e.id)), [...ids].reverse());
      assert.deepEqual(pages.map((p) => p.done), [false, false, true]);
    });

    it('limit is 0 to 250 on every list, as on Svix\'s server: 0 is an empty page that says whether anything is left, above 250 is 422 (not clamped)', async () => {
      const app = await createApp({ name: 'Limits' });
      const endpoint = await createEndpoint(app.id, { url: 'https://example.com/limits' });
      await h.request('POST', '/api/v1/event-type', { body: { name: 'limits.tested', description: 'x' } });
      const msg = await sendMessage(app.id, { eventType: 'limits.tested', payload: {} });
      const empty = await createApp({ name: 'Limits, empty' });
      // [path, whether it lists anything here]; the harness sends nothing, so there are no attempts.
      const lists: [string, boolean][] = [
        ['/api/v1/app', true],
        [`/api/v1/app/${app.id}/endpoint`, true],
        [`/api/v1/app/${empty.id}/endpoint`, false],
        ['/api/v1/event-type', true],
        [`/api/v1/app/${app.id}/msg`, true],
        [`/api/v1/app/${empty.id}/msg`, false],
        [`/api/v1/app/${app.id}/attempt/endpoint/${endpoint.id}`, false],
        [`/api/v1/app/${app.id}/attempt/msg/${msg.id}`, false],
      ];
      for (const [path, hasItems] of lists) {
        const zero = await h.request('GET', `${path}?limit=0`);
        assert.equal(zero.status, 200, `${path}?limit=0: ${zero.text}`);
        assert.deepEqual(zero.body.data, [], path);
        assert.equal(zero.body.iterator, null, path);
        assert.equal(zero.body.done, !hasItems, `${path}: done says whether anything is left`);
        assert.equal((await h.request('GET', `${path}?limit=250`)).status, 200, path);
        for (const limit of ['251', '1000']) {
          const over = await h.request('GET', `${path}?limit=${limit}`);
          assert.equal(over.status, 422, `${path}?limit=${limit}: ${over.text}`);
          assert.equal(over.body.code, 'validation');
          assert.deepEqual(over.body.detail[0].loc, ['query', 'limit']);
        }
      }
    });

    it('an empty list has null iterators and is done', async () => {
      const app = await createApp({ name: 'Empty' });
      const res = await h.request('GET', `/api/v1/app/${app.id}/endpoint`);
      assert.deepEqual(res.body, { data: [], iterator: null, prevIterator: null, done: true });
    });
  });

  describe('endpoints', () => {
    it('creates with defaults, reads by id and uid, and keeps a supplied secret', async () => {
      const app = await createApp({ name: 'Endpoint app', uid: 'ep-app' });
      const ep = await createEndpoint('ep-app', { url: 'https://example.com/hook', uid: 'main', secret: SECRET_A, filterTypes: ['user.created', 'order.*', 'user.created'], channels: ['eu:1'] });
      assert.match(ep.id, /^ep_/);
      assert.equal(ep.description, '');
      assert.equal(ep.version, 1);
      assert.equal(ep.disabled, false);
      assert.deepEqual(ep.filterTypes, ['user.created', 'order.*'], 'duplicates are dropped');
      assert.deepEqual(ep.channels, ['eu:1']);
      assert.deepEqual(ep.metadata, {});
      assert.deepEqual((await h.request('GET', `/api/v1/app/${app.id}/endpoint/main`)).body, ep);
      assert.deepEqual((await h.request('GET', `/api/v1/app/ep-app/endpoint/${ep.id}`)).body, ep);
      assert.deepEqual((await h.request('GET', `/api/v1/app/ep-app/endpoint/main/secret`)).body, { key: SECRET_A });

      const unprefixed = await createEndpoint(app.id, { url: 'http://example.com/2', secret: SECRET_B.slice('whsec_'.length) });
      assert.equal((await h.request('GET', `/api/v1/app/${app.id}/endpoint/${unprefixed.id}/secret`)).body.key, SECRET_B, 'a secret without whsec_ is accepted and stored with it');

      const generated = await createEndpoint(app.id, { url: 'https://example.com/3' });
      const key = (await h.request('GET', `/api/v1/app/${app.id}/endpoint/${generated.id}/secret`)).body.key;
      assert.match(key, /^whsec_[A-Za-z0-9+/]{32}$/);

      const dup = await h.request('POST', `/api/v1/app/${app.id}/endpoint`, { body: { url: 'https://example.com/4', uid: 'main' } });
      assert.equal(dup.status, 409);
      assert.equal(dup.body.code, 'conflict');
    });

    it('PUT replaces (keeping headers and secret) or creates; PATCH changes only what is sent', async () => {
      const app = await createApp({ name: 'Endpoint updates' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/a', uid: 'upd', description: 'first', filterTypes: ['a.b'], headers: { 'X-Keep': '1' }, secret: SECRET_A, metadata: { m: '1' } });

      const put = await h.request('PUT', `/api/v1/app/${app.id}/endpoint/upd`, { body: { url: 'https://example.com/b', uid: 'upd', version: 2 } });
      assert.equal(put.status, 200);
      assert.equal(put.body.id, ep.id);
      assert.equal(put.body.url, 'https://example.com/b');
      assert.equal(put.body.description, '');
      assert.equal(put.body.filterTypes, null);
      assert.equal(put.body.version, 2);
      assert.deepEqual(put.body.metadata, {});
      assert.deepEqual((await h.request('GET', `/api/v1/app/${app.id}/endpoint/upd/headers`)).body.headers, { 'X-Keep': '1' });
      assert.equal((await h.request('GET', `/api/v1/app/${app.id}/endpoint/upd/secret`)).body.key, SECRET_A);

      const putNew = await h.request('PUT', `/api/v1/app/${app.id}/endpoint/brand-new`, { body: { url: 'https://example.com/new', uid: 'brand-new' } });
      assert.equal(putNew.status, 201);
      assert.equal((await h.request('GET', `/api/v1/app/${app.id}/endpoint/brand-new`)).body.id, putNew.body.id);

      const patch = await h.request('PATCH', `/api/v1/app/${app.id}/endpoint/${ep.id}`, { body: { disabled: true, channels: ['x'], description: 'patched' } });
      assert.equal(patch.status, 200);
      assert.equal(patch.body.disabled, true);
      assert.deepEqual(patch.body.channels, ['x']);
      assert.equal(patch.body.url, 'https://example.com/b');
      assert.equal(patch.body.uid, 'upd');
      assert.equal(patch.body.version, 2);
      const cleared = await h.request('PATCH', `/api/v1/app/${app.id}/endpoint/${ep.id}`, { body: { channels: null, uid: null } });
      assert.equal(cleared.body.channels, null);
      assert.equal(cleared.body.uid, null);
    });

    it('DELETE removes the endpoint (204, then 404)', async () => {
      const app = await createApp({ name: 'Endpoint delete' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/x' });
      assert.equal((await h.request('DELETE', `/api/v1/app/${app.id}/endpoint/${ep.id}`)).status, 204);
      assert.equal((await h.request('GET', `/api/v1/app/${app.id}/endpoint/${ep.id}`)).status, 404);
      assert.equal((await h.request('DELETE', `/api/v1/app/${app.id}/endpoint/${ep.id}`)).status, 404);
    });

    it('an endpoint of another application is not found', async () => {
      const a = await createApp({ name: 'Owner' });
      const b = await createApp({ name: 'Stranger' });
      const ep = await createEndpoint(a.id, { url: 'https://example.com/x' });
      assert.equal((await h.request('GET', `/api/v1/app/${b.id}/endpoint/${ep.id}`)).status, 404);
      assert.equal((await h.request('DELETE', `/api/v1/app/${b.id}/endpoint/${ep.id}`)).status, 404);
    });
  });

  describe('endpoint headers', () => {
    it('hides sensitive values, replaces with PUT and merges with PATCH', async () => {
      const app = await createApp({ name: 'Headers' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/h', headers: { Authorization: 'Bearer s3cret', 'X-Team': 'a' } });
      const base = `/api/v1/app/${app.id}/endpoint/${ep.id}/headers`;

      const got = await h.request('GET', base);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, { headers: { 'X-Team': 'a' }, sensitive: ['Authorization'] });
      assert.ok(!got.text.includes('s3cret'));

      const put = await h.request('PUT', base, { body: { headers: { 'X-One': '1', 'X-Api-Key': 'k' } } });
      assert.equal(put.status, 204);
      assert.deepEqual((await h.request('GET', base)).body, { headers: { 'X-One': '1' }, sensitive: ['X-Api-Key'] });

      const patch = await h.request('PATCH', base, { body: { headers: { 'x-one': 'replaced', 'X-Two': '2', 'X-Api-Key': null }, deleteHeaders: [] } });
      assert.equal(patch.status, 204);
      assert.deepEqual((await h.request('GET', base)).body, { headers: { 'x-one': 'replaced', 'X-Two': '2' }, sensitive: [] }, 'names match case-insensitively; null removes');

      const removed = await h.request('PATCH', base, { body: { headers: {}, deleteHeaders: ['X-ONE'] } });
      assert.equal(removed.status, 204);
      assert.deepEqual((await h.request('GET', base)).body.headers, { 'X-Two': '2' });
      const stored = await h.storage.endpoints.find(app.id, ep.id);
      assert.deepEqual(stored?.headers, { 'X-Two': '2' });
    });
  });

  describe('endpoint secret rotation', () => {
    it('makes the new key current while the old one stays valid for the grace period', async () => {
      const app = await createApp({ name: 'Rotate' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/r', secret: SECRET_A });
      const base = `/api/v1/app/${app.id}/endpoint/${ep.id}/secret`;

      const rotated = await h.request('POST', `${base}/rotate`, { body: { key: SECRET_B } });
      assert.equal(rotated.status, 204);
      assert.equal((await h.request('GET', base)).body.key, SECRET_B);
      const keys = await h.storage.endpoints.secrets(ep.id, Date.now());
      assert.deepEqual(keys.map((k) => k.key), [SECRET_B, SECRET_A], 'the old key is still listed inside the grace period');
      assert.equal(keys[0]!.expiresAt, null);
      assert.ok(keys[1]!.expiresAt! > Date.now() + h.config.secretRotationGraceMs - 60_000);
      const afterGrace = await h.storage.endpoints.secrets(ep.id, keys[1]!.expiresAt! + 1);
      assert.deepEqual(afterGrace.map((k) => k.key), [SECRET_B], 'and gone once the grace period ends');

      const generated = await h.request('POST', `${base}/rotate`, { body: {} });
      assert.equal(generated.status, 204);
      const current = (await h.request('GET', base)).body.key;
      assert.match(current, /^whsec_/);
      assert.notEqual(current, SECRET_B);

      const noBody = await h.request('POST', `${base}/rotate`);
      assert.equal(noBody.status, 204, 'the body is optional');
      const beforeImmediate = (await h.request('GET', base)).body.key;
      assert.notEqual(beforeImmediate, current);

      const immediate = await h.request('POST', `${base}/rotate`, { body: { gracePeriodSeconds: 0 } });
      assert.equal(immediate.status, 204);
      const remaining = (await h.storage.endpoints.secrets(ep.id, Date.now())).map((k) => k.key);
      assert.ok(!remaining.includes(beforeImmediate), 'grace 0 drops the previous key at once');
      assert.deepEqual(remaining.slice(1), [current, SECRET_B, SECRET_A], 'earlier keys keep their own grace periods');
    });
  });

  describe('event types', () => {
    it('creates, reads, lists, updates, archives and unarchives', async () => {
      const created = await h.request('POST', '/api/v1/event-type', { body: { name: 'invoice.paid', description: 'An invoice was paid', schemas: { '1': { type: 'object' } }, groupName: 'billing' } });
      assert.equal(created.status, 201);
      assert.equal(created.body.name, 'invoice.paid');
      assert.equal(created.body.archived, false);
      assert.equal(created.body.deprecated, false);
      assert.deepEqual(created.body.schemas, { '1': { type: 'object' } });
      assert.equal(created.body.groupName, 'billing');
      assert.equal((await h.request('POST', '/api/v1/event-type', { body: { name: 'invoice.paid', description: 'again' } })).status, 409);

      assert.deepEqual((await h.request('GET', '/api/v1/event-type/invoice.paid')).body, created.body);
      await h.request('POST', '/api/v1/event-type', { body: { name: 'invoice.sent', description: 'sent' } });
      const list = await h.request('GET', '/api/v1/event-type?limit=250');
      const names = list.body.data.map((e: any) => e.name);
      assert.ok(names.includes('invoice.paid') && names.includes('invoice.sent'));
      assert.deepEqual(names, [...names].sort(), 'listed by name');
      assert.equal(list.body.data.find((e: any) => e.name === 'invoice.paid').schemas, undefined, 'schemas only with with_content');
      const withContent = await h.request('GET', '/api/v1/event-type?limit=250&with_content=true');
      assert.deepEqual(withContent.body.data.find((e: any) => e.name === 'invoice.paid').schemas, { '1': { type: 'object' } });

      const put = await h.request('PUT', '/api/v1/event-type/invoice.paid', { body: { description: 'Replaced', deprecated: true } });
      assert.equal(put.status, 200);
      assert.equal(put.body.description, 'Replaced');
      assert.equal(put.body.deprecated, true);
      assert.equal(put.body.schemas, null);
      const putNew = await h.request('PUT', '/api/v1/event-type/invoice.voided', { body: { description: 'Made by PUT' } });
      assert.equal(putNew.status, 201);

      const patch = await h.request('PATCH', '/api/v1/event-type/invoice.paid', { body: { groupName: null } });
      assert.equal(patch.status, 200);
      assert.equal(patch.body.description, 'Replaced');
      assert.equal(patch.body.groupName, null);

      assert.equal((await h.request('DELETE', '/api/v1/event-type/invoice.paid')).status, 204);
      assert.equal((await h.request('GET', '/api/v1/event-type/invoice.paid')).body.archived, true);
      const active = (await h.request('GET', '/api/v1/event-type?limit=250')).body.data.map((e: any) => e.name);
      assert.ok(!active.includes('invoice.paid'));
      const all = (await h.request('GET', '/api/v1/event-type?limit=250&include_archived=true')).body.data.map((e: any) => e.name);
      assert.ok(all.includes('invoice.paid'));

      const revived = await h.request('POST', '/api/v1/event-type', { body: { name: 'invoice.paid', description: 'Back' } });
      assert.equal(revived.status, 201, 'creating an archived event type unarchives it');
      assert.equal(revived.body.archived, false);
      assert.equal(revived.body.description, 'Back');
    });
  });

  describe('messages', () => {
    it('accepts a message (202), wakes the dispatcher only when it has deliveries, and reads it back by id and eventId', async () => {
      const app = await createApp({ name: 'Messages', uid: 'msg-app' });
      const wakes = h.wakes;
      const msg = await sendMessage('msg-app', { eventType: 'user.created', payload: { email: 'a@example.com', n: 1 }, eventId: 'evt-1', channels: ['eu'], tags: ['t1'] });
      assert.match(msg.id, /^msg_/);
      assert.equal(msg.eventType, 'user.created');
      assert.equal(msg.eventId, 'evt-1');
      assert.deepEqual(msg.payload, { email: 'a@example.com', n: 1 });
      assert.deepEqual(msg.channels, ['eu']);
      assert.deepEqual(msg.tags, ['t1']);
      assert.ok(!Number.isNaN(Date.parse(msg.timestamp)));
      assert.equal(h.wakes, wakes, 'no endpoint, no delivery: nothing to wake the dispatcher for');
      const ep = await h.request('POST', `/api/v1/app/${app.id}/endpoint`, { body: { url: 'https://example.com/hook' } });
      assert.equal(ep.status, 201);
      assert.equal((await sendMessage('msg-app', { eventType: 'user.created', payload: {} })).eventType, 'user.created');
      assert.equal(h.wakes, wakes + 1, 'a message with a delivery wakes the dispatcher');

      assert.deepEqual((await h.request('GET', `/api/v1/app/${app.id}/msg/${msg.id}`)).body, msg);
      assert.deepEqual((await h.request('GET', '/api/v1/app/msg-app/msg/evt-1')).body, msg);
      const bare = await h.request('GET', `/api/v1/app/${app.id}/msg/${msg.id}?with_content=false`);
      assert.deepEqual(bare.body.payload, {});

      const quiet = await h.request('POST', `/api/v1/app/${app.id}/msg?with_content=false`, { body: { eventType: 'user.created', payload: { big: true } } });
      assert.equal(quiet.status, 202);
      assert.deepEqual(quiet.body.payload, {});
      assert.deepEqual((await h.request('GET', `/api/v1/app/${app.id}/msg/${quiet.body.id}`)).body.payload, { big: true });
    });

    it('creates the application with the message when `application` is given', async () => {
      const res = await h.request('POST', '/api/v1/app/made-by-msg/msg', { body: { eventType: 'x.y', payload: {}, application: { name: 'Made by message', uid: 'made-by-msg' } } });
      assert.equal(res.status, 202, res.text);
      assert.equal((await h.request('GET', '/api/v1/app/made-by-msg')).body.name, 'Made by message');
    });

    it('lists newest first and filters by event types, channel and time', async () => {
      const app = await createApp({ name: 'Message list' });
      const a = await sendMessage(app.id, { eventType: 'a.one', payload: { i: 0 }, channels: ['Foo'] });
      const b = await sendMessage(app.id, { eventType: 'b.two', payload: { i: 1 }, channels: ['foo', 'bar'] });
      const c = await sendMessage(app.id, { eventType: 'c.three', payload: { i: 2 } });
      const base = `/api/v1/app/${app.id}/msg`;
      const ids = (res: any) => res.body.data.map((m: any) => m.id);

      assert.deepEqual(ids(await h.request('GET', base)), [c.id, b.id, a.id]);
      assert.deepEqual(ids(await h.request('GET', `${base}?event_types=a.one,c.three`)), [c.id, a.id]);
      assert.deepEqual(ids(await h.request('GET', `${base}?event_types=a.one&event_types=b.two`)), [b.id, a.id]);
      assert.deepEqual(ids(await h.request('GET', `${base}?channel=foo`)), [b.id], 'channels match case-sensitively');
      assert.deepEqual(ids(await h.request('GET', `${base}?channel=Foo`)), [a.id]);
      assert.deepEqual(ids(await h.request('GET', `${base}?channel=fo`)), [], 'a channel matches whole, not as a substring');

      const bTime = Date.parse(b.timestamp);
      const before = ids(await h.request('GET', `${base}?before=${encodeURIComponent(new Date(bTime).toISOString())}`));
      assert.ok(!before.includes(b.id) && !before.includes(c.id) && before.every((id: string) => id === a.id));
      const afterB = ids(await h.request('GET', `${base}?after=${encodeURIComponent(new Date(bTime).toISOString())}`));
      assert.ok(!afterB.includes(a.id) && !afterB.includes(b.id));
      assert.deepEqual(ids(await h.request('GET', `${base}?after=${encodeURIComponent(new Date(bTime - 1).toISOString())}&before=${encodeURIComponent(new Date(bTime + 1).toISOString())}`)), [b.id]);

      const pages = await allPages(`${base}?event_types=a.one,b.two,c.three`, 1);
      assert.deepEqual(pages.flatMap((p) => p.data.map((m: any) => m.id)), [c.id, b.id, a.id]);
      const channelPages = await allPages(`${base}?channel=foo`, 1);
      assert.deepEqual(channelPages.flatMap((p) => p.data.map((m: any) => m.id)), [b.id]);
    });
  });

  /** Plays the dispatcher's part through the real delivery store: every due delivery gets one successful attempt. */
  async function completeDueDeliveries(): Promise<number> {
    const claims = await h.storage.deliveries.claimDue(Date.now(), 60_000, 100, 100, []);
    await h.storage.deliveries.complete(
      claims.map((claim) => ({
        deliveryId: claim.deliveryId,
        leaseToken: claim.leaseToken,
        nextAttemptAt: null,
        health: null,
        attempt: {
          id: newId('atmpt'),
          msgId: claim.msgId,
          endpointId: claim.endpointId,
          appId: claim.appId,
          url: 'https://example.com/attempted',
          status: DeliveryStatus.Success,
          responseStatusCode: 200,
          response: 'ok',
          responseDurationMs: 12,
          triggerType: claim.triggerType,
          errorCode: null,
          createdAt: Date.now(),
        },
      })), { disableAfterMs: null },
    );
    return claims.length;
  }

  describe('attempts', () => {
    it('lists by endpoint and by message, gets one, and resends', async () => {
      const app = await createApp({ name: 'Attempts' });
      const ep = await createEndpoint(app.id, { url: 'https://example.com/a', uid: 'att-ep' });
      const other = await createEndpoint(app.id, { url: 'https://example.com/b' });
      const msg = await sendMessage(app.id, { eventType: 'attempt.test', payload: { ok: true }, eventId: 'att-evt' });
      const base = `/api/v1/app/${app.id}`;

      assert.deepEqual((await h.request('GET', `${base}/attempt/endpoint/${ep.id}`)).body.data, [], 'no attempt before delivery');
      assert.ok((await completeDueDeliveries()) >= 2);

      const byEndpoint = await h.request('GET', `${base}/attempt/endpoint/att-ep`);
      assert.equal(byEndpoint.status, 200);
      assert.equal(byEndpoint.body.data.length, 1);
      const attempt = byEndpoint.body.data[0];
      assert.match(attempt.id, /^atmpt_/);
      assert.equal(attempt.msgId, msg.id);
      assert.equal(attempt.endpointId, ep.id);
      assert.equal(attempt.status, 0);
      assert.equal(attempt.statusText, 'success');
      assert.equal(attempt.triggerType, 0);
      assert.equal(attempt.responseStatusCode, 200);
      assert.equal(attempt.response, 'ok');
      assert.equal(attempt.responseDurationMs, 12);
      assert.equal(attempt.url, 'https://example.com/attempted');

      const byMsg = await h.request('GET', `${base}/attempt/msg/att-evt`);
      assert.deepEqual(new Set(byMsg.body.data.map((a: any) => a.endpointId)), new Set([ep.id, other.id]));
      const filtered = await h.request('GET', `${base}/attempt/msg/${msg.id}?endpoint_id=${other.id}`);
      assert.deepEqual(filtered.body.data.map((a: any) => a.endpointId), [other.id]);
      assert.deepEqual((await h.request('GET', `${base}/attempt/msg/${msg.id}?status=2`)).body.data, []);

      const one = await h.request('GET', `${base}/msg/${msg.id}/attempt/${attempt.id}`);
      assert.deepEqual(one.body, attempt);

      const wakes = h.wakes;
      const resend = await h.request('POST', `${base}/msg/${msg.id}/endpoint/${ep.id}/resend`);
      assert.equal(resend.status, 202);
      assert.equal(h.wakes, wakes + 1);
      assert.equal(await completeDueDeliveries(), 1, 'the resend scheduled exactly one delivery');
      const again = await h.request('GET', `${base}/attempt/endpoint/${ep.id}`);
      assert.equal(again.body.data.length, 2);
      assert.equal(again.body.data[0].triggerType, TriggerType.Manual, 'newest first: the manual resend');
    });
  });

  describe('health, metrics and the API description', () => {
    it('answers health on both paths, metrics with a key, and serves the OpenAPI document and docs', async () => {
      for (const path of ['/health', '/api/v1/health']) {
        const res = await h.request('GET', path, { token: null });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, { status: 'ok' });
      }
      const metrics = await h.request('GET', '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(metrics.text, /test_metric 1/);

      const doc = await h.request('GET', '/api/v1/openapi.json', { token: null });
      assert.equal(doc.status, 200);
      assert.equal(doc.body.info.title, 'Hookrelay');
      const ops = Object.values(doc.body.paths as Record<string, Record<string, { operationId: string }>>).flatMap((p) => Object.values(p).map((o) => o.operationId));
      for (const id of ['v1.application.create', 'v1.endpoint.rotate-secret', 'v1.message.create', 'v1.message-attempt.resend', 'v1.event-type.list']) assert.ok(ops.includes(id), id);
      const docs = await h.request('GET', '/docs', { token: null });
      assert.equal(docs.status, 200);
      assert.match(docs.text, /swagger/i);
    });

    it('health is 503 `unavailable` when the database does not answer', async () => {
      const own = await startHarness({ engine });
      try {
        await own.disconnect();
        const res = await own.request('GET', '/health', { token: null });
        assert.equal(res.status, 503);
        assert.equal(res.body.code, 'unavailable');
        const v1 = await own.request('GET', '/api/v1/health', { token: null });
        assert.equal(v1.status, 503);
      } finally {
        await own.close();
      }
    });
  });
});
