import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiException, Svix, Webhook } from 'svix';
import { Receiver } from './helpers/receiver.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

/**
 * Svix's official SDK, unmodified, against the whole platform (API, storage, dispatcher) on
 * 127.0.0.1, delivering to a real receiver there. If this passes, an application written for Svix
 * works by changing only its server URL.
 */
for (const engine of TEST_ENGINES) describe(`the Svix SDK (${engine})`, () => {
  let platform: TestPlatform;
  let receiver: Receiver;
  let svix: Svix;

  before(async () => {
    receiver = await Receiver.start();
    platform = await startTestPlatform({ engine });
    // No SDK retries: a 5xx must fail the test rather than be hidden by a retry.
    svix = new Svix(platform.token, { serverUrl: platform.server.url, numRetries: 0 });
  });
  after(async () => {
    await platform?.close();
    await receiver?.close();
  });

  describe('the Svix SDK', () => {
    it('checks health', async () => {
      await svix.health.get();
    });

    it('creates and reads applications, with getOrCreate and pagination', async () => {
      const app = await svix.application.create({ name: 'SDK app', uid: 'sdk-app', metadata: { plan: 'pro' } });
      assert.match(app.id, /^app_/);
      assert.ok(app.createdAt instanceof Date && !Number.isNaN(app.createdAt.getTime()));
      assert.deepEqual(app.metadata, { plan: 'pro' });
      assert.equal((await svix.application.get('sdk-app')).id, app.id);
      assert.equal((await svix.application.getOrCreate({ name: 'ignored', uid: 'sdk-app' })).id, app.id);
      const patched = await svix.application.patch(app.id, { name: 'SDK app v2' });
      assert.equal(patched.name, 'SDK app v2');

      for (let i = 0; i < 3; i++) await svix.application.create({ name: `SDK page ${i}` });
      const seen: string[] = [];
      let iterator: string | null = null;
      for (;;) {
        const page = await svix.application.list({ limit: 2, ...(iterator ? { iterator } : {}) });
        seen.push(...page.data.map((a) => a.id));
        if (page.done) break;
        iterator = page.iterator;
      }
      assert.equal(new Set(seen).size, seen.length, 'no application twice');
      assert.ok(seen.includes(app.id));
      assert.ok(seen.length >= 4);
    });

    it('maps errors to ApiException with Svix error bodies', async () => {
      await assert.rejects(svix.application.get('no-such-app'), (error: unknown) => {
        assert.ok(error instanceof ApiException);
        assert.equal(error.code, 404);
        assert.equal((error.body as { code: string }).code, 'not_found');
        return true;
      });
      await assert.rejects(svix.endpoint.create('sdk-app', { url: 'not a url' }), (error: unknown) => {
        assert.ok(error instanceof ApiException);
        assert.equal(error.code, 422);
        const detail = (error.body as { detail: { loc: string[] }[] }).detail;
        assert.deepEqual(detail[0]!.loc, ['body', 'url']);
        return true;
      });
    });

    it('manages event types', async () => {
      const created = await svix.eventType.create({ name: 'sdk.user.created', description: 'A user was created', schemas: { '1': { type: 'object' } } });
      assert.equal(created.name, 'sdk.user.created');
      assert.equal(created.deprecated, false);
      await svix.eventType.create({ name: 'sdk.user.deleted', description: 'A user was deleted' });
      const updated = await svix.eventType.update('sdk.user.deleted', { description: 'Gone' });
      assert.equal(updated.description, 'Gone');
      const list = await svix.eventType.list({ limit: 250 });
      assert.ok(list.data.some((e) => e.name === 'sdk.user.created'));
      await svix.eventType.delete('sdk.user.deleted');
      assert.equal((await svix.eventType.get('sdk.user.deleted')).archived, true);
      const active = await svix.eventType.list({ limit: 250 });
      assert.ok(!active.data.some((e) => e.name === 'sdk.user.deleted'));
    });

    it('sends a message to an endpoint and reads the delivery attempts back', async () => {
      const endpoint = await svix.endpoint.create('sdk-app', { url: receiver.url('/sdk'), uid: 'sdk-ep', filterTypes: ['sdk.user.created'], description: 'SDK receiver' });
      assert.match(endpoint.id, /^ep_/);
      assert.equal(endpoint.version, 1);
      assert.deepEqual(endpoint.filterTypes, ['sdk.user.created']);
      const { key } = await svix.endpoint.getSecret('sdk-app', 'sdk-ep');
      assert.match(key, /^whsec_/);
      await svix.endpoint.updateHeaders('sdk-app', 'sdk-ep', { headers: { 'X-Tenant': 't1', Authorization: 'Bearer hidden' } });
      await svix.endpoint.patchHeaders('sdk-app', 'sdk-ep', { headers: { 'X-Extra': 'e' }, deleteHeaders: ['X-Tenant'] });
      assert.deepEqual(await svix.endpoint.getHeaders('sdk-app', 'sdk-ep'), { headers: { 'X-Extra': 'e' }, sensitive: ['Authorization'] });

      const payload = { user: 'u1', email: 'u1@example.com' };
      const message = await svix.message.create('sdk-app', { eventType: 'sdk.user.created', eventId: 'sdk-evt-1', payload });
      assert.match(message.id, /^msg_/);
      assert.deepEqual(message.payload, payload);
      assert.ok(message.timestamp instanceof Date);
      await assert.rejects(svix.message.create('sdk-app', { eventType: 'sdk.user.created', eventId: 'sdk-evt-1', payload }), (error: unknown) => error instanceof ApiException && error.code === 409);

      const fetched = await svix.message.get('sdk-app', 'sdk-evt-1');
      assert.equal(fetched.id, message.id);
      assert.deepEqual(fetched.payload, payload);
      const listed = await svix.message.list('sdk-app', { eventTypes: ['sdk.user.created'], limit: 10 });
      assert.deepEqual(listed.data.map((m) => m.id), [message.id]);

      const delivered = await waitFor('the webhook to reach the receiver', () => receiver.requests.find((r) => r.headers['webhook-id'] === message.id));
      assert.equal(delivered.headers['x-extra'], 'e');
      assert.equal(delivered.headers['authorization'], 'Bearer hidden');
      const verified = new Webhook(key).verify(delivered.body, {
        'svix-id': String(delivered.headers['webhook-id']),
        'svix-timestamp': String(delivered.headers['webhook-timestamp']),
        'svix-signature': String(delivered.headers['webhook-signature']),
      });
      assert.deepEqual(verified, payload, "the SDK's verifier accepts the signature");

      const attempts = await waitFor('the attempt to be recorded', async () => {
        const page = await svix.messageAttempt.listByEndpoint('sdk-app', 'sdk-ep');
        return page.data.length > 0 ? page : null;
      });
      const attempt = attempts.data[0]!;
      assert.equal(attempt.msgId, message.id);
      assert.equal(attempt.endpointId, endpoint.id);
      assert.equal(attempt.status, 0);
      assert.equal(attempt.statusText, 'success');
      assert.equal(attempt.responseStatusCode, 200);
      assert.equal(attempt.url, receiver.url('/sdk'));
      assert.ok(attempt.timestamp instanceof Date);
      const byMsg = await svix.messageAttempt.listByMsg('sdk-app', message.id);
      assert.deepEqual(byMsg.data.map((a) => a.id), [attempt.id]);
      assert.equal((await svix.messageAttempt.get('sdk-app', message.id, attempt.id)).id, attempt.id);

      const stats = await svix.endpoint.getStats('sdk-app', 'sdk-ep');
      assert.deepEqual({ success: stats.success, fail: stats.fail, pending: stats.pending, sending: stats.sending, canceled: stats.canceled }, { success: 1, fail: 0, pending: 0, sending: 0, canceled: 0 });
      // The SDK sends Dates as RFC 3339 (toISOString); the message's own time is inside the window.
      assert.equal((await svix.endpoint.getStats('sdk-app', endpoint.id, { since: message.timestamp, until: message.timestamp })).success, 1);
      assert.equal((await svix.endpoint.getStats('sdk-app', 'sdk-ep', { since: new Date(message.timestamp.getTime() + 1) })).success, 0);
      await assert.rejects(svix.endpoint.getStats('sdk-app', 'no-such-ep'), (error: unknown) => error instanceof ApiException && error.code === 404);

      const before = receiver.requests.length;
      await svix.messageAttempt.resend('sdk-app', message.id, 'sdk-ep');
      await waitFor('the resent webhook', () => receiver.requests.length > before);
      const manual = await waitFor('the manual attempt to be recorded', async () => {
        const page = await svix.messageAttempt.listByMsg('sdk-app', message.id);
        return page.data.length === 2 ? page.data[0] : null;
      });
      assert.equal(manual.triggerType, 1);

      await svix.message.expungeContent('sdk-app', message.id);
      assert.deepEqual((await svix.message.get('sdk-app', message.id)).payload, {});
      await assert.rejects(svix.message.expungeContent('sdk-app', 'msg_unknown'), (error: unknown) => error instanceof ApiException && error.code === 404);
    });

    it('rotates the endpoint secret', async () => {
      const before = (await svix.endpoint.getSecret('sdk-app', 'sdk-ep')).key;
      await svix.endpoint.rotateSecret('sdk-app', 'sdk-ep', {});
      const after = (await svix.endpoint.getSecret('sdk-app', 'sdk-ep')).key;
      assert.notEqual(after, before);
      const explicit = 'whsec_' + Buffer.alloc(24, 7).toString('base64');
      await svix.endpoint.rotateSecret('sdk-app', 'sdk-ep', { key: explicit });
      assert.equal((await svix.endpoint.getSecret('sdk-app', 'sdk-ep')).key, explicit);
    });

    it('updates, patches and deletes endpoints and applications', async () => {
      const updated = await svix.endpoint.update('sdk-app', 'sdk-ep', { url: receiver.url('/sdk-2'), uid: 'sdk-ep', filterTypes: ['sdk.user.created'] });
      assert.equal(updated.url, receiver.url('/sdk-2'));
      const patched = await svix.endpoint.patch('sdk-app', 'sdk-ep', { disabled: true });
      assert.equal(patched.disabled, true);
      const list = await svix.endpoint.list('sdk-app');
      assert.deepEqual(list.data.map((e) => e.id), [updated.id]);
      await svix.endpoint.delete('sdk-app', 'sdk-ep');
      await assert.rejects(svix.endpoint.get('sdk-app', 'sdk-ep'), (error: unknown) => error instanceof ApiException && error.code === 404);
      await svix.application.delete('sdk-app');
      await assert.rejects(svix.application.get('sdk-app'), (error: unknown) => error instanceof ApiException && error.code === 404);
    });
  });
});
