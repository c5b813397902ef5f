// What retention costs per expired delivery, and how that depends on the rows it must keep.
// `node bench/retention.js` (build first). For each case it writes, straight into a fresh SQLite
// file, RETENTION_MESSAGES expired messages (default 50,000) with RETENTION_FAN_OUT deliveries
// each (finished, one attempt each), behind RETENTION_PENDING older messages whose one delivery
// is still pending (a dead endpoint's retries outliving the retention). Then it deletes everything
// expired through the retention store in batches of RETENTION_BATCH (default 500), as one sweep
// does: once with the sweep's cursor (what the sweeper does), once without it (each batch walks
// from the oldest rows). Prints the CPU per deleted delivery (its message and attempt included)
// and the time per batch, which is how long each batch holds SQLite's write lock.
// No network; bounded by the row counts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { newId } from '../packages/hookrelay/dist/src/core/ids.js';
import { SecretBox } from '../packages/hookrelay/dist/src/secrets/secret-box.js';
import { openStorage } from '../packages/hookrelay/dist/src/storage/open-storage.js';
import { newRetentionCursor } from '../packages/hookrelay/dist/src/storage/storage.js';

const MESSAGES = Number(process.env.RETENTION_MESSAGES ?? 50_000);
const BATCH = Number(process.env.RETENTION_BATCH ?? 500);
const CASES = process.env.RETENTION_FAN_OUT || process.env.RETENTION_PENDING
  ? [{ fanOut: Number(process.env.RETENTION_FAN_OUT ?? 1), pending: Number(process.env.RETENTION_PENDING ?? 0) }]
  : [{ fanOut: 1, pending: 0 }, { fanOut: 4, pending: 0 }, { fanOut: 1, pending: MESSAGES }];

async function run({ fanOut, pending }, withCursor) {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-retention-'));
  const path = join(dir, 'hookrelay.db');
  const settings = { databaseUrl: `sqlite:${path}`, syncCommit: false, pgPoolSize: 1, pgStatementTimeoutMs: 1000, pgConnectTimeoutMs: 1000 };
  const storage = await openStorage({ database: settings, secretBox: new SecretBox(randomBytes(32)), migrate: true });
  const now = Date.now();
  const hourAgo = now - 3_600_000;
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.prepare('INSERT INTO applications (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)').run('app_bench', 'bench', hourAgo, hourAgo);
  const endpoints = Array.from({ length: 10 * fanOut }, (_, i) => `ep_bench${i}`);
  for (const id of endpoints) db.prepare('INSERT INTO endpoints (id, app_id, url, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').run(id, 'app_bench', 'http://127.0.0.1/hook', hourAgo, hourAgo);
  const insertMessage = db.prepare('INSERT INTO messages (id, app_id, event_type, payload, created_at) VALUES (?, ?, ?, ?, ?)');
  const insertDelivery = db.prepare('INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const insertAttempt = db.prepare(
    'INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  db.transaction(() => {
    // The pending ones are the oldest: they sit at the low end of every walk.
    for (let i = 0; i < pending + MESSAGES; i++) {
      const at = hourAgo + Math.floor(i / 10);
      const msgId = newId('msg', at);
      const isPending = i < pending;
      insertMessage.run(msgId, 'app_bench', 'order.created', '{"n":1}', at);
      for (let f = 0; f < (isPending ? 1 : fanOut); f++) {
        const endpoint = endpoints[(i % 10) * fanOut + f];
        insertDelivery.run(msgId, endpoint, 'app_bench', isPending ? 1 : 0, 1, isPending ? now + 86_400_000 : null, at, at);
        insertAttempt.run(newId('atmpt', at), msgId, endpoint, 'app_bench', 'http://127.0.0.1/hook', 1, 500, 'oops', 1, 0, at);
      }
    }
  })();
  db.close();

  const cursor = withCursor ? newRetentionCursor() : undefined;
  const deleted = { messages: 0, deliveries: 0, attempts: 0 };
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  let batches = 0;
  for (;;) {
    const batch = await storage.retention.deleteExpiredBatch(now - 60_000, now, BATCH, cursor);
    batches++;
    for (const kind of Object.keys(deleted)) deleted[kind] += batch[kind];
    if (Object.values(batch).every((n) => n < BATCH)) break;
  }
  const cpu = process.cpuUsage(cpuBefore);
  const elapsed = performance.now() - started;
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
  if (deleted.deliveries !== MESSAGES * fanOut || deleted.messages !== MESSAGES) throw new Error(`deleted ${JSON.stringify(deleted)}, expected ${MESSAGES} messages`);
  return { usPerDelivery: (cpu.user + cpu.system) / deleted.deliveries, msPerBatch: elapsed / batches, batches };
}

for (const c of CASES) {
  for (const withCursor of [true, false]) {
    const r = await run(c, withCursor);
    console.log(
      `retention, fan-out ${c.fanOut}, ${c.pending} pending ahead, ${withCursor ? "with the sweep's cursor" : 'each batch from the oldest rows'}: ` +
        `${r.usPerDelivery.toFixed(1)} µs CPU per deleted delivery, ${r.msPerBatch.toFixed(1)} ms per batch (${r.batches} batches of ${BATCH})`,
    );
  }
}
