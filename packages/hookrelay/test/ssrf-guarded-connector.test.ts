import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, getDefaultAutoSelectFamily, setDefaultAutoSelectFamily, type AddressInfo } from 'node:net';
import { Agent, fetch, request } from 'undici';
import { parseCidrList, type Cidr } from '../src/transport/ssrf/cidr.js';
import { createGuardedConnector, isSsrfBlocked } from '../src/transport/ssrf/guarded-connector.js';
import { SsrfBlockedError } from '../src/transport/ssrf/ssrf-blocked-error.js';

// NETWORK RULE: these tests only ever talk to 127.0.0.1, ::1 and localhost. Blocking is proved against
// local servers (which must then see no connection), never against another address.

const LOOPBACK_ALLOW = parseCidrList('127.0.0.1/32,::1/128', 'HOOKRELAY_SSRF_ALLOW');

interface Target {
  port: number;
  /** TCP connections the server accepted: must stay 0 when the guard refuses. */
  connections: () => number;
  requests: () => number;
}

async function withServer<T>(server: Server | ReturnType<typeof createTcpServer>, host: string, run: (target: Target) => Promise<T>): Promise<T> {
  let connections = 0;
  let requests = 0;
  server.on('connection', () => connections++);
  server.on('request', () => requests++);
  server.listen(0, host);
  await once(server, 'listening');
  try {
    return await run({
      port: (server.address() as AddressInfo).port,
      connections: () => connections,
      requests: () => requests,
    });
  } finally {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close();
    await once(server, 'close');
  }
}

const okServer = (): Server => createServer((_req, res) => res.end('ok'));

async function withAgent<T>(allow: readonly Cidr[], run: (agent: Agent) => Promise<T>): Promise<T> {
  const agent = new Agent({ connect: createGuardedConnector({ allow, timeoutMs: 5_000 }) });
  try {
    return await run(agent);
  } finally {
    await agent.close();
  }
}

/** Resolves with the rejection of a request that must fail. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected the request to be refused');
}

function assertBlocked(error: unknown, expected: { address?: string; hostname: string }): SsrfBlockedError {
  // What a delivery worker checks: undici.request rejects with the connector's error object itself.
  assert.ok(error instanceof SsrfBlockedError, `expected SsrfBlockedError, got ${String(error)}`);
  assert.equal(error.code, 'HOOKRELAY_SSRF_BLOCKED');
  assert.equal(isSsrfBlocked(error), error);
  assert.equal(error.hostname, expected.hostname);
  if (expected.address !== undefined) assert.equal(error.address, expected.address);
  assert.match(error.message, /allow it with HOOKRELAY_SSRF_ALLOW/);
  return error;
}

test('an IP literal that is not allowed is refused before any connection is made', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, connections, requests }) =>
    withAgent([], async (agent) => {
      const error = await rejection(request(`http://127.0.0.1:${port}/`, { dispatcher: agent }));
      const blocked = assertBlocked(error, { address: '127.0.0.1', hostname: '127.0.0.1' });
      assert.match(blocked.message, /address 127\.0\.0\.1 is loopback/);
      assert.equal(connections(), 0);
      assert.equal(requests(), 0);
    }),
  );
});

test('a hostname is refused on the address it resolves to, before any connection is made', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, connections }) =>
    withAgent([], async (agent) => {
      const error = await rejection(request(`http://localhost:${port}/`, { dispatcher: agent }));
      const blocked = assertBlocked(error, { hostname: 'localhost' });
      assert.ok(['127.0.0.1', '::1'].includes(blocked.address), blocked.address);
      assert.match(blocked.message, /refused the connection to localhost: address .* is loopback/);
      assert.equal(connections(), 0);
    }),
  );
});

test('bracketed IPv6, IPv4-mapped and other literal spellings are refused without connecting', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, connections }) =>
    withAgent([], async (agent) => {
      assertBlocked(await rejection(request(`http://[::1]:${port}/`, { dispatcher: agent })), { address: '::1', hostname: '::1' });
      // The URL parser rewrites this to [::ffff:7f00:1], which Node would happily connect to 127.0.0.1.
      const mapped = await rejection(request(`http://[::ffff:127.0.0.1]:${port}/`, { dispatcher: agent }));
      assertBlocked(mapped, { address: '::ffff:7f00:1', hostname: '::ffff:7f00:1' });
      // Other spellings the URL parser turns into loopback or "this host" literals.
      for (const [host, address] of [['0', '0.0.0.0'], ['2130706433', '127.0.0.1'], ['0x7f.1', '127.0.0.1'], ['[::]', '::']]) {
        assertBlocked(await rejection(request(`http://${host}:${port}/`, { dispatcher: agent })), { address, hostname: address });
      }
      assert.equal(connections(), 0);
    }),
  );
});

test('an allowed IP literal is delivered to', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, requests }) =>
    withAgent(LOOPBACK_ALLOW, async (agent) => {
      const response = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
      assert.equal(response.statusCode, 200);
      assert.equal(await response.body.text(), 'ok');
      assert.equal(requests(), 1);
    }),
  );
});

test('an allowed hostname is delivered to', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, requests }) =>
    withAgent(LOOPBACK_ALLOW, async (agent) => {
      const response = await request(`http://localhost:${port}/`, { dispatcher: agent });
      assert.equal(response.statusCode, 200);
      assert.equal(await response.body.text(), 'ok');
      assert.equal(requests(), 1);
    }),
  );
});

test('the guard also holds when Node looks up a single address (happy eyeballs off)', async () => {
  const previous = getDefaultAutoSelectFamily();
  setDefaultAutoSelectFamily(false);
  try {
    const { address } = await lookup('localhost');
    await withServer(okServer(), address, async ({ port, connections, requests }) => {
      await withAgent([], async (agent) => {
        assertBlocked(await rejection(request(`http://localhost:${port}/`, { dispatcher: agent })), { address, hostname: 'localhost' });
        assert.equal(connections(), 0);
      });
      await withAgent(LOOPBACK_ALLOW, async (agent) => {
        const response = await request(`http://localhost:${port}/`, { dispatcher: agent });
        assert.equal(await response.body.text(), 'ok');
        assert.equal(requests(), 1);
      });
    });
  } finally {
    setDefaultAutoSelectFamily(previous);
  }
});

test('a hostname is refused when any of its addresses is not allowed', async (t) => {
  const addresses = await lookup('localhost', { all: true });
  if (addresses.length < 2) {
    t.skip('localhost resolves to a single address on this machine');
    return;
  }
  const [first, second] = addresses;
  assert.ok(first && second);
  await withServer(okServer(), '127.0.0.1', ({ port, connections }) =>
    withAgent(parseCidrList(first.address, 'X'), async (agent) => {
      assertBlocked(await rejection(request(`http://localhost:${port}/`, { dispatcher: agent })), {
        address: second.address,
        hostname: 'localhost',
      });
      assert.equal(connections(), 0);
    }),
  );
});

test('https goes through TLS once allowed, and is refused before the handshake otherwise', async () => {
  let firstBytes: Buffer | null = null;
  // A plain TCP server: the point is to see the client's TLS ClientHello, not to complete a handshake.
  const tcp = createTcpServer((socket) => {
    socket.once('data', (chunk: Buffer) => {
      firstBytes = chunk;
      socket.destroy();
    });
  });
  await withServer(tcp, '127.0.0.1', async ({ port, connections }) => {
    await withAgent([], async (agent) => {
      assertBlocked(await rejection(request(`https://127.0.0.1:${port}/`, { dispatcher: agent })), {
        address: '127.0.0.1',
        hostname: '127.0.0.1',
      });
      assert.equal(connections(), 0);
    });
    await withAgent(LOOPBACK_ALLOW, async (agent) => {
      const error = await rejection(request(`https://127.0.0.1:${port}/`, { dispatcher: agent }));
      assert.equal(isSsrfBlocked(error), null);
      assert.equal(connections(), 1);
      const hello = firstBytes as Buffer | null;
      assert.ok(hello, 'the server received no bytes');
      assert.equal(hello[0], 0x16, 'a TLS handshake record');
      assert.equal(hello[5], 0x01, 'a ClientHello');
    });
  });
});

test('isSsrfBlocked finds the refusal behind fetch, cause chains and AggregateError', async () => {
  await withServer(okServer(), '127.0.0.1', ({ port, connections }) =>
    withAgent([], async (agent) => {
      // undici's fetch wraps connection failures in TypeError('fetch failed', { cause }).
      const error = await rejection(fetch(`http://127.0.0.1:${port}/`, { dispatcher: agent }));
      assert.ok(error instanceof TypeError);
      assert.equal((isSsrfBlocked(error) as SsrfBlockedError).code, 'HOOKRELAY_SSRF_BLOCKED');
      assert.equal(connections(), 0);
    }),
  );
  const blocked = new SsrfBlockedError({ address: '10.0.0.1', hostname: 'internal.example', reason: 'test' });
  assert.equal(isSsrfBlocked(new Error('outer', { cause: new Error('middle', { cause: blocked }) })), blocked);
  assert.equal(isSsrfBlocked(new AggregateError([new Error('other'), blocked])), blocked);
  assert.equal(isSsrfBlocked(new Error('unrelated', { cause: 'text' })), null);
  assert.equal(isSsrfBlocked(Object.assign(new Error('lookalike'), { code: 'HOOKRELAY_SSRF_BLOCKED' })), null);
  assert.equal(isSsrfBlocked(null), null);
  const cyclic: Error & { cause?: unknown } = new Error('cyclic');
  cyclic.cause = cyclic;
  assert.equal(isSsrfBlocked(cyclic), null);
});
