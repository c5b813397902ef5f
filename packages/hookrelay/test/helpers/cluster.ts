import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import type { ServerRole } from '../../src/config/config.js';
import type { Receiver } from './receiver.js';
import { freePort, spawnServer, type ServerProcess } from './server-process.js';
import type { TestDatabase } from './test-database.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export const CLUSTER_TOKEN = 'cluster-test-token';

/**
 * Several `hookrelay serve` processes of one deployment, each a real child process: they share
 * the database, the master key and the admin key, as docs/deploy.md asks.
 */
export class Cluster {
  readonly env: Record<string, string>;
  readonly processes: ServerProcess[] = [];

  constructor(database: TestDatabase, env: Record<string, string> = {}) {
    this.env = {
      HOOKRELAY_DATABASE_URL: database.url,
      HOOKRELAY_DATA_DIR: database.dir,
      HOOKRELAY_MASTER_KEY: randomBytes(32).toString('base64'),
      HOOKRELAY_API_KEY: CLUSTER_TOKEN,
      HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32',
      ...env,
    };
  }

  /** `hookrelay migrate`, as a deployment runs it before starting (or upgrading) its processes. */
  migrate(): void {
    const result = spawnSync(process.execPath, [CLI, 'migrate'], { env: { ...process.env, HOOKRELAY_LOG_LEVEL: 'warn', ...this.env }, encoding: 'utf8', timeout: 30_000 });
    if (result.status !== 0) throw new Error(`hookrelay migrate failed: ${result.stderr}`);
  }

  /**
   * Starts `hookrelay serve --role <role>` (or with HOOKRELAY_ROLE=<role>), with `nodeArgs` for
   * node itself, and waits until it answers /health.
   */
  async start(role: ServerRole, env: Record<string, string> = {}, roleBy: 'flag' | 'env' = 'flag', nodeArgs: readonly string[] = []): Promise<ServerProcess> {
    const server = roleBy === 'flag'
      ? await spawnServer({ ...this.env, ...env }, await freePort(), ['--role', role], nodeArgs)
      : await spawnServer({ ...this.env, ...env, HOOKRELAY_ROLE: role }, await freePort(), [], nodeArgs);
    this.processes.push(server);
    return server;
  }

  /** SIGTERM to every process still running; resolves with their exit codes (0: drained cleanly). */
  async stop(): Promise<(number | string)[]> {
    for (const p of this.processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    return Promise.all(this.processes.map((p) => p.exited));
  }

  /** For t.after: whatever is still running is killed. */
  async kill(): Promise<void> {
    for (const p of this.processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(this.processes.map((p) => p.exited));
  }
}

/** Calls a process's API with the cluster's admin key; returns status and parsed JSON (or null). */
export async function callApi(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${CLUSTER_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Creates `count` applications with one endpoint each, endpoint i at the receiver's path /ep<i>; returns the application ids. */
export async function createEndpoints(base: string, receiver: Receiver, count: number): Promise<string[]> {
  const appIds: string[] = [];
  for (let i = 0; i < count; i++) {
    const app = await callApi(base, 'POST', '/api/v1/app', { name: `app ${i}` });
    if (app.status !== 201) throw new Error(`creating app ${i}: ${app.status} ${JSON.stringify(app.body)}`);
    const ep = await callApi(base, 'POST', `/api/v1/app/${app.body.id}/endpoint`, { url: receiver.url(`/ep${i}`) });
    if (ep.status !== 201) throw new Error(`creating endpoint ${i}: ${ep.status} ${JSON.stringify(ep.body)}`);
    appIds.push(app.body.id as string);
  }
  return appIds;
}

export interface PublishOptions {
  apiUrls: readonly string[];
  appIds: readonly string[];
  /** Message i goes to application i % appIds.length through API i % apiUrls.length. */
  count: number;
  /** Requests in flight at once, over all APIs. */
  concurrency: number;
}

/**
 * Publishes messages round robin over the APIs and applications with undici's request (fetch
 * costs this 2-core machine several times the CPU). Throws on any answer but 202. Returns each
 * message's id by index.
 */
export async function publishRoundRobin(options: PublishOptions): Promise<string[]> {
  const pools = options.apiUrls.map((url) => new Pool(url, { connections: Math.ceil(options.concurrency / options.apiUrls.length) }));
  const ids: string[] = new Array(options.count);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (next < options.count) {
          const i = next++;
          const appId = options.appIds[i % options.appIds.length]!;
          const res = await pools[i % pools.length]!.request({
            method: 'POST',
            path: `/api/v1/app/${appId}/msg`,
            headers: { authorization: `Bearer ${CLUSTER_TOKEN}`, 'content-type': 'application/json' },
            body: JSON.stringify({ eventType: 'scale.test', payload: { i } }),
          });
          const text = await res.body.text();
          if (res.statusCode !== 202) throw new Error(`message ${i}: ${res.statusCode} ${text}`);
          ids[i] = (JSON.parse(text) as { id: string }).id;
        }
      }),
    );
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
  }
  return ids;
}

export interface DeliveryCount {
  /** Requests received. */
  total: number;
  /** Requests beyond the first for the same message at the same endpoint. */
  duplicates: number;
  /** (endpoint path, message id) pairs expected but never received. */
  missing: number;
  /** Received but not expected (another endpoint's message, or an unknown one). */
  unexpected: number;
}

/**
 * Compares what the receiver got with what was published: message i was due once at
 * /ep<i % endpoints>. Counts webhook-ids per endpoint path.
 */
export function countDeliveries(receiver: Receiver, messageIds: readonly string[], endpoints: number): DeliveryCount {
  const received = new Map<string, number>();
  for (const request of receiver.requests) {
    const key = `${request.path} ${String(request.headers['webhook-id'])}`;
    received.set(key, (received.get(key) ?? 0) + 1);
  }
  let duplicates = 0;
  let missing = 0;
  const expected = new Set<string>();
  messageIds.forEach((id, i) => {
    const key = `/ep${i % endpoints} ${id}`;
    expected.add(key);
    const count = received.get(key) ?? 0;
    if (count === 0) missing++;
    else duplicates += count - 1;
  });
  let unexpected = 0;
  for (const [key, count] of received) if (!expected.has(key)) unexpected += count;
  return { total: receiver.requests.length, duplicates, missing, unexpected };
}
