import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiException, messageInRaw, StatusCodeClass, Svix, Webhook } from 'svix';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * Svix compatibility fixes, against the whole platform (API, storage, dispatcher) on 127.0.0.1,
 * delivering to real receivers there, through the unmodified `svix` SDK where it can express the
 * call and raw HTTP where it cannot:
 * 1. non-finite numbers ("1e309", "Infinity") are a 422, never a 500 or a stored value;
 * 2. endpoint secrets of up to 75 bytes, as Svix takes them;
 * 3. `transformationsParams` (the SDK's messageInRaw) is refused, not dropped;
 * 4. `eventTypes`, Svix's name for an endpoint's filterTypes;
 * 5. attempt filters (status_code_class, event_types, channel, tag, with_msg) and the message tag filter.
 */

/** `whsec_` + base64 of `bytes` random bytes. */
const secretOf = (bytes: number) => 'whsec_' + randomBytes(bytes).toString('base64');

/** A port on 127.0.0.1 nothing listens on: a delivery there gets no response (status code 0). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function assertValidation(response: { status: number; body: any }, loc: string[], what: string): void {
  assert.equal(response.status, 422, `${what}: ${JSON.stringify(response.body)}`);
  assert.equal(response.body.code, 'validation', what);
  assert.ok(Array.isArray(response.body.detail) && response.body.detail.length > 0, what);
  const [issue] = response.body.detail;
  assert.deepEqual(issue.loc, loc, what);
  assert.equal(typeof issue.msg, 'string', what);
  assert.equal(typeof issue.type, 'string', what);
}

function isValidationError(loc: string[]) {
  return (error: unknown) => {
    assert.ok(error instanceof ApiException, String(error));
    assert.equal(error.code, 422);
    const body = error.body as { code: string; detail: { loc: string[]; msg: string }[] };
    assert.equal(body.code, 'validation');
    assert.deepEqual(body.detail[0]!.loc, loc);
    return true;
  };
}

const NON_FINITE = ['1e309', '-1e309', 'Infinity', '-Infinity', '+Infinity', '1e400'];

for (const engine of TEST_ENGINES) describe(`Svix compatibility (${engine})`, () => {
  let platform: TestPlatform;
  let receiver: Receiver;
  let svix: Svix;

  before(async () => {
    receiver = await Receiver.start();
    // The payload's `reply` picks the receiver's status code. One attempt per delivery, no
    // retries: the attempts listed are exactly those of the first try.
    receiver.reply = (request) => {
      const reply = (JSON.parse(request.body) as { reply?: number }).reply;
      return { status: reply ?? 200, body: `status ${reply ?? 200}` };
    };
    platform = await startTestPlatform({ engine, retryScheduleMs: [0] });
    // No SDK retries: a 5xx must fail the test rather than be hidden by a retry.
    svix = new Svix(platform.token, { serverUrl: platform.server.url, numRetries: 0 });
  });
  after(async () => {
    await platform?.close();
    await receiver?.close();
  });

  /** Tables an API call may write (the dispatcher's own tables move on their own). */
  async function apiRows(): Promise<Record<string, unknown[]>> {
    const dump = await platform.database.dump();
    const rows: Record<string, unknown[]> = {};
    for (const table of ['applications', 'endpoints', 'endpoint_secrets', 'event_types', 'messages', 'idempotency_keys']) rows[table] = dump[table] ?? [];
    return rows;
  }

  describe('1. non-finite numbers', () => {
    let appId: string;
    let endpointId: string;
    let msgId: string;
    let attemptId: string;

    before(async () => {
      const app = await svix.application.create({ name: 'Finite', uid: 'finite-app' });
      appId = app.id;
      endpointId = (await svix.endpoint.create(appId, { url: receiver.url('/finite'), uid: 'finite-ep' })).id;
      await svix.eventType.create({ name: 'finite.event', description: 'x' });
      msgId = (await svix.message.create(appId, { eventType: 'finite.event', payload: { n: 1 } })).id;
      attemptId = await waitFor('the attempt', async () => (await svix.messageAttempt.listByMsg(appId, msgId)).data[0]?.id);
    });

    it('every integer query parameter of every GET route answers 422 validation for ±Infinity and 1e309', async () => {
      const doc = await platform.api('GET', '/api/v1/openapi.json');
      assert.equal(doc.status, 200);
      const pathValues: Record<string, string> = { app_id: appId, endpoint_id: endpointId, msg_id: msgId, attempt_id: attemptId, event_type_name: 'finite.event' };
      const tested = new Set<string>();
      for (const [template, operations] of Object.entries(doc.body.paths as Record<string, any>)) {
        const parameters: any[] = operations.get?.parameters ?? [];
        const numeric = parameters.filter((p) => p.in === 'query' && ['integer', 'number'].includes(p.schema?.type));
        if (numeric.length === 0) continue;
        const path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
          assert.ok(pathValues[name], `a value for {${name}} of ${template}`);
          return encodeURIComponent(pathValues[name]!);
        });
        for (const parameter of numeric) {
          for (const value of NON_FINITE) {
            const response = await platform.api('GET', `${path}?${parameter.name}=${encodeURIComponent(value)}`);
            assertValidation(response, ['query', parameter.name], `GET ${template}?${parameter.name}=${value}`);
          }
          tested.add(`${template} ${parameter.name}`);
        }
      }
      // Not vacuous: the list routes and their numeric filters were all found and tried.
      for (const expected of [
        '/api/v1/app limit',
        '/api/v1/app/{app_id}/endpoint limit',
        '/api/v1/event-type limit',
        '/api/v1/app/{app_id}/msg limit',
        '/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id} limit',
        '/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id} status',
        '/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id} status_code_class',
        '/api/v1/app/{app_id}/attempt/msg/{msg_id} limit',
        '/api/v1/app/{app_id}/attempt/msg/{msg_id} status',
        '/api/v1/app/{app_id}/attempt/msg/{msg_id} status_code_class',
      ]) {
        assert.ok(tested.has(expected), `tested ${expected} (tested: ${[...tested].join(', ')})`);
      }
    });

    it('the SDK gets a 422 ApiException for limit: Infinity', async () => {
      await assert.rejects(svix.application.list({ limit: Infinity }), isValidationError(['query', 'limit']));
      await assert.rejects(svix.messageAttempt.listByEndpoint(appId, endpointId, { limit: -Infinity }), isValidationError(['query', 'limit']));
    });

    it('finite values out of range are 422 too, and valid ones still work', async () => {
      assertValidation(await platform.api('GET', '/api/v1/app?limit=1e300'), ['query', 'limit'], 'limit=1e300');
      assertValidation(await platform.api('GET', `/api/v1/app/${appId}/msg?limit=-1e300`), ['query', 'limit'], 'limit=-1e300');
      assertValidation(await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msgId}?status=99`), ['query', 'status'], 'status=99');
      for (const path of ['/api/v1/app?limit=1', '/api/v1/app?limit=250', '/api/v1/app?limit=1e0', `/api/v1/app/${appId}/msg?limit=2`, `/api/v1/app/${appId}/attempt/endpoint/${endpointId}?limit=5&status=0`]) {
        const response = await platform.api('GET', path);
        assert.equal(response.status, 200, `${path}: ${JSON.stringify(response.body)}`);
      }
      assert.deepEqual((await svix.message.list(appId, { limit: 1 })).data.map((m) => m.id), [msgId]);
    });

    it('numbers in bodies: the string forms of ±Infinity are 422 naming the field, and nothing is written', async () => {
      const base = `/api/v1/app/${appId}`;
      const cases: { method: string; path: string; body: unknown; loc: string[] }[] = [
        { method: 'POST', path: '/api/v1/app', body: { name: 'inf', uid: 'inf-app', throttleRate: 'Infinity' }, loc: ['body', 'throttleRate'] },
        { method: 'POST', path: '/api/v1/app', body: { name: 'inf', rateLimit: '1e309' }, loc: ['body', 'rateLimit'] },
        { method: 'PUT', path: '/api/v1/app/inf-app', body: { name: 'inf', throttleRate: '-Infinity' }, loc: ['body', 'throttleRate'] },
        { method: 'PATCH', path: base, body: { throttleRate: 'Infinity' }, loc: ['body', 'throttleRate'] },
        { method: 'POST', path: `${base}/endpoint`, body: { url: receiver.url('/x'), version: '-Infinity' }, loc: ['body', 'version'] },
        { method: 'POST', path: `${base}/endpoint`, body: { url: receiver.url('/x'), throttleRate: '1e309' }, loc: ['body', 'throttleRate'] },
        { method: 'PUT', path: `${base}/endpoint/${endpointId}`, body: { url: receiver.url('/x'), rateLimit: 'Infinity' }, loc: ['body', 'rateLimit'] },
        { method: 'PATCH', path: `${base}/endpoint/${endpointId}`, body: { version: 'Infinity' }, loc: ['body', 'version'] },
        { method: 'POST', path: `${base}/endpoint/${endpointId}/secret/rotate`, body: { gracePeriodSeconds: 'Infinity' }, loc: ['body', 'gracePeriodSeconds'] },
        { method: 'POST', path: '/api/v1/app/new-inf-app/msg', body: { eventType: 'finite.event', payload: {}, application: { name: 'x', uid: 'new-inf-app', throttleRate: 'Infinity' } }, loc: ['body', 'application', 'throttleRate'] },
      ];
      const rowsBefore = await apiRows();
      for (const c of cases) assertValidation(await platform.api(c.method, c.path, c.body), c.loc, `${c.method} ${c.path} ${JSON.stringify(c.body)}`);
      assert.deepEqual(await apiRows(), rowsBefore, 'no refused request wrote anything');
      // The application list, endpoint reads and the key rotation still work.
      assert.ok((await svix.application.list({ limit: 250 })).data.some((a) => a.id === appId));
      assert.equal((await svix.endpoint.get(appId, endpointId)).id, endpointId);
      assert.equal((await platform.api('POST', `${base}/endpoint/${endpointId}/secret/rotate`, { gracePeriodSeconds: '60' })).status, 204, 'a numeric string is still coerced');
    });
  });

  describe('2. endpoint secrets of 24 to 75 bytes', () => {
    it('endpoint create and secret rotate take 75-byte secrets, with or without whsec_, and deliveries are signed with them', async () => {
      const app = await svix.application.create({ name: 'Secrets', uid: 'secrets-app' });
      const largest = secretOf(75);
      assert.equal(largest.length, 'whsec_'.length + 100, "Svix's pattern allows 100 base64 characters");
      const created = await svix.endpoint.create(app.id, { url: receiver.url('/secret'), uid: 'secret-ep', secret: largest });
      assert.equal((await svix.endpoint.getSecret(app.id, created.id)).key, largest);
      const unprefixed = secretOf(70);
      const second = await svix.endpoint.create(app.id, { url: receiver.url('/secret-2'), secret: unprefixed.slice('whsec_'.length), filterTypes: ['secret.none'] });
      assert.equal((await svix.endpoint.getSecret(app.id, second.id)).key, unprefixed, 'stored with its whsec_ prefix');

      const rotated = secretOf(75);
      await svix.endpoint.rotateSecret(app.id, 'secret-ep', { key: rotated });
      assert.equal((await svix.endpoint.getSecret(app.id, 'secret-ep')).key, rotated);
      await svix.endpoint.rotateSecret(app.id, 'secret-ep', { key: secretOf(64) });
      const current = secretOf(75);
      await svix.endpoint.rotateSecret(app.id, 'secret-ep', { key: current.slice('whsec_'.length) });
      assert.equal((await svix.endpoint.getSecret(app.id, 'secret-ep')).key, current);

      const payload = { signed: 'with 75 bytes' };
      const message = await svix.message.create(app.id, { eventType: 'secret.event', payload });
      const delivered = await waitFor('the signed webhook', () => receiver.requests.find((r) => r.headers['webhook-id'] === message.id));
      const headers = { 'svix-id': String(delivered.headers['webhook-id']), 'svix-timestamp': String(delivered.headers['webhook-timestamp']), 'svix-signature': String(delivered.headers['webhook-signature']) };
      assert.deepEqual(new Webhook(current).verify(delivered.body, headers), payload, 'the SDK verifies the signature of the 75-byte key');
    });

    it('refuses secrets under 24 or over 75 bytes with 422 naming the field', async () => {
      const app = await svix.application.create({ name: 'Bad secrets', uid: 'bad-secrets-app' });
      await assert.rejects(svix.endpoint.create(app.id, { url: receiver.url('/s'), secret: secretOf(76) }), isValidationError(['body', 'secret']));
      await assert.rejects(svix.endpoint.create(app.id, { url: receiver.url('/s'), secret: secretOf(23) }), isValidationError(['body', 'secret']));
      const endpoint = await svix.endpoint.create(app.id, { url: receiver.url('/s'), filterTypes: ['secret.none'] });
      const key = (await svix.endpoint.getSecret(app.id, endpoint.id)).key;
      await assert.rejects(svix.endpoint.rotateSecret(app.id, endpoint.id, { key: secretOf(76) }), isValidationError(['body', 'key']));
      await assert.rejects(svix.endpoint.rotateSecret(app.id, endpoint.id, { key: secretOf(23) }), isValidationError(['body', 'key']));
      assert.equal((await svix.endpoint.getSecret(app.id, endpoint.id)).key, key, 'the key is unchanged');
      assert.equal((await svix.endpoint.list(app.id)).data.length, 1, 'no endpoint was created by the refused requests');
    });
  });

  describe('3. transformationsParams (raw payloads)', () => {
    it("refuses the SDK's messageInRaw with 422 naming transformationsParams, and stores and sends nothing", async () => {
      const app = await svix.application.create({ name: 'Raw', uid: 'raw-app' });
      await svix.endpoint.create(app.id, { url: receiver.url('/raw') });
      const raw = JSON.stringify({ invoiceId: 'inv_123', amount: 42 });
      await assert.rejects(svix.message.create(app.id, messageInRaw('raw.event', raw)), (error: unknown) => {
        isValidationError(['body', 'transformationsParams'])(error);
        const [issue] = (error as ApiException<{ detail: { msg: string }[] }>).body.detail;
        assert.match(issue!.msg, /raw payload/i);
        return true;
      });
      await assert.rejects(svix.message.create(app.id, messageInRaw('raw.event', raw, 'text/plain')), isValidationError(['body', 'transformationsParams']));
      assertValidation(await platform.api('POST', `/api/v1/app/${app.id}/msg`, { eventType: 'raw.event', payload: {}, transformationsParams: {} }), ['body', 'transformationsParams'], 'an empty transformationsParams');
      assert.deepEqual((await svix.message.list(app.id)).data, [], 'no message was stored');
      assert.equal((await svix.endpoint.getStats(app.id, (await svix.endpoint.list(app.id)).data[0]!.id)).pending, 0, 'no delivery was created');

      // Absent or null: an ordinary message.
      const plain = await platform.api('POST', `/api/v1/app/${app.id}/msg`, { eventType: 'raw.event', payload: { ok: true }, transformationsParams: null });
      assert.equal(plain.status, 202, JSON.stringify(plain.body));
      const delivered = await waitFor('the plain message', () => receiver.requests.find((r) => r.headers['webhook-id'] === plain.body.id));
      assert.deepEqual(JSON.parse(delivered.body), { ok: true });
    });
  });

  describe('4. eventTypes, the other name of filterTypes', () => {
    const endpointPath = (appId: string, ep = '') => `/api/v1/app/${appId}/endpoint${ep ? `/${ep}` : ''}`;

    it('create takes eventTypes, outputs both names, and filters deliveries by it', async () => {
      const app = await svix.application.create({ name: 'Event types', uid: 'event-types-app' });
      const created = await platform.api('POST', endpointPath(app.id), { url: receiver.url('/filtered'), uid: 'filtered', eventTypes: ['compat.wanted'] });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.deepEqual(created.body.eventTypes, ['compat.wanted']);
      assert.deepEqual(created.body.filterTypes, ['compat.wanted']);
      const read = await platform.api('GET', endpointPath(app.id, 'filtered'));
      assert.deepEqual([read.body.eventTypes, read.body.filterTypes], [['compat.wanted'], ['compat.wanted']]);
      const listed = await platform.api('GET', endpointPath(app.id));
      assert.deepEqual(listed.body.data[0].eventTypes, ['compat.wanted']);
      // The SDK (which sends filterTypes) reads the same filter.
      assert.deepEqual((await svix.endpoint.get(app.id, 'filtered')).filterTypes, ['compat.wanted']);

      const unwanted = await svix.message.create(app.id, { eventType: 'compat.unwanted', payload: {} });
      const wanted = await svix.message.create(app.id, { eventType: 'compat.wanted', payload: {} });
      await waitFor('the wanted message', () => receiver.requests.find((r) => r.headers['webhook-id'] === wanted.id));
      const stats = await waitFor('no delivery left to make', async () => {
        const now = await svix.endpoint.getStats(app.id, 'filtered');
        return now.pending + now.sending === 0 ? now : null;
      });
      assert.deepEqual({ success: stats.success, fail: stats.fail, pending: stats.pending, sending: stats.sending }, { success: 1, fail: 0, pending: 0, sending: 0 }, 'the unwanted message got no delivery');
      assert.deepEqual((await svix.messageAttempt.listByMsg(app.id, unwanted.id)).data, []);

      // Without a filter of either name: every event type.
      const all = await platform.api('POST', endpointPath(app.id), { url: receiver.url('/all'), eventTypes: null });
      assert.equal(all.status, 201);
      assert.equal(all.body.eventTypes, null);
      assert.equal(all.body.filterTypes, null);
      // SDK create with filterTypes: eventTypes comes back too.
      const viaSdk = await platform.api('GET', endpointPath(app.id, (await svix.endpoint.create(app.id, { url: receiver.url('/sdk'), filterTypes: ['compat.sdk'] })).id));
      assert.deepEqual([viaSdk.body.eventTypes, viaSdk.body.filterTypes], [['compat.sdk'], ['compat.sdk']]);
    });

    it('both names may be sent only with the same value; different values are 422 and write nothing', async () => {
      const app = await svix.application.create({ name: 'Both names', uid: 'both-names-app' });
      const same = await platform.api('POST', endpointPath(app.id), { url: receiver.url('/both'), uid: 'both', filterTypes: ['a.one', 'b.two'], eventTypes: ['b.two', 'a.one', 'a.one'] });
      assert.equal(same.status, 201, JSON.stringify(same.body));
      assert.deepEqual(same.body.filterTypes, ['a.one', 'b.two']);
      assert.deepEqual(same.body.eventTypes, ['a.one', 'b.two']);

      const rowsBefore = await apiRows();
      for (const [method, path, body] of [
        ['POST', endpointPath(app.id), { url: receiver.url('/x'), filterTypes: ['a.one'], eventTypes: ['b.two'] }],
        ['POST', endpointPath(app.id), { url: receiver.url('/x'), filterTypes: null, eventTypes: ['b.two'] }],
        ['PUT', endpointPath(app.id, 'both'), { url: receiver.url('/x'), filterTypes: ['a.one'], eventTypes: null }],
        ['PATCH', endpointPath(app.id, 'both'), { filterTypes: ['a.one'], eventTypes: ['a.one', 'c.three'] }],
      ] as const) {
        assertValidation(await platform.api(method, path, body), ['body', 'eventTypes'], `${method} ${JSON.stringify(body)}`);
      }
      assert.deepEqual(await apiRows(), rowsBefore, 'no refused request wrote anything');
    });

    it('PUT replaces the filter from eventTypes; PATCH keeps it when absent and clears it with null', async () => {
      const app = await svix.application.create({ name: 'Updates', uid: 'updates-app' });
      const path = endpointPath(app.id, 'upd');
      assert.equal((await platform.api('POST', endpointPath(app.id), { url: receiver.url('/u'), uid: 'upd', filterTypes: ['a.one'] })).status, 201);

      const put = await platform.api('PUT', path, { url: receiver.url('/u'), uid: 'upd', eventTypes: ['b.two'] });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual([put.body.eventTypes, put.body.filterTypes], [['b.two'], ['b.two']]);
      const putWithout = await platform.api('PUT', path, { url: receiver.url('/u'), uid: 'upd' });
      assert.deepEqual([putWithout.body.eventTypes, putWithout.body.filterTypes], [null, null], 'PUT without either name: all event types');

      const patched = await platform.api('PATCH', path, { eventTypes: ['c.three', 'c.three'] });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.deepEqual([patched.body.eventTypes, patched.body.filterTypes], [['c.three'], ['c.three']]);
      const untouched = await platform.api('PATCH', path, { description: 'only the description' });
      assert.deepEqual([untouched.body.eventTypes, untouched.body.filterTypes], [['c.three'], ['c.three']], 'absent: unchanged');
      const viaSdk = await svix.endpoint.patch(app.id, 'upd', { description: 'SDK patch' });
      assert.deepEqual(viaSdk.filterTypes, ['c.three'], 'an SDK PATCH without filterTypes keeps the filter');
      const cleared = await platform.api('PATCH', path, { eventTypes: null });
      assert.deepEqual([cleared.body.eventTypes, cleared.body.filterTypes], [null, null], 'null: cleared');
      const byOtherName = await platform.api('PATCH', path, { filterTypes: ['d.four'] });
      assert.deepEqual([byOtherName.body.eventTypes, byOtherName.body.filterTypes], [['d.four'], ['d.four']]);
      assertValidation(await platform.api('PATCH', path, { eventTypes: ['not a name!'] }), ['body', 'eventTypes', '0'], 'a malformed name');
    });
  });

  describe('5. list filters', () => {
    let appId: string;
    let mainId: string;
    let deadId: string;
    /** What each message was sent with; `code` is the main endpoint's answer. */
    const sent: { id: string; eventType: string; channels?: string[]; tags?: string[]; code: number }[] = [];
    /** Every attempt to the main endpoint, newest first, as the unfiltered list has them. */
    let mainAttempts: { id: string; msgId: string; responseStatusCode: number }[] = [];

    const msgOf = (attempt: { msgId: string }) => sent.find((m) => m.id === attempt.msgId)!;
    const base = () => `/api/v1/app/${appId}`;

    /** Walks a list with limit 1 through `iterator`, then back through `prevIterator`; returns the ids in list order. */
    async function walk(path: string): Promise<string[]> {
      const sep = path.includes('?') ? '&' : '?';
      const pages: any[] = [];
      let iterator: string | null = null;
      for (let guard = 0; guard < 50; guard++) {
        const response: { status: number; body: any } = await platform.api('GET', `${path}${sep}limit=1${iterator ? `&iterator=${iterator}` : ''}`);
        assert.equal(response.status, 200, `${path}: ${JSON.stringify(response.body)}`);
        pages.push(response.body);
        if (response.body.done) break;
        iterator = response.body.iterator;
      }
      assert.ok(pages[pages.length - 1].done, `${path}: the walk ended`);
      const ids = pages.flatMap((page) => page.data.map((item: any) => item.id));
      // One step back from the last page lands on the one before it.
      if (ids.length >= 2) {
        const back = await platform.api('GET', `${path}${sep}limit=1&iterator=${pages[pages.length - 1].prevIterator}`);
        assert.deepEqual(back.body.data.map((item: any) => item.id), [ids[ids.length - 2]], `${path}: prevIterator`);
      }
      return ids;
    }

    /** The filtered list, one page of 250 and walked one by one, must be exactly `expected`. */
    async function assertList(path: string, expected: string[], what: string): Promise<void> {
      const sep = path.includes('?') ? '&' : '?';
      const whole = await platform.api('GET', `${path}${sep}limit=250`);
      assert.equal(whole.status, 200, `${what}: ${JSON.stringify(whole.body)}`);
      assert.deepEqual(whole.body.data.map((item: any) => item.id), expected, what);
      assert.equal(whole.body.done, true, what);
      assert.deepEqual(await walk(path), expected, `${what}, page by page`);
    }

    before(async () => {
      const app = await svix.application.create({ name: 'Filters', uid: 'filters-app' });
      appId = app.id;
      mainId = (await svix.endpoint.create(appId, { url: receiver.url('/main') })).id;
      // Only compat.none goes to the dead endpoint: its attempts get no response (code 0).
      const dead = await platform.api('POST', `${base()}/endpoint`, { url: `http://127.0.0.1:${await closedPort()}/dead`, eventTypes: ['compat.none'] });
      assert.equal(dead.status, 201);
      deadId = dead.body.id;

      const messages: Omit<(typeof sent)[number], 'id'>[] = [
        { eventType: 'compat.a', channels: ['ch1'], tags: ['t1'], code: 200 },
        { eventType: 'compat.b', channels: ['ch2'], tags: ['t2', 't1'], code: 404 },
        { eventType: 'compat.a', channels: ['ch2', 'ch3'], code: 503 },
        { eventType: 'compat.c', tags: ['t3', 'team/a#1', 'back\\slash'], code: 302 },
        { eventType: 'compat.none', code: 200 },
        { eventType: 'compat.b', channels: ['CH2'], tags: ['T1'], code: 201 },
        { eventType: 'compat.c', channels: ['ch1', 'ch2'], tags: ['t1', 't3'], code: 500 },
      ];
      for (const m of messages) {
        const created = await svix.message.create(appId, { eventType: m.eventType, payload: { reply: m.code, eventType: m.eventType }, ...(m.channels ? { channels: m.channels } : {}), ...(m.tags ? { tags: m.tags } : {}) });
        sent.push({ id: created.id, ...m });
      }
      mainAttempts = await waitFor('an attempt of every message to the main endpoint', async () => {
        const page = await platform.api('GET', `${base()}/attempt/endpoint/${mainId}?limit=250`);
        return page.body.data.length === messages.length ? page.body.data : null;
      });
      await waitFor('the attempt to the dead endpoint', async () => (await platform.api('GET', `${base()}/attempt/endpoint/${deadId}`)).body.data.length === 1);
      // The receiver's answers are recorded as sent (no retries).
      for (const attempt of mainAttempts) assert.equal(attempt.responseStatusCode, msgOf(attempt).code);
    });

    const expectMain = (keep: (m: (typeof sent)[number], attempt: { responseStatusCode: number }) => boolean) => mainAttempts.filter((a) => keep(msgOf(a), a)).map((a) => a.id);

    it('status_code_class narrows attempts by response class (SDK statusCodeClass), 0 being no response', async () => {
      const byClass = async (endpointId: string, statusCodeClass: StatusCodeClass) => (await svix.messageAttempt.listByEndpoint(appId, endpointId, { statusCodeClass, limit: 250 })).data.map((a) => a.id);
      assert.deepEqual(await byClass(mainId, StatusCodeClass.Code2xx), expectMain((m) => m.code >= 200 && m.code < 300));
      assert.equal((await byClass(mainId, StatusCodeClass.Code2xx)).length, 3);
      assert.deepEqual(await byClass(mainId, StatusCodeClass.Code3xx), expectMain((m) => m.code === 302));
      assert.deepEqual(await byClass(mainId, StatusCodeClass.Code4xx), expectMain((m) => m.code === 404));
      assert.deepEqual(await byClass(mainId, StatusCodeClass.Code5xx), expectMain((m) => m.code >= 500));
      assert.equal((await byClass(mainId, StatusCodeClass.Code5xx)).length, 2);
      assert.deepEqual(await byClass(mainId, StatusCodeClass.Code1xx), []);
      assert.deepEqual(await byClass(mainId, StatusCodeClass.CodeNone), []);
      const dead = await svix.messageAttempt.listByEndpoint(appId, deadId, { statusCodeClass: StatusCodeClass.CodeNone });
      assert.equal(dead.data.length, 1);
      assert.equal(dead.data[0]!.responseStatusCode, 0);
      assert.deepEqual((await svix.messageAttempt.listByEndpoint(appId, deadId, { statusCodeClass: StatusCodeClass.Code2xx })).data, []);

      // By message: compat.none went to both endpoints.
      const none = sent.find((m) => m.eventType === 'compat.none')!;
      const byMsg = async (statusCodeClass: StatusCodeClass) => (await svix.messageAttempt.listByMsg(appId, none.id, { statusCodeClass })).data.map((a) => a.endpointId);
      assert.deepEqual(await byMsg(StatusCodeClass.CodeNone), [deadId]);
      assert.deepEqual(await byMsg(StatusCodeClass.Code2xx), [mainId]);
      assert.deepEqual(await byMsg(StatusCodeClass.Code4xx), []);

      await assertList(`${base()}/attempt/endpoint/${mainId}?status_code_class=500`, expectMain((m) => m.code >= 500), 'class 500 by endpoint');
      await assertList(`${base()}/attempt/endpoint/${mainId}?status_code_class=200`, expectMain((m) => m.code >= 200 && m.code < 300), 'class 200 by endpoint');
    });

    it('status_code_class values other than Svix StatusCodeClass are 422', async () => {
      for (const value of ['201', '-1', '600', '1', '99', 'abc', '2xx', '1e309', '']) {
        for (const path of [`${base()}/attempt/endpoint/${mainId}`, `${base()}/attempt/msg/${sent[0]!.id}`]) {
          assertValidation(await platform.api('GET', `${path}?status_code_class=${encodeURIComponent(value)}`), ['query', 'status_code_class'], `status_code_class=${value}`);
        }
      }
      await assert.rejects(svix.messageAttempt.listByEndpoint(appId, mainId, { statusCodeClass: 201 as StatusCodeClass }), isValidationError(['query', 'status_code_class']));
    });

    it("event_types, channel and tag narrow attempts by the attempt's message", async () => {
      const sdkIds = async (options: Parameters<Svix['messageAttempt']['listByEndpoint']>[2]) => (await svix.messageAttempt.listByEndpoint(appId, mainId, { limit: 250, ...options })).data.map((a) => a.id);
      assert.deepEqual(await sdkIds({ eventTypes: ['compat.a'] }), expectMain((m) => m.eventType === 'compat.a'));
      assert.deepEqual(await sdkIds({ eventTypes: ['compat.a', 'compat.c'] }), expectMain((m) => ['compat.a', 'compat.c'].includes(m.eventType)));
      assert.deepEqual(await sdkIds({ eventTypes: ['compat.unknown'] }), []);
      assert.deepEqual(await sdkIds({ channel: 'ch2' }), expectMain((m) => m.channels?.includes('ch2') ?? false));
      assert.equal((await sdkIds({ channel: 'ch2' })).length, 3, 'channel matches exactly: CH2 is another channel');
      assert.deepEqual(await sdkIds({ channel: 'CH2' }), expectMain((m) => m.channels?.includes('CH2') ?? false));
      assert.deepEqual(await sdkIds({ channel: 'ch' }), [], 'no partial match');
      assert.deepEqual(await sdkIds({ tag: 't1' }), expectMain((m) => m.tags?.includes('t1') ?? false));
      assert.equal((await sdkIds({ tag: 't1' })).length, 3);
      assert.deepEqual(await sdkIds({ tag: 'team/a#1' }), expectMain((m) => m.tags?.includes('team/a#1') ?? false));
      assert.deepEqual(await sdkIds({ tag: 'back\\slash' }), expectMain((m) => m.tags?.includes('back\\slash') ?? false));
      assert.deepEqual(await sdkIds({ tag: 't' }), []);
      // Combined with each other and with the response class.
      assert.deepEqual(await sdkIds({ eventTypes: ['compat.a'], channel: 'ch2' }), expectMain((m) => m.eventType === 'compat.a' && (m.channels?.includes('ch2') ?? false)));
      assert.deepEqual(await sdkIds({ statusCodeClass: StatusCodeClass.Code2xx, tag: 't1' }), expectMain((m) => m.code === 200 && (m.tags?.includes('t1') ?? false)));
      assert.deepEqual(await sdkIds({ eventTypes: ['compat.c'], tag: 't3', channel: 'ch1' }), expectMain((m) => m.eventType === 'compat.c' && (m.tags?.includes('t3') ?? false) && (m.channels?.includes('ch1') ?? false)));

      // Raw: the parameter repeated, and page by page.
      const path = `${base()}/attempt/endpoint/${mainId}`;
      await assertList(`${path}?event_types=compat.b&event_types=compat.c`, expectMain((m) => ['compat.b', 'compat.c'].includes(m.eventType)), 'event_types repeated');
      await assertList(`${path}?channel=ch2`, expectMain((m) => m.channels?.includes('ch2') ?? false), 'channel');
      await assertList(`${path}?tag=t1`, expectMain((m) => m.tags?.includes('t1') ?? false), 'tag');
      await assertList(`${path}?tag=t1&order=ascending`, expectMain((m) => m.tags?.includes('t1') ?? false).reverse(), 'tag, ascending');

      // By message.
      const first = sent[1]!; // compat.b, ch2, tags t2 and t1
      const byMsg = async (query: string) => (await platform.api('GET', `${base()}/attempt/msg/${first.id}?${query}`)).body.data.map((a: any) => a.msgId);
      assert.deepEqual(await byMsg('event_types=compat.b'), [first.id]);
      assert.deepEqual(await byMsg('event_types=compat.a'), []);
      assert.deepEqual(await byMsg('channel=ch2'), [first.id]);
      assert.deepEqual(await byMsg('channel=ch1'), []);
      assert.deepEqual(await byMsg('tag=t2'), [first.id]);
      assert.deepEqual(await byMsg('tag=t3'), []);
      assert.deepEqual((await svix.messageAttempt.listByMsg(appId, first.id, { eventTypes: ['compat.b'], channel: 'ch2', tag: 't1' })).data.map((a) => a.msgId), [first.id]);

      // Malformed values are 422.
      assertValidation(await platform.api('GET', `${path}?event_types=${encodeURIComponent('not a name')}`), ['query', 'event_types', '0'], 'a malformed event type');
      assertValidation(await platform.api('GET', `${path}?channel=${encodeURIComponent('a b')}`), ['query', 'channel'], 'a malformed channel');
      assertValidation(await platform.api('GET', `${path}?tag=${encodeURIComponent('a b')}`), ['query', 'tag'], 'a malformed tag');
    });

    it('message lists narrow by tag (SDK tag), page by page', async () => {
      const sentIds = new Set(sent.map((m) => m.id));
      const all = (await svix.message.list(appId, { limit: 250 })).data.map((m) => m.id).filter((id) => sentIds.has(id));
      const expected = (tag: string) => all.filter((id) => sent.find((m) => m.id === id)!.tags?.includes(tag));
      assert.deepEqual((await svix.message.list(appId, { tag: 't1', limit: 250 })).data.map((m) => m.id), expected('t1'));
      assert.equal(expected('t1').length, 3);
      assert.deepEqual((await svix.message.list(appId, { tag: 't3' })).data.map((m) => m.id), expected('t3'));
      assert.deepEqual((await svix.message.list(appId, { tag: 'T1' })).data.map((m) => m.id), expected('T1'));
      assert.deepEqual((await svix.message.list(appId, { tag: 'team/a#1' })).data.map((m) => m.id), expected('team/a#1'));
      assert.deepEqual((await svix.message.list(appId, { tag: 'nope' })).data, []);
      assert.deepEqual((await svix.message.list(appId, { tag: 't1', channel: 'ch1' })).data.map((m) => m.id), all.filter((id) => { const m = sent.find((s) => s.id === id)!; return (m.tags?.includes('t1') ?? false) && (m.channels?.includes('ch1') ?? false); }));
      assert.deepEqual((await svix.message.list(appId, { tag: 't1', eventTypes: ['compat.b'] })).data.map((m) => m.id), [sent[1]!.id]);
      await assertList(`${base()}/msg?tag=t1`, expected('t1'), 'messages by tag');
      await assertList(`${base()}/msg?tag=t1&order=ascending`, expected('t1').reverse(), 'messages by tag, ascending');
      assertValidation(await platform.api('GET', `${base()}/msg?tag=${encodeURIComponent('no spaces')}`), ['query', 'tag'], 'a malformed tag');
    });

    it("with_msg adds each attempt's message (SDK withMsg), whose payload follows with_content", async () => {
      const plain = await svix.messageAttempt.listByEndpoint(appId, mainId, { limit: 250 });
      assert.ok(plain.data.every((a) => a.msg === undefined), 'no msg unless asked');
      const withMsg = await svix.messageAttempt.listByEndpoint(appId, mainId, { limit: 250, withMsg: true });
      assert.deepEqual(withMsg.data.map((a) => a.id), mainAttempts.map((a) => a.id));
      for (const attempt of withMsg.data) {
        const m = msgOf(attempt);
        assert.equal(attempt.msg?.id, attempt.msgId);
        assert.equal(attempt.msg?.eventType, m.eventType);
        assert.deepEqual(attempt.msg?.payload, { reply: m.code, eventType: m.eventType });
        assert.deepEqual(attempt.msg?.tags ?? null, m.tags ?? null);
        assert.ok(attempt.msg?.timestamp instanceof Date);
      }
      const withoutContent = await svix.messageAttempt.listByEndpoint(appId, mainId, { withMsg: true, withContent: false, statusCodeClass: StatusCodeClass.Code4xx });
      assert.equal(withoutContent.data.length, 1);
      assert.deepEqual(withoutContent.data[0]!.msg?.payload, {});
      assert.equal(withoutContent.data[0]!.response, 'status 404', "the attempt's response is still there");

      const byMsg = await platform.api('GET', `${base()}/attempt/msg/${sent[0]!.id}?with_msg=true`);
      assert.equal(byMsg.body.data.length, 1);
      assert.equal(byMsg.body.data[0].msg.id, sent[0]!.id);
      assert.deepEqual(byMsg.body.data[0].msg.payload, { reply: 200, eventType: 'compat.a' });
      assert.equal((await platform.api('GET', `${base()}/attempt/msg/${sent[0]!.id}`)).body.data[0].msg, undefined);
      assertValidation(await platform.api('GET', `${base()}/attempt/msg/${sent[0]!.id}?with_msg=maybe`), ['query', 'with_msg'], 'with_msg=maybe');
    });
  });
});
