import { createServer, type AddressInfo, type Socket } from 'node:net';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it, test, type TestContext } from 'node:test';
import { Client } from 'pg';
import { toApiError } from '../src/api/plugins/error-handler.js';
import { loadConfig } from '../src/config/config.js';
import { newId } from '../src/core/ids.js';
import { SecretBox } from '../src/secrets/secret-box.js';
import { CLAIM_LOCK_CLASS } from '../src/storage/postgres/postgres-delivery-store.js';
import { generateEndpointSecret } from '../src/signing/endpoint-secret.js';
import { migrateDatabase, openStorage } from '../src/storage/open-storage.js';
import type { Storage } from '../src/storage/storage.js';
import { createPostgresPool } from '../src/storage/postgres/open-postgres.js';
import { POSTGRES_MIGRATIONS } from '../src/storage/postgres/migrations/index.js';
import { startHarness } from './helpers/api-harness.js';
import { freePort, spawnServer } from './helpers/server-process.js';
import { createTestDatabase, POSTGRES_SKIP_REASON, TEST_POSTGRES_URL, type TestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * What only PostgreSQL has: several processes migrating and claiming at once, pooled connections,
 * and `hookrelay` run against a server. Everything both engines share is in the conformance suites
 * (storage-conformance, api-*, delivery-*, ...), which run once per engine. Without a server this
 * file reports one skipped suite, saying why, and that covers the PostgreSQL half of those too.
 */
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SECRET_BOX = new SecretBox(createHash('sha256').update('postgres engine').digest());

// A skipped test (not a skipped suite), so that the run's summary counts it among the skipped.
if (!TEST_POSTGRES_URL) test('PostgreSQL engine, and the PostgreSQL half of every conformance suite', { skip: POSTGRES_SKIP_REASON }, () => {});
else describe('PostgreSQL engine', () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('postgres');
  });
  after(async () => {
    await database?.drop();
  });

  /** What an auto_explain plan reads tables by: index names, or `seq scan <table>` (its query text, which may name others, left out). */
  function indexesScanned(plan: string): string[] {
    return [...plan.matchAll(/Scan using (\w+) on|Bitmap Index Scan on (\w+)|Seq Scan on (\w+)/g)].map((m) => m[1] ?? m[2] ?? `seq scan ${m[3]}`);
  }

  /**
   * Runs hookrelay_claim with `params` on `holder` (rolled back) and returns its rows and the plan
   * of each of its statements, which auto_explain sends back as notices. Under a generic plan: the
   * one a connection caches after a few calls, here made over the suite's never-analysed tables,
   * as on a fresh database with autovacuum off. Null, with the test marked skipped and the reason
   * printed, where auto_explain cannot be loaded.
   */
  async function claimWithPlans(t: TestContext, holder: Client, params: unknown[]): Promise<{ rows: { endpoint_id: string }[]; plans: string[] } | null> {
    try {
      await holder.query("LOAD 'auto_explain'");
    } catch (error) {
      t.skip(`auto_explain cannot be loaded on this server (${(error as Error).message}): the plans cannot be read`);
      return null;
    }
    const plans: string[] = [];
    const collect = (notice: { message?: string }) => plans.push(notice.message ?? '');
    holder.on('notice', collect);
    try {
      await holder.query('BEGIN');
      for (const setting of ['auto_explain.log_min_duration = 0', 'auto_explain.log_nested_statements = on', "auto_explain.log_level = 'notice'", 'plan_cache_mode = force_generic_plan']) {
        await holder.query(`SET LOCAL ${setting}`);
      }
      const { rows } = await holder.query<{ endpoint_id: string }>('SELECT * FROM hookrelay_claim($1, 60000, $2, $3, $4::text[], 100, $5::text[], $6::integer[], NULL, $7) WHERE NOT passed_over', [...params, CLAIM_LOCK_CLASS]);
      return { rows, plans };
    } finally {
      await holder.query('ROLLBACK');
      holder.off('notice', collect);
    }
  }

  /**
   * Storage on the suite's database, a second connection that plays another claimer, and one
   * endpoint with `count` messages due from `at` on. Closes both connections afterwards.
   */
  async function withDueBacklog(name: string, count: number, at: number, body: (s: { storage: Storage; holder: Client; appId: string; endpointId: string }) => Promise<void>) {
    const storage = await openStorage({ database: loadConfig({}, { databaseUrl: database.url }), secretBox: SECRET_BOX });
    const holder = new Client({ connectionString: database.url });
    await holder.connect();
    try {
      const app = await storage.applications.create({ name, uid: null, rateLimit: null, metadata: {} });
      const endpoint = await storage.endpoints.create(app.id, { url: `https://example.com/${encodeURIComponent(name)}`, uid: null, description: '', disabled: false, filterTypes: null, channels: null, rateLimit: null, metadata: {}, version: 1 }, {}, generateEndpointSecret());
      const items = Array.from({ length: count }, (_, i) => ({ message: { id: newId('msg', at + i), appId: app.id, eventType: 'a.b', eventId: null, payload: '{}', channels: null, tags: null, createdAt: at + i }, idempotency: null }));
      await storage.ingest.acceptBatch(items, (endpoints) => endpoints);
      await body({ storage, holder, appId: app.id, endpointId: endpoint.id });
    } finally {
      await holder.end();
      await storage.close();
    }
  }

  it('processes starting together apply each migration once, serialised by the advisory lock', async () => {
    const fresh = await createTestDatabase('postgres');
    try {
      const settings = loadConfig({}, { databaseUrl: fresh.url });
      const results = await Promise.all(Array.from({ length: 6 }, () => migrateDatabase(settings)));
      const versions = POSTGRES_MIGRATIONS.map((m) => m.version);
      assert.deepEqual(results.flat().sort((a, b) => a - b), versions, 'one migrator applied each version; the others found it done');
      const rows = (await fresh.dump())['schema_migrations'] as { version: number; name: string }[];
      assert.deepEqual(rows.sort((a, b) => a.version - b.version).map((r) => [r.version, r.name]), POSTGRES_MIGRATIONS.map((m) => [m.version, m.name]));
    } finally {
      await fresh.drop();
    }
  });

  it('`hookrelay migrate` applies the schema, then finds it up to date', () => {
    const env = { ...process.env, HOOKRELAY_DATABASE_URL: database.url, HOOKRELAY_DATA_DIR: database.dir, HOOKRELAY_LOG_LEVEL: 'warn' };
    const first = spawnSync(process.execPath, [CLI, 'migrate'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /applied migrations: 1/);
    const second = spawnSync(process.execPath, [CLI, 'migrate'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /up to date/);
  });

  it('a claim passes over rows another transaction holds, without waiting for it (FOR UPDATE SKIP LOCKED)', async () => {
    const now = Date.now();
    await withDueBacklog('locks', 10, now, async ({ storage, holder }) => {
      // Another claimer (here a bare transaction) holds the four oldest due rows.
      await holder.query('BEGIN');
      const held = (await holder.query<{ id: number }>('SELECT id FROM deliveries ORDER BY next_attempt_at LIMIT 4 FOR UPDATE')).rows.map((r) => Number(r.id));
      const claim = storage.deliveries.claimDue(now + 100, 60_000, 100, 100, []);
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the claim waited for the other transaction')), 5_000).unref());
      const claimed = await Promise.race([claim, timeout]);
      assert.equal(claimed.length, 6);
      assert.ok(claimed.every((c) => !held.includes(c.deliveryId)), 'no held row was claimed');
      await holder.query('COMMIT');
      const rest = await storage.deliveries.claimDue(now + 100, 60_000, 100, 100, []);
      assert.deepEqual(rest.map((c) => c.deliveryId).sort(), [...held].sort(), 'once released, the held rows are claimed');
    });
  });

  it('a claim whose candidates went stale before its locks reads the endpoint again, rather than coming back short', async () => {
    // Far in the past, so that these are the oldest due rows in the suite's shared database.
    const at = 1_000_000_000_000;
    await withDueBacklog('stale candidates', 12, at, async ({ storage, holder, endpointId }) => {
      // The three oldest are held by another writer, as rows another claimer leased between this
      // claim's read and its locks would be: the first lease by primary key takes only two of five.
      await holder.query('BEGIN');
      const held = (await holder.query<{ id: number }>('SELECT id FROM deliveries WHERE endpoint_id = $1 ORDER BY next_attempt_at LIMIT 3 FOR UPDATE', [endpointId])).rows.map((r) => Number(r.id));
      const claimed = (await storage.deliveries.claimDue(at + 100, 60_000, 5, 100, [], { inFlight: 100, passedOver: new Set() })).filter((c) => c.endpointId === endpointId);
      await holder.query('COMMIT');
      assert.equal(claimed.length, 5, 'a full batch, made up from the endpoint\'s next due rows');
      assert.ok(claimed.every((c) => !held.includes(c.deliveryId)), 'no held row was claimed');
      assert.equal(new Set(claimed.map((c) => c.deliveryId)).size, 5);
      // The suite's database is shared: leave nothing of this endpoint's due for the next test.
      await holder.query('DELETE FROM deliveries WHERE endpoint_id = $1', [endpointId]);
    });
  });

  it('a claim that leases nothing says when the next delivery falls due, in the same round trip', async () => {
    // Far in the future, so that nothing else in the suite's shared database is due before it.
    const at = 9_000_000_000_000;
    await withDueBacklog('next due', 2, at, async ({ storage, holder, endpointId }) => {
      const earliest = Number((await holder.query<{ t: string }>('SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = 1')).rows[0]!.t);
      const shared = { inFlight: 100, passedOver: new Set<string>() } as { inFlight: number; passedOver: Set<string>; nextDueAt?: number | null };
      assert.deepEqual(await storage.deliveries.claimDue(earliest - 1, 60_000, 100, 100, [], shared), []);
      assert.equal(shared.nextDueAt, earliest, 'the earliest pending delivery\'s due time');
      assert.equal(shared.nextDueAt, await storage.deliveries.nextDueAt(), 'as DeliveryStore.nextDueAt says');
      assert.deepEqual([...shared.passedOver], [], 'the report is not an endpoint passed over');

      const claimed = await storage.deliveries.claimDue(at + 100, 60_000, 100, 100, [], shared);
      assert.ok(claimed.filter((c) => c.endpointId === endpointId).length === 2);
      // The suite's database is shared: leave nothing of this endpoint's due for the next test.
      await holder.query('DELETE FROM deliveries WHERE endpoint_id = $1', [endpointId]);
    });
  });

  it('a claim tries the advisory lock on its candidates\' endpoints only, whatever plan PostgreSQL picks', async () => {
    const now = Date.now();
    await withDueBacklog('lock scope', 3, now, async ({ storage, holder, appId, endpointId }) => {
      const idle: string[] = [];
      for (let i = 0; i < 20; i++) {
        const endpoint = await storage.endpoints.create(appId, { url: `https://example.com/idle/${i}`, uid: null, description: '', disabled: false, filterTypes: null, channels: null, rateLimit: null, metadata: {}, version: 1 }, {}, generateEndpointSecret());
        idle.push(endpoint.id);
      }
      // Plans without index scans: the shape that a plan cached over nearly empty tables can take,
      // and the one under which a lock beside a join to endpoints was tried on every endpoint row.
      await holder.query('BEGIN');
      await holder.query('SET LOCAL enable_indexscan = off');
      await holder.query('SET LOCAL enable_bitmapscan = off');
      const claimed = await holder.query('SELECT * FROM hookrelay_claim($1, 60000, $2, 100, $3::text[], 100, $3::text[], $4::integer[], NULL, $5) WHERE NOT passed_over', [now + 100, 'lock-scope-test', [], [], CLAIM_LOCK_CLASS]);
      const locked = await holder.query<{ id: string }>(
        `SELECT e.id FROM endpoints e JOIN pg_locks l ON l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.classid = $1::bigint::oid
           AND l.objid::bigint = (hashtext(e.id)::bigint & 4294967295)`,
        [CLAIM_LOCK_CLASS],
      );
      await holder.query('ROLLBACK');
      const lockedIds = locked.rows.map((r) => r.id);
      assert.ok(claimed.rows.some((r: { endpoint_id: string }) => r.endpoint_id === endpointId), 'the due endpoint was claimed from');
      assert.ok(lockedIds.includes(endpointId), 'its lock is held until the claim\'s transaction ends');
      assert.deepEqual(lockedIds.filter((id) => idle.includes(id)), [], 'no endpoint without due work was locked');
      // The suite's database is shared: leave nothing of this endpoint's due for the next test.
      await holder.query('DELETE FROM deliveries WHERE endpoint_id = $1', [endpointId]);
    });
  });

  it('a claim leases its picked rows by primary key, also under a plan made before the tables had statistics', async (t) => {
    const now = Date.now();
    await withDueBacklog('lease plan', 3, now, async ({ holder, endpointId }) => {
      // Migration 6's lease, under such a plan, took deliveries_due for an id lookup (it cost the
      // same as the primary key over tiny tables) and walked every due row.
      try {
        const claimed = await claimWithPlans(t, holder, [now + 100, 'lease-plan-test', 100, [], [], []]);
        if (!claimed) return;
        assert.ok(claimed.rows.some((r) => r.endpoint_id === endpointId), 'the due endpoint was claimed from');
        const leasePlans = claimed.plans.filter((n) => n.includes('WITH leasing AS'));
        assert.ok(leasePlans.length > 0, 'the lease statement\'s plan was reported');
        for (const plan of leasePlans) {
          assert.deepEqual([...new Set(indexesScanned(plan))], ['deliveries_pkey'], `the lease reads rows by primary key only:\n${plan}`);
        }
      } finally {
        // The suite's database is shared: leave nothing of this endpoint's due for the next test.
        await holder.query('DELETE FROM deliveries WHERE endpoint_id = $1', [endpointId]);
      }
    });
  });

  it('a claim behind a passed-over endpoint\'s backlog reads the others endpoint by endpoint, by deliveries_due_by_endpoint alone, also under a generic plan', async (t) => {
    // Older than anything else the suite's shared database may hold due.
    const at = 500_000_000_000;
    await withDueBacklog('behind a backlog', 10, at, async ({ storage, holder, appId, endpointId: busy }) => {
      // Two later messages reach both endpoints: the busy one's ten older rows fill a walk of 4 per row wanted.
      const other = await storage.endpoints.create(appId, { url: 'https://example.com/behind', uid: null, description: '', disabled: false, filterTypes: null, channels: null, rateLimit: null, metadata: {}, version: 1 }, {}, generateEndpointSecret());
      const later = [100, 101].map((n) => ({ message: { id: newId('msg', at + n), appId, eventType: 'a.b', eventId: null, payload: '{}', channels: null, tags: null, createdAt: at + n }, idempotency: null }));
      await storage.ingest.acceptBatch(later, (endpoints) => endpoints);

      try {
        const claimed = await claimWithPlans(t, holder, [at + 1_000, 'behind-test', 2, [busy], [], []]);
        if (!claimed) return;
        assert.deepEqual(claimed.rows.map((r) => r.endpoint_id), [other.id, other.id], 'the other endpoint\'s two rows, from behind the passed-over backlog');
        const skipScans = claimed.plans.filter((n) => n.includes('WITH RECURSIVE ep'));
        assert.equal(skipScans.length, 1, 'the claim read endpoint by endpoint');
        assert.deepEqual([...new Set(indexesScanned(skipScans[0]!))], ['deliveries_due_by_endpoint'], `by deliveries_due_by_endpoint alone:\n${skipScans[0]}`);
      } finally {
        await holder.query('DELETE FROM deliveries WHERE endpoint_id = ANY ($1)', [[busy, other.id]]);
      }
    });
  });

  it('the per-endpoint cap counts every claimer\'s live leases, and skips an endpoint another claim holds', async () => {
    const now = Date.now();
    await withDueBacklog('busy', 10, now, async ({ storage, holder, appId, endpointId: busyId }) => {
      const lease = 60_000;

      // Claimer one takes the cap of 3; claimer two (same table, another "process") finds none left.
      const first = await storage.deliveries.claimDue(now + 100, lease, 100, 3, []);
      assert.equal(first.length, 3);
      const passedOver = new Set<string>();
      assert.deepEqual(await storage.deliveries.claimDue(now + 100, lease, 100, 3, [], { inFlight: 3, passedOver }), []);
      assert.deepEqual([...passedOver], [busyId], 'the claim says which endpoint it left due work behind at');

      // One outcome written frees one slot, whoever claims next.
      const [done, ...stillOut] = first;
      await storage.deliveries.complete([{ deliveryId: done!.deliveryId, leaseToken: done!.leaseToken, nextAttemptAt: null, health: 'success', attempt: { id: newId('atmpt'), msgId: done!.msgId, endpointId: busyId, appId, url: 'https://example.com/busy', status: 0, responseStatusCode: 200, response: '', responseDurationMs: 1, triggerType: 0, errorCode: null, createdAt: now + 200 } }], { disableAfterMs: null });
      assert.equal((await storage.deliveries.claimDue(now + 300, lease, 100, 3, [])).length, 1);

      // While another claim holds the endpoint's claim lock, this one skips it rather than counting at the same time.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [CLAIM_LOCK_CLASS, busyId]);
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the claim waited for the other transaction')), 5_000).unref());
      // (This suite's database also holds the other tests' deliveries: only this endpoint's count here.)
      const whileHeld = await Promise.race([storage.deliveries.claimDue(now + lease + 400, lease, 100, 10, [], { inFlight: 10, passedOver: new Set() }), timeout]);
      assert.deepEqual(whileHeld.filter((c) => c.endpointId === busyId), []);
      await holder.query('COMMIT');

      // Leases that lapsed (a crashed claimer) no longer count: their rows are due and the slots free.
      const afterLapse = (await storage.deliveries.claimDue(now + lease + 500, lease, 100, 10, [])).filter((c) => c.endpointId === busyId);
      assert.equal(afterLapse.length, 9, 'every delivery but the finished one');
      assert.ok(stillOut.every((c) => afterLapse.some((a) => a.deliveryId === c.deliveryId)), 'the lapsed claims are among those taken again');
    });
  });

  it('text PostgreSQL cannot store (the NUL character) is refused as bad input, not a 500, even past the API check', async () => {
    const h = await startHarness({ engine: 'postgres' });
    try {
      // The API refuses it in bodies, paths and query parameters on both engines alike
      // (test/api-bad-input). Should any reach the database, its refusal is still the client's mistake.
      const refused = await h.storage.applications.find('nul\u0000inside').then(() => null, (error: unknown) => error);
      assert.ok(refused, 'PostgreSQL refuses the parameter');
      assert.deepEqual(toApiError(refused).toJSON(), { code: 'bad_request', detail: 'Text fields cannot contain the NUL character (U+0000)' });
      const app = await h.request('POST', '/api/v1/app', { body: { name: 'fine' } });
      const msg = await h.request('POST', `/api/v1/app/${app.body.id}/msg`, { body: { eventType: 'a.b', payload: { text: 'nul \u0000 inside' } } });
      assert.equal(msg.status, 202, 'a payload keeps it: payloads are stored as serialized JSON, where it is escaped');
      assert.equal((await h.request('GET', `/api/v1/app/${app.body.id}/msg/${msg.body.id}`)).body.payload.text, 'nul \u0000 inside');
    } finally {
      await h.close();
    }
  });

  it('a server that accepts the connection and never answers fails the connect after HOOKRELAY_PG_CONNECT_TIMEOUT', async () => {
    // A TCP listener on loopback that swallows everything: as a PostgreSQL behind a black-holing network looks.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    const pool = createPostgresPool({ url: `postgres://postgres@127.0.0.1:${port}/test`, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 300 });
    try {
      await assert.rejects(pool.query('SELECT 1'), /connection timeout/, 'failed by the connect timeout, not by the kernel minutes later');
      assert.ok(sockets.size >= 1, 'the pool did reach the listener');
    } finally {
      await pool.end();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('pooled connections carry the statement timeout, and one dropped while idle is replaced', async () => {
    const idleErrors: Error[] = [];
    const pool = createPostgresPool({ url: database.url, poolSize: 2, statementTimeoutMs: 300, connectTimeoutMs: 10_000, onIdleError: (error) => idleErrors.push(error) });
    try {
      assert.equal((await pool.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout, '300ms');
      await assert.rejects(pool.query('SELECT pg_sleep(5)'), (error: unknown) => (error as { code?: string }).code === '57014', 'canceled by statement_timeout');
      const { pid } = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!;
      const admin = new Client({ connectionString: database.url });
      await admin.connect();
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await admin.end();
      await waitFor('the pool to notice the dropped connection', () => idleErrors.length > 0);
      assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1, 'the pool opened a fresh connection');
    } finally {
      await pool.end();
    }
  });

  it('commits wait for the disk flush, except on a dispatcher\'s pool (leases and outcomes only)', async () => {
    const acceptance = createPostgresPool({ url: database.url, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 10_000 });
    const dispatcher = createPostgresPool({ url: database.url, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 10_000, flushCommits: false });
    try {
      const setting = async (pool: typeof acceptance) => (await pool.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit;
      assert.equal(await setting(acceptance), 'on', 'a 202 waits for its commit to be on disk');
      assert.equal(await setting(dispatcher), 'off');
    } finally {
      await acceptance.end();
      await dispatcher.end();
    }
  });

  it('`hookrelay serve` on PostgreSQL keeps its files in HOOKRELAY_DATA_DIR and warns that the master key must be shared', async (t) => {
    const fresh = await createTestDatabase('postgres');
    // Empty values stand for unset, whatever the developer's shell exports.
    const server = await spawnServer({ HOOKRELAY_DATABASE_URL: fresh.url, HOOKRELAY_DATA_DIR: fresh.dir, HOOKRELAY_MASTER_KEY: '', HOOKRELAY_API_KEY: '' }, await freePort());
    t.after(async () => {
      server.child.kill('SIGKILL');
      await server.exited;
      await fresh.drop();
    });
    assert.equal(statSync(join(fresh.dir, 'master.key')).mode & 0o777, 0o600);
    assert.match(server.output(), /every process sharing this PostgreSQL database must use this same key/);
    const key = readFileSync(join(fresh.dir, 'initial-api-key'), 'utf8').trim();
    const res = await fetch(server.url + '/api/v1/app', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'on postgres' }) });
    assert.equal(res.status, 201);
    const rows = (await fresh.dump())['applications'] as { name: string; created_at: number }[];
    assert.deepEqual(rows.map((r) => r.name), ['on postgres'], 'written to the PostgreSQL database');
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, 'SIGTERM drains and exits 0');
  });
});
