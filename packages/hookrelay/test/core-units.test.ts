import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { newId, hasPrefix, encodeBase62 } from '../src/core/ids.js';
import { matchesChannels, matchesEventType } from '../src/core/event-type-filter.js';
import { nextRetryDelay, parseRetryAfter, DEFAULT_RETRY_SCHEDULE_MS, RETRY_AFTER_MAX_MS, RETRY_AFTER_MIN_MS } from '../src/retry/retry-schedule.js';
import { SecretBox } from '../src/secrets/secret-box.js';
import { buildWebhookHeaders } from '../src/signing/webhook-headers.js';
import { generateEndpointSecret, isValidEndpointSecret } from '../src/signing/endpoint-secret.js';

test('ids carry their prefix, have a fixed length and sort by creation', () => {
  const ids = Array.from({ length: 2000 }, () => newId('msg'));
  assert.ok(ids.every((id) => hasPrefix(id, 'msg') && id.length === 31));
  assert.deepEqual([...ids].sort(), ids, 'ids made in sequence are already in lexicographic order');
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(!hasPrefix(ids[0]!, 'app'));
});

test('base62 encoding equals the arithmetic definition and keeps byte order', () => {
  const reference = (bytes: Buffer) => {
    let value = BigInt('0x' + (bytes.toString('hex') || '0'));
    let out = '';
    while (value > 0n) {
      out = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'[Number(value % 62n)] + out;
      value /= 62n;
    }
    return out.padStart(27, '0');
  };
  const samples = [Buffer.alloc(20), Buffer.alloc(20, 0xff), Buffer.from([1, ...Buffer.alloc(19)]), ...Array.from({ length: 500 }, () => randomBytes(20))];
  for (const bytes of samples) assert.equal(encodeBase62(bytes), reference(bytes), bytes.toString('hex'));
  const sorted = [...samples].sort(Buffer.compare);
  const encoded = sorted.map((b) => encodeBase62(b));
  assert.deepEqual([...encoded].sort(), encoded);
});

test('filterTypes match exact names and dotted wildcards; channels intersect', () => {
  assert.equal(matchesEventType(null, 'order.created'), true);
  assert.equal(matchesEventType([], 'order.created'), true);
  assert.equal(matchesEventType(['order.created'], 'order.created'), true);
  assert.equal(matchesEventType(['order.created'], 'order.updated'), false);
  assert.equal(matchesEventType(['order.*'], 'order.item.added'), true);
  assert.equal(matchesEventType(['order.*'], 'order'), false);
  assert.equal(matchesEventType(['order.*'], 'orders.created'), false);
  assert.equal(matchesEventType(['*'], 'anything'), true);
  assert.equal(matchesChannels(null, ['a']), true);
  assert.equal(matchesChannels(['a', 'b'], ['b']), true);
  assert.equal(matchesChannels(['a'], ['c']), false);
  assert.equal(matchesChannels(['a'], null), false);
});

test('retry delays follow the schedule within +-20 % jitter, then stop', () => {
  for (let attempt = 1; attempt < DEFAULT_RETRY_SCHEDULE_MS.length; attempt++) {
    const base = DEFAULT_RETRY_SCHEDULE_MS[attempt]!;
    const low = nextRetryDelay(DEFAULT_RETRY_SCHEDULE_MS, attempt, null, 0.2, () => 0).delayMs!;
    const high = nextRetryDelay(DEFAULT_RETRY_SCHEDULE_MS, attempt, null, 0.2, () => 0.999999).delayMs!;
    assert.equal(low, Math.round(base * 0.8));
    assert.ok(high <= Math.round(base * 1.2) && high >= base * 1.2 - base * 1e-5, `attempt ${attempt}: ${high}`);
  }
  assert.equal(nextRetryDelay(DEFAULT_RETRY_SCHEDULE_MS, DEFAULT_RETRY_SCHEDULE_MS.length, null).delayMs, null);
  assert.equal(nextRetryDelay([0, 5000], 1, 30_000).delayMs, 30_000, 'a longer Retry-After delays the attempt');
  assert.equal(nextRetryDelay([0, 5000], 1, 1_000, 0).delayMs, 5000, 'a shorter Retry-After does not advance it');
  assert.equal(nextRetryDelay([0, 5000], 1, 2_000, 0.2, () => 0).delayMs, 4000, 'nor does it remove the jitter');
  assert.equal(nextRetryDelay([0, 0], 1, 0).delayMs, RETRY_AFTER_MIN_MS, 'Retry-After: 0 still waits a second');
  assert.equal(nextRetryDelay([0, 5000], 1, 10 * 24 * 3_600_000).delayMs, RETRY_AFTER_MAX_MS, 'capped at an hour');
  assert.equal(nextRetryDelay([0, 7_200_000], 1, 10 * 24 * 3_600_000, 0).delayMs, 7_200_000, 'the cap never shortens the schedule');
  // A receiver answering "503, Retry-After: 1" on every attempt: the default schedule still spans its hours.
  let total = 0;
  for (let made = 1; ; made++) {
    const { delayMs } = nextRetryDelay(DEFAULT_RETRY_SCHEDULE_MS, made, 1_000, 0.2, () => 0);
    if (delayMs === null) break;
    total += delayMs;
  }
  assert.ok(total >= 0.8 * DEFAULT_RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0), `Retry-After: 1 must not compress the schedule (${total} ms)`);
  assert.equal(nextRetryDelay([0, 5000], 2, 30_000).delayMs, null, 'Retry-After does not add attempts');
});

test('Retry-After parses seconds and HTTP dates', () => {
  const now = Date.UTC(2026, 0, 1, 0, 0, 0);
  assert.equal(parseRetryAfter('120', now), 120_000);
  assert.equal(parseRetryAfter(new Date(now + 90_000).toUTCString(), now), 90_000);
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter(undefined, now), null);
});

test('sealed secrets open with the same key only, and never contain the plain text', () => {
  const box = new SecretBox(randomBytes(32));
  const secret = generateEndpointSecret();
  const sealed = box.seal(secret);
  assert.ok(!sealed.includes(secret.slice(6)));
  assert.equal(box.open(sealed), secret);
  assert.throws(() => new SecretBox(randomBytes(32)).open(sealed));
  assert.throws(() => box.open(sealed.slice(0, -4) + 'AAAA'));
});

test('generated secrets are valid whsec_ keys; malformed ones are refused', () => {
  assert.ok(isValidEndpointSecret(generateEndpointSecret()));
  assert.ok(!isValidEndpointSecret('whsec_short'));
  assert.ok(!isValidEndpointSecret('abc' + generateEndpointSecret()));
  assert.ok(!isValidEndpointSecret('whsec_' + '*'.repeat(40)));
});

test('signatures verify with the standardwebhooks reference library', () => {
  const secret = generateEndpointSecret();
  const payload = JSON.stringify({ hello: 'wörld' });
  const headers = buildWebhookHeaders({ msgId: 'msg_1', timestampSeconds: Math.floor(Date.now() / 1000), payload, secrets: [secret], customHeaders: { 'User-Agent': 'evil', 'x-a': '1' }, sendSvixHeaders: false });
  assert.deepEqual(new Webhook(secret).verify(payload, headers), { hello: 'wörld' });
  assert.equal(headers['User-Agent'], undefined, 'custom headers cannot override reserved ones');
  assert.equal(headers['x-a'], '1');
  assert.equal(headers['svix-id'], undefined);
  assert.throws(() => new Webhook(generateEndpointSecret()).verify(payload, headers));
});
