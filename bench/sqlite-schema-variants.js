// What the SQLite schema costs the hot path, per delivery, and what leaner schemas would save.
// `node bench/sqlite-schema-variants.js` (build first). A model of one delivery's statements, run
// in one thread on a fresh SQLite file per case with the server's pragmas: the publish group's
// transaction (message row, the application's endpoints read, a delivery row already leased, as
// a handoff writes it; groups of VARIANTS_GROUP) and the outcome batch's (attempt row, delivery
// finished; batches of 256), with a RESTART checkpoint every 50 groups. It prints the CPU per
// delivery of each transaction kind, and the WAL frames (4 KiB pages) written per delivery. The schema is 0001-initial plus 0007's index, reduced to
// what these statements touch. Variants, each alone and together:
//   msg    messages without the text primary key: UNIQUE (app_id, id), which also serves listing
//          by application, and deliveries referencing (app_id, msg_id);
//   att    attempts without the text primary key: UNIQUE (msg_id, id) instead of attempts_by_msg;
//   lease  leased deliveries in a status of their own (3, Svix's "sending") with one small index
//          of their own, out of deliveries_due and deliveries_due_by_endpoint (landed: migration 10);
//   nofk   foreign keys off;
//   noepd, noapp, noatte   without deliveries_by_endpoint, messages_by_app or attempts_by_endpoint
//          (what each index keyed by endpoint or application costs; the API needs all three);
//   intkeys those three indexes keyed by the application's or endpoint's number (an integer column
//          in the row) and the rowid, instead of the 30-character ids: smaller entries, fewer splits;
//   defer  (session 15) a handed-off delivery's row written with its outcome, not at publish: the
//          message carries its fan-out (the endpoints handed off) and an open mark in a small partial
//          index, which a restart would read to recreate the rows; the outcome batch inserts the
//          finished delivery row and clears the mark.
// VARIANTS_CASES picks the cases (comma-separated, variants joined by +). With VARIANTS_FRAMES=1 it
// counts instead the WAL frames each kind of commit writes: a PASSIVE checkpoint after every
// commit empties the WAL, so that the next commit's frames can be read off alone (the CPU figures
// of that mode are not comparable and are not printed).
// Cases run in turn, twice (the machine's speed drifts); no network; bounded by VARIANTS_DELIVERIES.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { newId } from '../packages/hookrelay/dist/src/core/ids.js';

const DELIVERIES = Number(process.env.VARIANTS_DELIVERIES ?? 60_000);
const GROUP = Number(process.env.VARIANTS_GROUP ?? 64);
const APPS = 10;
const OUTCOME_BATCH = 256;
const CASES = (process.env.VARIANTS_CASES ?? 'base,msg,att,lease,msg+att+lease,nofk').split(',');
const COUNT_FRAMES = process.env.VARIANTS_FRAMES === '1';
const PAYLOAD = JSON.stringify({ id: 1, amount: 1999, currency: 'EUR' });

function schema(v) {
  const msgPk = !v.has('msg');
  const attPk = !v.has('att');
  const intKeys = v.has('intkeys');
  const byKey = (index, table, textKey, intKey) => `CREATE INDEX ${index} ON ${table} (${intKeys ? intKey : textKey});`;
  return `
CREATE TABLE applications (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE endpoints (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE, url TEXT, disabled INTEGER NOT NULL DEFAULT 0, updated_at INTEGER);
CREATE TABLE messages (id TEXT ${msgPk ? 'PRIMARY KEY' : 'NOT NULL'}, app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE, event_type TEXT NOT NULL, event_id TEXT,
  payload TEXT NOT NULL, channels TEXT, tags TEXT, created_at INTEGER NOT NULL, expunged_at INTEGER ${intKeys ? ', app_no INTEGER' : ''} ${v.has('defer') ? ', fanout TEXT, fanout_open INTEGER' : ''} ${msgPk ? '' : ', UNIQUE (app_id, id)'});
${v.has('defer') ? 'CREATE INDEX messages_fanout_open ON messages (fanout_open) WHERE fanout_open IS NOT NULL;' : ''}
CREATE UNIQUE INDEX messages_unique_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
${msgPk && !v.has('noapp') ? byKey('messages_by_app', 'messages', 'app_id, id', 'app_no') : ''}
CREATE TABLE deliveries (id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL ${msgPk ? 'REFERENCES messages(id) ON DELETE CASCADE' : ''},
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE, app_id TEXT NOT NULL, status INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER, lease_token TEXT, trigger_type INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, ${intKeys ? 'endpoint_no INTEGER,' : ''}
  UNIQUE (msg_id, endpoint_id) ${msgPk ? '' : ', FOREIGN KEY (app_id, msg_id) REFERENCES messages (app_id, id) ON DELETE CASCADE'});
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, endpoint_id) WHERE status = 1;
${v.has('noepd') ? '' : byKey('deliveries_by_endpoint', 'deliveries', 'endpoint_id', 'endpoint_no')}
CREATE INDEX deliveries_due_by_endpoint ON deliveries (endpoint_id, next_attempt_at) WHERE status = 1;
${v.has('lease') ? 'CREATE INDEX deliveries_leased ON deliveries (next_attempt_at) WHERE status = 3;' : ''}
CREATE TABLE attempts (id TEXT ${attPk ? 'PRIMARY KEY' : 'NOT NULL'}, msg_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, app_id TEXT NOT NULL, url TEXT NOT NULL,
  status INTEGER NOT NULL, response_status_code INTEGER NOT NULL, response TEXT NOT NULL, response_duration_ms INTEGER NOT NULL, trigger_type INTEGER NOT NULL,
  error_code TEXT, created_at INTEGER NOT NULL ${intKeys ? ', endpoint_no INTEGER' : ''});
${v.has('noatte') ? '' : byKey('attempts_by_endpoint', 'attempts', 'endpoint_id, id', 'endpoint_no')}
CREATE ${attPk ? '' : 'UNIQUE'} INDEX attempts_by_msg ON attempts (msg_id, id);`;
}

function cpuMicros(since) {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

function run(name) {
  const v = new Set(name.split('+'));
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-variants-'));
  const db = new Database(join(dir, 'db.sqlite'));
  for (const pragma of ['journal_mode = WAL', 'synchronous = NORMAL', `foreign_keys = ${v.has('nofk') ? 'OFF' : 'ON'}`, 'cache_size = -65536', 'wal_autocheckpoint = 65536', 'temp_store = MEMORY', 'mmap_size = 0']) db.pragma(pragma);
  db.exec(schema(v));
  const apps = [];
  const endpoints = [];
  for (let a = 0; a < APPS; a++) {
    apps.push(newId('app'));
    endpoints.push(newId('ep'));
    db.prepare('INSERT INTO applications VALUES (?, ?)').run(apps[a], 'bench');
    db.prepare('INSERT INTO endpoints VALUES (?, ?, ?, 0, 1)').run(endpoints[a], apps[a], 'http://127.0.0.1:1/');
  }
  // intkeys: each row also carries its application's or endpoint's number (here its index in apps).
  const keyColumn = (name) => (v.has('intkeys') ? [`, ${name}`, ', ?'] : ['', '']);
  const keyValue = (a) => (v.has('intkeys') ? [a] : []);
  const [appNo, appNoValue] = keyColumn('app_no');
  const [endpointNo, endpointNoValue] = keyColumn('endpoint_no');
  const defer = v.has('defer');
  const [fanoutColumns, fanoutValues] = defer ? [', fanout, fanout_open', ', ?, ?'] : ['', ''];
  const insertMessage = db.prepare(`INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at${appNo}${fanoutColumns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?${appNoValue}${fanoutValues}) ON CONFLICT DO NOTHING`);
  const closeFanout = defer ? db.prepare('UPDATE messages SET fanout_open = NULL WHERE id = ?') : null;
  const selectEndpoints = db.prepare('SELECT * FROM endpoints WHERE app_id = ? AND disabled = 0');
  const insertDelivery = db.prepare(
    `INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, lease_token, trigger_type, created_at, updated_at${endpointNo}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?${endpointNoValue})`,
  );
  const insertAttempt = db.prepare(
    `INSERT INTO attempts (id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, response_duration_ms, trigger_type, error_code, created_at${endpointNo}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?${endpointNoValue}) ON CONFLICT ${v.has('att') ? '(msg_id, id)' : '(id)'} DO NOTHING`,
  );
  const finish = db.prepare('UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = NULL, lease_token = NULL, updated_at = ? WHERE id = ? AND lease_token = ?');
  const transaction = (work) => db.transaction(work).immediate();
  let ingestMicros = 0;
  let outcomeMicros = 0;
  let unfinished = [];
  let walFrames = 0;
  // VARIANTS_FRAMES: frames of each commit kind, read off an emptied WAL (see the top).
  const commitFrames = { publish: 0, publishCommits: 0, outcome: 0, outcomeCommits: 0 };
  const framesSinceEmptied = () => db.pragma('wal_checkpoint(PASSIVE)')[0].log;
  for (let written = 0, groups = 0; written < DELIVERIES; written += GROUP, groups++) {
    const ingestStarted = process.cpuUsage();
    const token = randomUUID();
    const now = Date.now();
    transaction(() => {
      const seenApps = new Set();
      for (let i = 0; i < GROUP; i++) {
        const a = (written + i) % APPS;
        const msgId = newId('msg');
        insertMessage.run(msgId, apps[a], 'order.created', null, PAYLOAD, null, null, now, ...keyValue(a), ...(defer ? [endpoints[a], now + 60_000] : []));
        // As the ingest store: one read of an application's endpoints per group.
        if (!seenApps.has(a)) {
          seenApps.add(a);
          selectEndpoints.all(apps[a]);
        }
        if (defer) {
          unfinished.push({ id: null, msgId, a, token });
          continue;
        }
        const { lastInsertRowid } = insertDelivery.run(msgId, endpoints[a], apps[a], v.has('lease') ? 3 : 1, 0, now + 60_000, token, 0, now, now, ...keyValue(a));
        unfinished.push({ id: Number(lastInsertRowid), msgId, a, token });
      }
    });
    ingestMicros += cpuMicros(ingestStarted);
    if (COUNT_FRAMES) {
      commitFrames.publish += framesSinceEmptied();
      commitFrames.publishCommits++;
    }
    if (unfinished.length >= OUTCOME_BATCH) {
      const outcomeStarted = process.cpuUsage();
      const batch = unfinished;
      unfinished = [];
      transaction(() => {
        const at = Date.now();
        for (const d of batch) insertAttempt.run(newId('atmpt'), d.msgId, endpoints[d.a], apps[d.a], 'http://127.0.0.1:1/', 0, 200, 'ok', 1, 0, null, at, ...keyValue(d.a));
        for (const d of batch) {
          if (!defer) {
            finish.run(0, at, d.id, d.token);
            continue;
          }
          insertDelivery.run(d.msgId, endpoints[d.a], apps[d.a], 0, 1, null, null, 0, at, at, ...keyValue(d.a));
          closeFanout.run(d.msgId);
        }
      });
      outcomeMicros += cpuMicros(outcomeStarted);
      if (COUNT_FRAMES) {
        commitFrames.outcome += framesSinceEmptied();
        commitFrames.outcomeCommits++;
      }
    }
    if (groups % 50 === 49) walFrames += db.pragma('wal_checkpoint(RESTART)')[0].log;
  }
  walFrames += db.pragma('wal_checkpoint(RESTART)')[0].log;
  db.close();
  rmSync(dir, { recursive: true, force: true });
  if (COUNT_FRAMES) {
    return { publishCommit: commitFrames.publish / commitFrames.publishCommits, outcomeCommit: commitFrames.outcome / Math.max(1, commitFrames.outcomeCommits), perDelivery: (commitFrames.publish + commitFrames.outcome) / DELIVERIES };
  }
  return { ingest: ingestMicros / DELIVERIES, outcome: outcomeMicros / DELIVERIES, walFrames: walFrames / DELIVERIES };
}

if (COUNT_FRAMES) {
  console.log(`${DELIVERIES} deliveries per case, groups of ${GROUP} over ${APPS} applications, outcome batches of ${OUTCOME_BATCH}; WAL frames each commit writes`);
  for (const name of CASES) {
    const r = run(name);
    console.log(`${name.padEnd(15)} publish group ${r.publishCommit.toFixed(1)}   outcome batch ${r.outcomeCommit.toFixed(1)}   per delivery ${r.perDelivery.toFixed(2)}`);
  }
} else {
  const results = new Map(CASES.map((name) => [name, []]));
  for (let pass = 0; pass < 2; pass++) for (const name of CASES) results.get(name).push(run(name));
  console.log(`${DELIVERIES} deliveries per case, groups of ${GROUP}, outcome batches of ${OUTCOME_BATCH}; CPU µs per delivery (pass 1 / pass 2), WAL frames (pages written) per delivery`);
  for (const [name, [a, b]] of results) {
    const f = (x) => x.toFixed(1);
    console.log(`${name.padEnd(15)} publish ${f(a.ingest)} / ${f(b.ingest)}   outcome ${f(a.outcome)} / ${f(b.outcome)}   both ${f(a.ingest + a.outcome)} / ${f(b.ingest + b.outcome)}   WAL frames ${a.walFrames.toFixed(2)}`);
  }
}
