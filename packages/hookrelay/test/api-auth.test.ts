import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { registeredRoutes } from '../src/api/build-app.js';
import { generateApiKey, hashApiKey, isPublicRoute } from '../src/api/plugins/authenticate.js';
import { ADMIN_KEY, startHarness, type Harness } from './helpers/api-harness.js';
import { TEST_ENGINES } from './helpers/test-database.js';

/** The routes that answer without a key, on purpose. Anything else public is a bug. */
const EXPECTED_PUBLIC = ['/health', '/api/v1/health', '/health/ready', '/api/v1/health/ready', '/api/v1/openapi.json'];

for (const engine of TEST_ENGINES) describe(`authentication (${engine})`, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ engine });
  });
  after(async () => {
    await h.close();
  });

  /** A concrete path for a route pattern: every parameter (and wildcard) filled with a harmless value. */
  function concretePath(url: string): string {
    return url
      .split('/')
      .map((part) => (part.startsWith(':') ? 'x' : part === '*' ? 'x' : part))
      .join('/');
  }

  describe('authentication', () => {
    it('every non-public route answers 401 without a token and with a wrong one', async () => {
      const routes = registeredRoutes(h.app);
      assert.ok(routes.length >= 40, `the route table is populated (${routes.length} routes)`);
      const protectedRoutes = routes.filter((r) => !isPublicRoute(r.url));
      assert.ok(protectedRoutes.some((r) => r.url === '/api/v1/app/:app_id/msg' && r.method === 'POST'));
      assert.ok(protectedRoutes.some((r) => r.url === '/metrics'), '/metrics needs a key');

      const failures: string[] = [];
      for (const route of protectedRoutes) {
        const path = concretePath(route.url);
        for (const token of [null, 'wrong-token', `${ADMIN_KEY}x`]) {
          const res = await h.request(route.method, path, { token, ...(route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH' ? { body: {} } : {}) });
          const ok = res.status === 401 && (route.method === 'HEAD' || res.body?.code === 'authentication_failed') && res.headers.get('www-authenticate') === 'Bearer';
          if (!ok) failures.push(`${route.method} ${path} with ${token === null ? 'no token' : 'a wrong token'}: ${res.status} ${res.text.slice(0, 200)}`);
        }
      }
      assert.deepEqual(failures, []);
    });

    it('only the documented routes are public, and they answer without a token', async () => {
      const publicRoutes = registeredRoutes(h.app).filter((r) => isPublicRoute(r.url));
      const nonDocs = [...new Set(publicRoutes.map((r) => r.url).filter((u) => u !== '/docs' && !u.startsWith('/docs/')))].sort();
      assert.deepEqual(nonDocs, [...EXPECTED_PUBLIC].sort());
      for (const url of [...EXPECTED_PUBLIC, '/docs', '/docs/json']) {
        const res = await h.request('GET', url, { token: null });
        assert.equal(res.status, 200, `${url}: ${res.status}`);
      }
    });

    it('unknown paths need a key too (they reveal nothing without one)', async () => {
      assert.equal((await h.request('GET', '/api/v1/unknown', { token: null })).status, 401);
      assert.equal((await h.request('GET', '/api/v1/unknown')).status, 404);
    });

    it('accepts the configured admin key and keys stored (hashed) in the database', async () => {
      const admin = await h.request('GET', '/api/v1/app');
      assert.equal(admin.status, 200, 'config.apiKey');
      assert.equal(admin.headers.get('www-authenticate'), null, 'only a 401 names the scheme');
      // The stored form is plain sha256 hex, so keys made by other tools (or by hand) can be stored.
      assert.equal(hashApiKey('hr_example'), createHash('sha256').update('hr_example').digest('hex'));
      const key = generateApiKey();
      const unknown = await h.request('GET', '/api/v1/app', { token: key });
      assert.equal(unknown.status, 401, 'not yet stored');
      await h.storage.apiKeys.create('test key', hashApiKey(key));
      const stored = await h.request('GET', '/api/v1/app', { token: key });
      assert.equal(stored.status, 200, 'a stored key works');
      const cached = await h.request('GET', '/api/v1/app', { token: key });
      assert.equal(cached.status, 200, 'and keeps working once cached');
    });

    it('reads only the Bearer scheme', async () => {
      const headers = [`Basic ${Buffer.from(`user:${ADMIN_KEY}`).toString('base64')}`, ADMIN_KEY, `Bearer`, `Bearer ${ADMIN_KEY} extra`];
      for (const authorization of headers) {
        const res = await h.request('GET', '/api/v1/app', { token: null, headers: { authorization } });
        assert.equal(res.status, 401, authorization);
      }
      assert.equal((await h.request('GET', '/api/v1/app', { token: null, headers: { authorization: `bearer ${ADMIN_KEY}` } })).status, 200, 'the scheme is case-insensitive');
    });

    it('generates distinct keys and hashes them as sha256 hex', () => {
      const a = generateApiKey();
      const b = generateApiKey();
      assert.match(a, /^hr_[A-Za-z0-9_-]{32}$/);
      assert.notEqual(a, b);
      assert.equal(hashApiKey('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    });
  });
});
