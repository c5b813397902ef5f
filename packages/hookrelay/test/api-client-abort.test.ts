import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { ADMIN_KEY, startHarness, type Harness } from './helpers/api-harness.js';
import { TEST_ENGINES } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * A client that goes away before its request body is complete. Node ends the request's stream
 * with ECONNRESET ("aborted"), the code a lost database connection carries too: the API's error
 * handling took the abort for a database outage (a warning "the database cannot be reached" and a
 * 503 `unavailable`). An abort is the client's doing: logged at debug level at most, nothing
 * written, no outage reported, and the server goes on serving.
 */
interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  [key: string]: unknown;
}

const ABORT_MESSAGE = 'the client closed the connection before its request was complete';
const WARN = 40;

for (const engine of TEST_ENGINES) describe(`a client that aborts its request mid-body (${engine})`, () => {
  let h: Harness;
  const lines: LogLine[] = [];
  before(async () => {
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    h = await startHarness({ engine, logger });
    const app = await h.request('POST', '/api/v1/app', { body: { name: 'Abort target', uid: 'abort-app' } });
    assert.equal(app.status, 201, app.text);
    assert.equal((await h.request('POST', '/api/v1/app/abort-app/endpoint', { body: { url: 'https://example.com/hook' } })).status, 201);
  });
  after(async () => {
    await h.close();
  });

  /**
   * Sends the head of a POST announcing its whole body's length and only the first 100 bytes of
   * the body, waits until the server is reading that body, then ends the connection as `end` says.
   * Resolves, once the server has handled the abort, with what it answered, if anything.
   */
  async function abortMidBody(path: string, end: (socket: Socket) => void, extraHeaders = ''): Promise<string> {
    const port = Number(new URL(h.url).port);
    const body = JSON.stringify({ eventType: 'abort.test', payload: { blob: 'x'.repeat(2_000) } });
    const seen = lines.length;
    const arrived = new Promise<IncomingMessage>((resolve) => h.app.server.once('request', resolve));
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${ADMIN_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${extraHeaders}\r\n${body.slice(0, 100)}`,
    );
    const request = await arrived;
    // Past authentication, in the body parser: it listens for the body's data.
    await waitFor('the server to read the request body', () => request.listenerCount('data') > 0);
    end(socket);
    await closed;
    // The error handler has run once the abort, or any warning or error, is logged.
    await waitFor('the abort to be handled and logged', () => lines.slice(seen).some((line) => line.msg === ABORT_MESSAGE || line.level >= WARN));
    return answer;
  }

  function assertNoOutageReported(since: number, what: string): void {
    const after = lines.slice(since);
    const loud = after.filter((line) => line.level >= WARN);
    assert.deepEqual(loud, [], `${what}: nothing logged at warn or above`);
    const aboutDatabase = after.filter((line) => /database/i.test(line.msg));
    assert.deepEqual(aboutDatabase, [], `${what}: no line speaks of the database`);
    const abort = after.find((line) => line.msg === ABORT_MESSAGE);
    assert.ok(abort, `${what}: logged as a client abort`);
    assert.ok(abort.level <= 30, `${what}: at info level or below`);
  }

  it('is logged as a client abort at debug level, never as a database outage, and writes nothing', async () => {
    const snapshot = await h.database.dump();
    const cases: { name: string; end: (socket: Socket) => void; headers?: string }[] = [
      // The client closes its side (FIN): the body ends short of its Content-Length.
      { name: 'closed mid-body', end: (socket) => socket.destroy() },
      // The client resets the connection (RST): the read fails with ECONNRESET.
      { name: 'reset mid-body', end: (socket) => socket.resetAndDestroy() },
      // With an Idempotency-Key: the key must not stay reserved (the body was never parsed).
      { name: 'closed mid-body with an Idempotency-Key', end: (socket) => socket.destroy(), headers: 'idempotency-key: abort-key-1\r\n' },
    ];
    for (const c of cases) {
      const since = lines.length;
      const answer = await abortMidBody('/api/v1/app/abort-app/msg', c.end, c.headers);
      assertNoOutageReported(since, c.name);
      assert.ok(!answer.includes('unavailable'), `${c.name}: not answered as an outage (${answer})`);
    }
    assert.deepEqual(await h.database.dump(), snapshot, 'an aborted request writes nothing');
  });

  it('leaves the server serving, its readiness up, and the idempotency key free', async () => {
    const since = lines.length;
    await abortMidBody('/api/v1/app/abort-app/msg', (socket) => socket.destroy(), 'idempotency-key: abort-key-2\r\n');
    const ready = await h.request('GET', '/health/ready');
    assert.equal(ready.status, 200, ready.text);
    assert.equal(ready.body.checks.database, 'up');
    const retried = await h.request('POST', '/api/v1/app/abort-app/msg', { body: { eventType: 'abort.test', payload: { n: 1 } }, headers: { 'idempotency-key': 'abort-key-2' } });
    assert.equal(retried.status, 202, `the retry is accepted, not refused as a duplicate or a conflict: ${retried.text}`);
    assert.equal((await h.request('GET', `/api/v1/app/abort-app/msg/${retried.body.id}`)).status, 200);
    assertNoOutageReported(since, 'after the abort');
  });
});
