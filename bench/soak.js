// A soak run: steady traffic for minutes against endpoints that misbehave in the usual ways, to see
// what only time shows: memory that grows, a WAL or a backlog that does not come back down,
// deliveries that never arrive. `node bench/soak.js` (build first). Prints a sample every
// SOAK_SAMPLE_SECONDS, then a summary; exits 1 if a message is missing at an endpoint that answers.
//
// One `hookrelay serve` on a fresh SQLite file, retry schedule 0,1s,2s,4s,8s, request timeout 3 s,
// retention SOAK_RETENTION (default 2m, so that the sweeper deletes while traffic flows). Each of
// SOAK_APPS applications (default 4) has four endpoints on a receiver in this process:
//   ok         200 at once;
//   flaky      500 to a message's first two attempts, 200 to the third;
//   throttled  503 with Retry-After: 1 to a message's first attempt, 200 afterwards;
//   slow       200 after 200 ms (its cap of 20 requests in flight still keeps up with its share);
// and one more application, which gets every SOAK_DEAD_EVERY-th message (default 200), has an
// endpoint that never answers (each attempt times out; its deliveries end failed; its cap of 20
// requests in flight for 3 s each keeps up with that share). SOAK_RATE messages/s (default 250,
// so 1,000 deliveries/s before retries) for SOAK_SECONDS (default 300); latencies leave out the
// first SOAK_WARMUP_SECONDS (10). SOAK_KINDS picks the kinds (see KINDS below).
// Bounded by count and a deadline; 127.0.0.1 only.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort, processCpuMs } from './processes.js';

const RATE = Number(process.env.SOAK_RATE ?? 250);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
const APPS = Number(process.env.SOAK_APPS ?? 4);
const SAMPLE_SECONDS = Number(process.env.SOAK_SAMPLE_SECONDS ?? 15);
const RETENTION = process.env.SOAK_RETENTION ?? '2m';
/** Every how many messages one goes to the application whose endpoint never answers (0: none). */
const DEAD_EVERY = Number(process.env.SOAK_DEAD_EVERY ?? 200);
const DRAIN_SECONDS = 120;
/**
 * Messages published in the first seconds are delivered but left out of the latency figures: a
 * cold process (JIT, first connections) answered them 100-800 ms late for about 2 s at 450/s.
 */
const WARMUP_MS = Number(process.env.SOAK_WARMUP_SECONDS ?? 10) * 1000;
const CLI = fileURLToPath(new URL('../packages/hookrelay/dist/src/cli/main.js', import.meta.url));
const TOKEN = 'soak-token';
/**
 * The endpoint kinds of each application (SOAK_KINDS, comma-separated); a kind whose name is none
 * of the above answers as `ok` does, so `SOAK_KINDS=ok,ok2,ok3,ok4 SOAK_DEAD_EVERY=0` is the same
 * load with nothing misbehaving: the baseline that shows whether misbehaving endpoints hold the
 * healthy one back.
 */
const KINDS = (process.env.SOAK_KINDS ?? 'ok,flaky,throttled,slow').split(',');
const deadline = Date.now() + (SECONDS + DRAIN_SECONDS + 60) * 1000;

// The endpoint that never answers holds a slot for the whole timeout on each of its 5 attempts
// (schedule and timeout below). Past its cap (the default 20 in flight) its backlog can only grow,
// which is the server doing its job, not a fault; but then the due backlog and the oldest due age
// in the samples are its backlog, so say so up front (session 15 ran into it at SOAK_RATE=600).
const RETRY_SCHEDULE = '0,1s,2s,4s,8s';
const REQUEST_TIMEOUT_SECONDS = 3;
/** The server's default HOOKRELAY_ENDPOINT_CONCURRENCY. */
const ENDPOINT_CAP = 20;
const SLOT_SECONDS_PER_DEAD_MESSAGE = RETRY_SCHEDULE.split(',').length * REQUEST_TIMEOUT_SECONDS;
const DEAD_SLOT_SECONDS_PER_SECOND = DEAD_EVERY > 0 ? (RATE / DEAD_EVERY) * SLOT_SECONDS_PER_DEAD_MESSAGE : 0;
if (DEAD_SLOT_SECONDS_PER_SECOND > ENDPOINT_CAP) {
  console.error(
    `note: the never-answering endpoint gets ${RATE / DEAD_EVERY} messages/s, each holding a slot for up to ${SLOT_SECONDS_PER_DEAD_MESSAGE} s: ` +
      `${DEAD_SLOT_SECONDS_PER_SECOND} slot-seconds/s against its cap of ${ENDPOINT_CAP}, so its backlog will grow ` +
      `(raise SOAK_DEAD_EVERY to ${Math.ceil((RATE * SLOT_SECONDS_PER_DEAD_MESSAGE) / ENDPOINT_CAP)} or more to keep up)`,
  );
}

// --- the receiver: per kind, how many 2xx each message got ---
const answered = new Map(KINDS.map((k) => [k, new Map()]));
/** Per kind, publish-to-first-2xx milliseconds of each message (the payload carries its publish time). */
const firstLatencies = new Map(KINDS.map((k) => [k, []]));
const seenByThrottled = new Set();
const flakyAttempts = new Map();
let hung = 0;
const receiver = createServer((req, res) => {
  const kind = req.url.split('/')[1];
  const msgId = req.headers['webhook-id'];
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const ok = () => {
      const counts = answered.get(kind);
      const seen = counts.get(msgId) ?? 0;
      if (seen === 0) {
        const at = JSON.parse(Buffer.concat(chunks).toString()).at;
        const latency = Date.now() - at;
        if (at - t0 >= WARMUP_MS) firstLatencies.get(kind).push(latency);
        if (process.env.SOAK_TIMELINE && latency > 100) console.log(`slow ${kind} published at +${at - t0} ms: ${latency} ms`);
      }
      counts.set(msgId, seen + 1);
      res.writeHead(200, { 'content-length': '2' }).end('ok');
    };
    if (kind === 'dead') return void hung++; // never answered; Hookrelay's timeout ends it
    if (kind === 'flaky') {
      const attempts = (flakyAttempts.get(msgId) ?? 0) + 1;
      flakyAttempts.set(msgId, attempts);
      if (attempts <= 2) return void res.writeHead(500).end('flaky');
    }
    if (kind === 'throttled' && !seenByThrottled.has(msgId)) {
      seenByThrottled.add(msgId);
      return void res.writeHead(503, { 'retry-after': '1' }).end('later');
    }
    if (kind === 'slow') return void setTimeout(ok, 200);
    ok();
  });
});
receiver.keepAliveTimeout = 60_000;
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}`;

// --- the server ---
const dataDir = mkdtempSync(join(tmpdir(), 'hookrelay-soak-'));
const dbPath = join(dataDir, 'soak.db');
const port = await freePort();
const child = spawn(process.execPath, [CLI, 'serve'], {
  env: {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    HOOKRELAY_API_KEY: TOKEN,
    HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32',
    HOOKRELAY_LOG_LEVEL: process.env.SOAK_LOG_LEVEL ?? 'error',
    HOOKRELAY_DATABASE_URL: `sqlite:${dbPath}`,
    HOOKRELAY_MASTER_KEY: randomBytes(32).toString('base64'),
    HOOKRELAY_RETRY_SCHEDULE: RETRY_SCHEDULE,
    HOOKRELAY_REQUEST_TIMEOUT: `${REQUEST_TIMEOUT_SECONDS}s`,
    HOOKRELAY_LEASE: '10s',
    HOOKRELAY_RETENTION: RETENTION,
    HOOKRELAY_RETENTION_INTERVAL: '10s',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 400 && !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 50));

const api = new Pool(url, { connections: 32 });
const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
async function call(method, path, body) {
  const res = await api.request({ path, method, headers, ...(body ? { body: JSON.stringify(body) } : {}) });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return text ? JSON.parse(text) : null;
}

const appIds = [];
for (let a = 0; a < APPS; a++) {
  const app = await call('POST', '/api/v1/app', { name: `soak ${a}` });
  for (const kind of KINDS) await call('POST', `/api/v1/app/${app.id}/endpoint`, { url: `${receiverUrl}/${kind}/${a}` });
  appIds.push(app.id);
}
const deadApp = await call('POST', '/api/v1/app', { name: 'soak dead' });
await call('POST', `/api/v1/app/${deadApp.id}/endpoint`, { url: `${receiverUrl}/dead/0` });

function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : null;
}
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}
const sizeMiB = (path) => +((statSync(path, { throwIfNoEntry: false })?.size ?? 0) / 1048576).toFixed(1);
const samples = [];
let published = 0;
let publishErrors = 0;
const acceptedIds = [];
/** Publish to 202, in ms: the API's share of the first-success times below. */
const acknowledgedMs = [];
const t0 = Date.now();
let lastCpu = processCpuMs(child.pid);
let lastAt = t0;
async function sample(phase) {
  const text = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.text());
  const cpu = processCpuMs(child.pid);
  const now = Date.now();
  const s = {
    phase,
    at: Math.round((now - t0) / 1000),
    published,
    rssMiB: rssMiB(child.pid),
    heapMiB: +((metric(text, 'nodejs_heap_size_used_bytes') ?? 0) / 1048576).toFixed(1),
    cores: +((cpu - lastCpu) / (now - lastAt)).toFixed(2),
    dueBacklog: metric(text, 'hookrelay_due_backlog'),
    oldestDueSec: metric(text, 'hookrelay_oldest_due_age_seconds'),
    inFlight: metric(text, 'hookrelay_deliveries_in_flight'),
    loopLagP99Ms: +((metric(text, 'nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000).toFixed(1),
    dbMiB: sizeMiB(dbPath),
    walMiB: sizeMiB(`${dbPath}-wal`),
  };
  lastCpu = cpu;
  lastAt = now;
  samples.push(s);
  console.log(JSON.stringify(s));
}

// --- steady publishing, one tick every 10 ms ---
const sampler = setInterval(() => void sample('load'), SAMPLE_SECONDS * 1000);
const perTick = RATE / 100;
let owed = 0;
const inflight = new Set();
for (let tick = 0; Date.now() - t0 < SECONDS * 1000 && Date.now() < deadline; tick++) {
  owed += perTick;
  for (; owed >= 1; owed--) {
    const seq = published++;
    const appId = DEAD_EVERY > 0 && seq % DEAD_EVERY === 0 ? deadApp.id : appIds[seq % APPS];
    const at = Date.now();
    const p = call('POST', `/api/v1/app/${appId}/msg`, { eventType: 'soak.tick', payload: { seq, at } })
      .then((m) => {
        if (at - t0 >= WARMUP_MS) acknowledgedMs.push(Date.now() - at);
        if (appId !== deadApp.id) acceptedIds.push(m.id);
      }, () => publishErrors++)
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  const wait = t0 + (tick + 1) * 10 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
await Promise.all(inflight);
clearInterval(sampler);

// --- drain: every accepted message at every answering endpoint ---
const missingByKind = () => Object.fromEntries(KINDS.map((kind) => [kind, acceptedIds.filter((id) => !answered.get(kind).has(id)).length]));
const missingAt = () => Object.values(missingByKind()).reduce((t, n) => t + n, 0);
const drainStarted = Date.now();
while (missingAt() > 0 && Date.now() - drainStarted < DRAIN_SECONDS * 1000) await new Promise((r) => setTimeout(r, 1000));
await sample('drained');

function percentiles(xs) {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
  return { p50: at(50), p99: at(99), max: sorted.at(-1) ?? NaN };
}

let duplicates = 0;
for (const kind of KINDS) for (const count of answered.get(kind).values()) duplicates += count - 1;
const missing = missingAt();
const load = samples.filter((s) => s.phase === 'load');
const firstHalf = load.slice(0, Math.ceil(load.length / 2));
const secondHalf = load.slice(Math.ceil(load.length / 2));
const avg = (xs, key) => (xs.length ? +(xs.reduce((t, s) => t + s[key], 0) / xs.length).toFixed(1) : NaN);
console.log(
  JSON.stringify(
    {
      rate: RATE,
      seconds: SECONDS,
      published,
      publishErrors,
      accepted: acceptedIds.length,
      deliveriesExpected: acceptedIds.length * KINDS.length,
      missing,
      missingByKind: missingByKind(),
      duplicates,
      deadEndpointRequests: hung,
      drainSeconds: Math.round((Date.now() - drainStarted) / 1000),
      rssMiB: { firstHalfAvg: avg(firstHalf, 'rssMiB'), secondHalfAvg: avg(secondHalf, 'rssMiB'), max: Math.max(...samples.map((s) => s.rssMiB)) },
      heapMiB: { firstHalfAvg: avg(firstHalf, 'heapMiB'), secondHalfAvg: avg(secondHalf, 'heapMiB') },
      walMiBMax: Math.max(...samples.map((s) => s.walMiB)),
      dbMiB: { firstHalfAvg: avg(firstHalf, 'dbMiB'), last: samples.at(-1).dbMiB },
      loopLagP99MsMax: Math.max(...samples.map((s) => s.loopLagP99Ms)),
      // Publish to first 2xx, per endpoint kind: retries and slowness of one kind must not hold back another.
      acknowledgedMs: percentiles(acknowledgedMs),
      firstSuccessMs: Object.fromEntries(KINDS.map((kind) => [kind, percentiles(firstLatencies.get(kind))])),
    },
    null,
    2,
  ),
);

await api.close();
child.kill('SIGTERM');
await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
receiver.closeAllConnections();
receiver.close();
rmSync(dataDir, { recursive: true, force: true });
process.exit(missing === 0 && publishErrors === 0 ? 0 : 1);
