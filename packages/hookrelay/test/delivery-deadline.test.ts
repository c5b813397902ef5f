import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_LOGGED_RESPONSE_BYTES, WebhookSender } from '../src/transport/webhook-sender.js';
import { parseCidrList } from '../src/transport/ssrf/cidr.js';
import { startTestPlatform, createAppWithEndpoint, type TestPlatform } from './helpers/platform.js';
import { waitFor } from './helpers/wait-for.js';
import { TEST_ENGINES } from './helpers/test-database.js';

// HOOKRELAY_REQUEST_TIMEOUT is a deadline for the whole response, not a budget per phase: a
// receiver that sends its headers and then a byte now and then must not hold a request open.

const TIMEOUT_MS = 500;
/** How late past the deadline an attempt may settle: timer and event-loop latency, nothing more. */
const LATE_MS = 250;

interface OpenedRequest {
  webhookId: string;
  openedAt: number;
  /** Requests of the same webhook-id still open when this one came. */
  sameIdOpen: number;
  /** When the server saw the connection close; null while it is open. */
  closedAt: number | null;
  /** Closed before the response was finished: the client gave up on it. */
  cutOff: boolean;
}

/** An HTTP server on 127.0.0.1 that notes each request and when (and how) its connection closed. */
async function startServer(handle: RequestListener) {
  const requests: OpenedRequest[] = [];
  const server = createServer((req, res) => {
    const webhookId = String(req.headers['webhook-id']);
    const sameIdOpen = requests.filter((r) => r.webhookId === webhookId && r.closedAt === null).length;
    const opened: OpenedRequest = { webhookId, openedAt: Date.now(), sameIdOpen, closedAt: null, cutOff: false };
    requests.push(opened);
    res.on('close', () => {
      opened.closedAt = Date.now();
      opened.cutOff = !res.writableFinished;
    });
    req.resume();
    handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    requests,
    url: `http://127.0.0.1:${port}/webhook`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Answers 200 after `headersAfterMs`, then writes one byte every `everyMs`, never idle as long as
 * an idle timeout of TIMEOUT_MS. It stops after `bytes` bytes, so even a sender that waits it out
 * (the bug) finishes: 12 bytes at 0.6 x timeout last 7 timeouts, well past a 3-timeout lease.
 */
function drip({ headersAfterMs = 0, everyMs = 0.6 * TIMEOUT_MS, bytes = 12 } = {}): RequestListener {
  return (_req, res) => {
    let sent = 0;
    const writeByte = () => {
      res.write('.');
      if (++sent < bytes) timer = setTimeout(writeByte, everyMs);
      else res.end();
    };
    let timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      timer = setTimeout(writeByte, everyMs);
    }, headersAfterMs);
    res.on('close', () => clearTimeout(timer));
  };
}

function newSender(timeoutMs = TIMEOUT_MS): WebhookSender {
  return new WebhookSender({ timeoutMs, ssrfAllow: parseCidrList('127.0.0.1/32', 'HOOKRELAY_SSRF_ALLOW') });
}

const headers = { 'content-type': 'application/json', 'webhook-id': 'msg_deadline' };

/** A receiver answering with `handle` and a sender with the test's timeout, both closed after the test. */
async function senderAndReceiver(t: TestContext, handle: RequestListener) {
  const receiver = await startServer(handle);
  const sender = newSender();
  t.after(async () => {
    await receiver.close();
    await sender.close();
  });
  return { receiver, sender };
}

/** Sends once and returns the result with the wall time the promise took to settle. */
async function timedSend(sender: WebhookSender, url: string) {
  const started = performance.now();
  const result = await sender.send(url, headers, '{"a":1}');
  return { result, settledAfterMs: performance.now() - started };
}

describe('request deadline (WebhookSender)', () => {
  test('headers at once, then a byte every 0.6 x timeout: a timeout failure at the deadline, connection closed', async (t) => {
    const { receiver, sender } = await senderAndReceiver(t, drip());
    const { result, settledAfterMs } = await timedSend(sender, receiver.url);
    assert.equal(result.statusCode, 0, `a timeout, not a success: ${JSON.stringify(result)}`);
    assert.equal(result.errorCode, 'UND_ERR_BODY_TIMEOUT');
    assert.match(result.body, /^UND_ERR_BODY_TIMEOUT: /);
    assert.ok(settledAfterMs <= TIMEOUT_MS + LATE_MS, `settled after ${Math.round(settledAfterMs)} ms, timeout ${TIMEOUT_MS} ms`);
    assert.ok(result.durationMs >= TIMEOUT_MS - 5, `settled after ${result.durationMs} ms, before the deadline`);
    await waitFor('the receiver to see its connection closed', () => receiver.requests[0]?.closedAt != null, 2_000);
    assert.equal(receiver.requests[0]!.cutOff, true, 'the connection was destroyed mid-response');
    assert.equal(receiver.requests.length, 1);
  });

  test('headers just under the timeout, then a dripped body: a timeout failure', async (t) => {
    const { receiver, sender } = await senderAndReceiver(t, drip({ headersAfterMs: 0.9 * TIMEOUT_MS }));
    const { result, settledAfterMs } = await timedSend(sender, receiver.url);
    assert.equal(result.statusCode, 0, `a timeout, not a success: ${JSON.stringify(result)}`);
    assert.equal(result.errorCode, 'UND_ERR_BODY_TIMEOUT');
    assert.ok(settledAfterMs <= TIMEOUT_MS + LATE_MS, `settled after ${Math.round(settledAfterMs)} ms, timeout ${TIMEOUT_MS} ms`);
    await waitFor('the receiver to see its connection closed', () => receiver.requests[0]?.closedAt != null, 2_000);
    assert.equal(receiver.requests[0]!.cutOff, true);
  });

  test('no headers at all: the headers timeout code, as before, and the connection is closed', async (t) => {
    const { receiver, sender } = await senderAndReceiver(t, () => {}); // never answers; close() ends it
    const { result, settledAfterMs } = await timedSend(sender, receiver.url);
    assert.equal(result.statusCode, 0);
    assert.equal(result.errorCode, 'UND_ERR_HEADERS_TIMEOUT');
    assert.ok(settledAfterMs <= TIMEOUT_MS + LATE_MS, `settled after ${Math.round(settledAfterMs)} ms, timeout ${TIMEOUT_MS} ms`);
    await waitFor('the receiver to see its connection closed', () => receiver.requests[0]?.closedAt != null, 2_000);
  });

  test('a fast 200 succeeds, and a body past the 20 KB cut is cut as before', async (t) => {
    const big = 'x'.repeat(5 * MAX_LOGGED_RESPONSE_BYTES);
    const { receiver, sender } = await senderAndReceiver(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url === '/big' ? big : 'thanks');
    });
    const fast = await sender.send(receiver.url, headers, '{}');
    assert.deepEqual({ ...fast, durationMs: 0 }, { statusCode: 200, body: 'thanks', durationMs: 0, retryAfter: undefined, errorCode: null });
    assert.ok(fast.durationMs < TIMEOUT_MS);

    const cut = await sender.send(receiver.url.replace('/webhook', '/big'), headers, '{}');
    assert.equal(cut.statusCode, 200);
    assert.equal(cut.errorCode, null);
    assert.equal(cut.body, big.slice(0, MAX_LOGGED_RESPONSE_BYTES));
  });

  test('a binary reply is kept as text both engines can store (U+0000 becomes U+FFFD)', async (t) => {
    const { receiver, sender } = await senderAndReceiver(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.from([0x6f, 0x6b, 0x00, 0x21]));
    });
    // PostgreSQL refuses U+0000 in text: stored as it came, it failed the attempt's write and its batch.
    assert.equal((await sender.send(receiver.url, headers, '{}')).body, 'ok\uFFFD!');
  });

  test('a settled request leaves no deadline timer behind', async (t) => {
    const receiver = await startServer((_req, res) => res.end('ok'));
    // A long timeout: a timer that was not cleared would still be pending at the end.
    const sender = newSender(60_000);
    t.after(async () => {
      await receiver.close();
      await sender.close();
    });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await sender.send(receiver.url, headers, '{}'); // the connection and undici's own timers
    const before = timers();
    const count = 50;
    for (let i = 0; i < count; i++) assert.equal((await sender.send(receiver.url, headers, '{}')).statusCode, 200);
    const results = await Promise.all(Array.from({ length: count }, () => sender.send(receiver.url, headers, '{}')));
    assert.ok(results.every((r) => r.statusCode === 200));
    assert.ok(timers() - before < 10, `${timers() - before} more timers after ${2 * count} requests`);
  });
});

async function attemptsOf(platform: TestPlatform, appId: string, msgId: string) {
  const res = await platform.api('GET', `/api/v1/app/${appId}/attempt/msg/${msgId}`);
  assert.equal(res.status, 200);
  return (res.body.data as any[]).slice().reverse();
}

for (const engine of TEST_ENGINES) describe(`request deadline, end to end (${engine})`, () => {
  test('a dripping endpoint gets one request per attempt, each a failed attempt with the timeout code', async (t) => {
    const receiver = await startServer(drip());
    // A lease of 3 timeouts: the dripping response (7 timeouts) would outlive it without the deadline.
    const platform = await startTestPlatform({ engine, requestTimeoutMs: TIMEOUT_MS, leaseMs: 3 * TIMEOUT_MS, retryScheduleMs: [0, 100] });
    t.after(async () => {
      await receiver.close(); // ends any request still open, so shutdown does not wait on it
      await platform.close();
    });
    const { appId } = await createAppWithEndpoint(platform, receiver.url);
    const res = await platform.api('POST', `/api/v1/app/${appId}/msg`, { eventType: 'invoice.paid', payload: { amount: 42 } });
    assert.equal(res.status, 202);
    const msgId: string = res.body.id;

    // Without the deadline a lapsed lease sends again while a request is open, and keeps doing so.
    await waitFor('two requests at the receiver, both closed (or a send while one was open)', () => {
      const { requests } = receiver;
      return requests.some((r) => r.sameIdOpen > 0) || (requests.length >= 2 && requests.every((r) => r.closedAt !== null));
    }, 15_000);
    const resent = receiver.requests.find((r) => r.sameIdOpen > 0);
    assert.equal(resent, undefined, `a request came ${resent && resent.openedAt - receiver.requests[0]!.openedAt} ms after the first, while the first was still open`);
    const [first, second] = receiver.requests;
    assert.equal(first!.webhookId, msgId);
    assert.equal(second!.webhookId, msgId);
    assert.ok(first!.cutOff && second!.cutOff, 'both responses were cut off at the deadline');

    const attempts = await waitFor('two attempts, the last final', async () => {
      const list = await attemptsOf(platform, appId, msgId);
      return list.length === 2 && list[1].statusText === 'fail' && list;
    }, 10_000);
    assert.deepEqual(attempts.map((a) => a.responseStatusCode), [0, 0]);
    for (const attempt of attempts) assert.match(attempt.response, /^UND_ERR_BODY_TIMEOUT: /);
    assert.equal(receiver.requests.length, 2, 'one request per attempt');
  });
});
