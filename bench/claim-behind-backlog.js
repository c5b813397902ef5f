// How long one claim takes on SQLite when an endpoint it passes over (saturated) has a backlog of
// older due rows: `node bench/claim-behind-backlog.js [rows...]` (default 10000 200000 1000000;
// build first). Each size gets a fresh database file in the temp directory: `rows` due rows at the
// passed-over endpoint, 100 later ones at another; claims of 100 with a cap of 20, three each.
// With BENCH_POSTGRES_URL (a server URL), the same against a fresh PostgreSQL database per size.
// Bounded: the sizes given, three claims each. See docs/delivery.md ("Backlogs").
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dist = new URL('../packages/hookrelay/dist/src/', import.meta.url);
const { openStorage } = await import(new URL('storage/open-storage.js', dist));
const { loadConfig } = await import(new URL('config/config.js', dist));
const { SecretBox } = await import(new URL('secrets/secret-box.js', dist));
const Database = createRequire(new URL('../packages/hookrelay/package.json', import.meta.url))('better-sqlite3');

const sizes = process.argv.slice(2).map(Number);
const secretBox = new SecretBox(createHash('sha256').update('bench').digest());
const t0 = 1_000_000_000_000;

/** A fresh SQLite file with the backlog; returns the database URL and a cleanup. */
async function sqliteWithBacklog(rows) {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-claim-'));
  const path = join(dir, 'claim.db');
  await (await openStorage({ database: loadConfig({}, { databaseUrl: `sqlite:${path}` }), secretBox })).close();
  const db = new Database(path);
  db.exec(`INSERT INTO applications (id, name, metadata, created_at, updated_at) VALUES ('app_bench', 'bench', '{}', 0, 0)`);
  db.exec(`INSERT INTO endpoints (id, app_id, url, created_at, updated_at) VALUES ('ep_saturated', 'app_bench', 'https://a.example', 0, 0), ('ep_other', 'app_bench', 'https://b.example', 0, 0)`);
  const message = db.prepare(`INSERT INTO messages (id, app_id, event_type, payload, created_at) VALUES (?, 'app_bench', 'a.b', '{}', ?)`);
  const delivery = db.prepare(`INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, trigger_type, created_at, updated_at) VALUES (?, ?, 'app_bench', 1, 0, ?, 0, ?, ?)`);
  db.transaction(() => {
    for (let i = 0; i < rows + 100; i++) {
      const at = t0 + i;
      message.run(`msg_${i}`, at);
      delivery.run(`msg_${i}`, i < rows ? 'ep_saturated' : 'ep_other', at, at, at);
    }
  })();
  db.close();
  return { url: `sqlite:${path}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
}

/** A fresh PostgreSQL database (on BENCH_POSTGRES_URL's server) with the backlog, analysed. */
async function postgresWithBacklog(rows) {
  const { default: pg } = await import('pg');
  const name = `hookrelay_claim_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: process.env.BENCH_POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(process.env.BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  await (await openStorage({ database: loadConfig({}, { databaseUrl: url.toString() }), secretBox })).close();
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  await db.query(`INSERT INTO applications (id, name, metadata, created_at, updated_at) VALUES ('app_bench', 'bench', '{}', 0, 0)`);
  await db.query(`INSERT INTO endpoints (id, app_id, url, created_at, updated_at) VALUES ('ep_saturated', 'app_bench', 'https://a.example', 0, 0), ('ep_other', 'app_bench', 'https://b.example', 0, 0)`);
  await db.query(`INSERT INTO messages (id, app_id, event_type, payload, created_at) SELECT 'msg_' || i, 'app_bench', 'a.b', '{}', $1::bigint + i FROM generate_series(0, $2::int - 1) i`, [t0, rows + 100]);
  await db.query(`INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, trigger_type, created_at, updated_at)
    SELECT 'msg_' || i, CASE WHEN i < $2::int THEN 'ep_saturated' ELSE 'ep_other' END, 'app_bench', 1, 0, $1::bigint + i, 0, $1::bigint + i, $1::bigint + i FROM generate_series(0, $2::int + 99) i`, [t0, rows]);
  await db.query('ANALYZE');
  await db.end();
  return { url: url.toString(), drop: async () => { await admin.query(`DROP DATABASE ${name} WITH (FORCE)`); await admin.end(); } };
}

// BENCH_POSTGRES_URL measures PostgreSQL's claim (hookrelay_claim) instead of SQLite's.
const engine = process.env.BENCH_POSTGRES_URL ? 'PostgreSQL' : 'SQLite';
for (const rows of sizes.length > 0 ? sizes : [10_000, 200_000, 1_000_000]) {
  const database = engine === 'PostgreSQL' ? await postgresWithBacklog(rows) : await sqliteWithBacklog(rows);
  const storage = await openStorage({ database: loadConfig({}, { databaseUrl: database.url }), secretBox });
  const times = [];
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    const claimed = await storage.deliveries.claimDue(t0 + rows + 1_000, 60_000, 100, 20, ['ep_saturated']);
    times.push(performance.now() - started);
    if (claimed.length !== 20 || claimed.some((c) => c.endpointId !== 'ep_other')) throw new Error(`unexpected claim: ${claimed.length} rows`);
    await storage.deliveries.release(claimed);
  }
  await storage.close();
  await database.drop();
  console.log(`${engine}, ${rows} due rows at a passed-over endpoint: claim ${times.map((t) => t.toFixed(1)).join(' / ')} ms`);
}
