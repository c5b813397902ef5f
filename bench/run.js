// Hookrelay end-to-end benchmark. Starts `hookrelay serve` as a child process on a fresh SQLite
// file, a receiver on 127.0.0.1 (bench/receiver.js) in this process, and measures:
//   1. throughput: N messages published through the API as fast as it takes them, deliveries/s
//      from the first publish to the last delivery, in rounds that alternate with
//   2. the raw ceiling: the same receiver driven by a bare undici Pool (no Hookrelay);
//   3. latency: publish-to-delivered p50/p90/p99 at a fixed offered rate.
// Every loop is bounded in count and time; all traffic stays on 127.0.0.1.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort, processCpuMs } from './processes.js';
import { startInlineReceiver, startReceiverProcess } from './receiver.js';

const env = process.env;
const THROUGHPUT_MESSAGES = Number(env.BENCH_MESSAGES ?? 50_000);
const FAN_OUT = Number(env.BENCH_FAN_OUT ?? 1);
// Messages are spread round robin over this many applications (customers), each with FAN_OUT endpoints.
const APPS = Number(env.BENCH_APPS ?? 10);
// Enough publishers to keep Hookrelay's CPU busy: with 64 it waited on the publishers' round trips (docs/benchmarks.md).
const PUBLISH_CONNECTIONS = Number(env.BENCH_PUBLISH_CONNECTIONS ?? 128);
const LATENCY_RATE = Number(env.BENCH_RATE ?? 1000);
const LATENCY_SECONDS = Number(env.BENCH_LATENCY_SECONDS ?? 10);
const RAW_REQUESTS = Number(env.BENCH_RAW_REQUESTS ?? 60_000);
// The throughput phase alternates raw and Hookrelay in this many rounds (raw, Hookrelay, raw, ...,
// Hookrelay, raw): on a shared virtual machine the speed moves by 10-50 % within a minute, so
// both are sampled across the same minute rather than one before the other.
const ROUNDS = Number(env.BENCH_ROUNDS ?? 5);
// Unmeasured work before each measured phase, the same for the raw client and for Hookrelay: the
// figures are those of processes whose code V8 has compiled (a server runs for days; its first
// seconds of JIT compilation are not its capacity). BENCH_WARMUP=0 measures cold processes.
const WARMUP = Number(env.BENCH_WARMUP ?? 10_000);
const SYNC_COMMIT = env.BENCH_SYNC_COMMIT === 'true';
// The receiver runs in this process, beside the load generator, unless BENCH_RECEIVER=process puts
// it in a process of its own (bench/receiver.js; docs/benchmarks.md, session 7, compares the two).
const INLINE_RECEIVER = env.BENCH_RECEIVER !== 'process';
// A file to write the latency phase's timings to, one JSON line per message (seq, and the
// CLOCK_MONOTONIC nanoseconds just before its publish and at its 202), with the server's pids, so
// that slow acknowledgements can be set beside a kernel trace (`perf record -k CLOCK_MONOTONIC`).
const LATENCY_TRACE = env.BENCH_LATENCY_TRACE;
// CPUs to start each `hookrelay serve` on (`taskset -c` syntax, e.g. "0"; Linux with util-linux),
// to compare a server whose threads share one vCPU with one whose threads roam (session 15).
const HOOKRELAY_CPUS = env.BENCH_HOOKRELAY_CPUS;
// BENCH_MARK_SLICES=1 says on stderr when each Hookrelay throughput slice starts (with the server's
// pids) and when its last delivery has arrived, for a tracer that records one (bench/idle-trace.js).
const MARK_SLICES = env.BENCH_MARK_SLICES === '1';
const TIME_LIMIT_MS = 180_000;
const CLI = fileURLToPath(new URL('../packages/hookrelay/dist/src/cli/main.js', import.meta.url));
const TOKEN = 'bench-token';

/** Each deployment's measurement must end within TIME_LIMIT_MS. */
let deadline = Date.now() + TIME_LIMIT_MS;
const checkDeadline = () => {
  if (Date.now() > deadline) throw new Error('benchmark exceeded its time limit');
};

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * The raw ceiling's client: the same receiver driven by a bare undici Pool (no Hookrelay), 64
 * requests at a time. `run(count)` sends `count` requests and returns their seconds and the CPU
 * used meanwhile by this process and by the receiver's (client and receiver together).
 */
function rawClient(receiver) {
  const pool = new Pool(receiver.url, { connections: 64, pipelining: 1 });
  const body = JSON.stringify({ type: 'order.created', data: { id: 1, amount: 1999, currency: 'EUR' } });
  return {
    async run(count) {
      let sent = 0;
      const started = performance.now();
      const cpuBefore = process.cpuUsage();
      const receiverCpuBefore = receiver.cpuMs();
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (sent < count) {
            checkDeadline();
            sent++;
            const res = await pool.request({ path: '/raw', method: 'POST', headers: { 'content-type': 'application/json' }, body });
            await res.body.dump();
          }
        }),
      );
      const cpu = process.cpuUsage(cpuBefore);
      const receiverCpuMs = receiverCpuBefore === null ? 0 : receiver.cpuMs() - receiverCpuBefore;
      return { requests: count, seconds: (performance.now() - started) / 1000, cpuMicros: cpu.user + cpu.system + receiverCpuMs * 1000 };
    },
    close: () => pool.close(),
  };
}

/** Starts `hookrelay serve` with `env` and extra CLI args; resolves once /health answers. */
async function startHookrelay(env, args = []) {
  const port = await freePort();
  const nodeArgs = [...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []), CLI, 'serve', ...args];
  const [command, commandArgs] = HOOKRELAY_CPUS ? ['taskset', ['-c', HOOKRELAY_CPUS, process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  const child = spawn(command, commandArgs, {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', HOOKRELAY_API_KEY: TOKEN, HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32', HOOKRELAY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400; i++) {
    const ok = await fetch(url + '/health').then((r) => r.ok, () => false);
    if (ok) return { child, url };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('hookrelay did not start');
}

async function stopAll(children) {
  await Promise.all(
    children.map((child) => {
      if (child.exitCode !== null) return undefined;
      child.kill('SIGTERM');
      return new Promise((r) => child.once('exit', r));
    }),
  );
}

/** The embedded mode: one `hookrelay serve` (API, dispatcher thread) on a fresh SQLite file. */
async function deploySqlite() {
  const dataDir = mkdtempSync(join(tmpdir(), 'hookrelay-bench-'));
  const { child, url } = await startHookrelay({ HOOKRELAY_DATABASE_URL: `sqlite:${join(dataDir, 'bench.db')}`, HOOKRELAY_SYNC_COMMIT: String(SYNC_COMMIT) });
  return {
    label: `SQLite (WAL, synchronous=${SYNC_COMMIT ? 'FULL' : 'NORMAL'}), 1 process`,
    url,
    pids: [child.pid],
    /** The WAL file's size: its peak so far, since nothing truncates it while the server runs. */
    walBytes: () => statSync(join(dataDir, 'bench.db-wal'), { throwIfNoEntry: false })?.size ?? 0,
    async stop() {
      await stopAll([child]);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Scale-out mode: a fresh PostgreSQL database, one `--role api` process and `workers` `--role worker` processes. */
async function deployPostgres(serverUrl, workers) {
  const { default: pg } = await import('pg');
  const name = `hookrelay_bench_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'hookrelay-bench-pg-'));
  const env = { HOOKRELAY_DATABASE_URL: url.toString(), HOOKRELAY_DATA_DIR: dataDir, HOOKRELAY_MASTER_KEY: randomBytes(32).toString('base64') };
  const migrated = spawnSync(process.execPath, [CLI, 'migrate'], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (migrated.status !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const api = await startHookrelay(env, ['--role', 'api']);
  const children = [api.child];
  for (let i = 0; i < workers; i++) children.push((await startHookrelay(env, ['--role', 'worker'])).child);
  return {
    label: `PostgreSQL, 1 API process + ${workers} worker process${workers > 1 ? 'es' : ''}`,
    url: api.url,
    postgres: true,
    pids: children.map((c) => c.pid),
    async stop() {
      await stopAll(children);
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** CPU time (ms) the processes have used so far. */
function serverCpuMs(pids) {
  return pids.reduce((total, pid) => total + processCpuMs(pid), 0);
}

/**
 * CPU time (ms) of every process of a PostgreSQL server on this machine, by pid: each backend is
 * a process of its own. Empty when the server runs elsewhere (or /proc is not readable).
 */
function postgresCpuByPid() {
  const byPid = new Map();
  let entries = [];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return byPid;
  }
  for (const pid of entries) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue;
    }
    const ms = processCpuMs(pid);
    if (!Number.isNaN(ms)) byPid.set(pid, ms);
  }
  return byPid;
}

/** The pids of the kernel threads whose name starts with `prefix`; none where there is no /proc (not Linux). */
function kernelThreadPids(prefix) {
  const pids = [];
  if (!existsSync('/proc')) return pids;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').startsWith(prefix)) pids.push(Number(entry));
    } catch {
      continue;
    }
  }
  return pids;
}
const KDAMOND = kernelThreadPids('kdamond');

/** CPU (ms) the given kernel threads have used so far (0 for one that is gone). */
function kernelThreadsCpuMs(pids) {
  return pids.reduce((total, pid) => total + (processCpuMs(pid) || 0), 0);
}

/** CPU (ms) PostgreSQL used between two snapshots; a backend started in between counts from zero. */
function postgresCpuSince(before) {
  let total = 0;
  for (const [pid, ms] of postgresCpuByPid()) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** Throughput then latency against one deployment; returns the result object. */
async function measure(deployment, receiver, raw) {
  deadline = Date.now() + TIME_LIMIT_MS;
  const api = new Pool(deployment.url, { connections: PUBLISH_CONNECTIONS });
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const call = async (method, path, body) => {
    const res = await api.request({ path, method, headers, body: body && JSON.stringify(body) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  try {
    const publishPaths = [];
    for (let a = 0; a < APPS; a++) {
      const app = await call('POST', '/api/v1/app', { name: `bench ${a}` });
      for (let i = 0; i < FAN_OUT; i++) await call('POST', `/api/v1/app/${app.id}/endpoint`, { url: `${receiver.url}/app${a}/ep${i}` });
      publishPaths.push(`/api/v1/app/${app.id}/msg`);
    }
    const publishPath = (n) => publishPaths[n % APPS];
    // A publish needs only its status: the load generator shares the machine's two cores with
    // Hookrelay, so it does not parse the 202's body (an error's body is still read and shown).
    const publish = async (path, body) => {
      const res = await api.request({ path, method: 'POST', headers, body: JSON.stringify(body) });
      if (res.statusCode >= 300) throw new Error(`POST ${path}: ${res.statusCode} ${await res.body.text()}`);
      await res.body.dump();
    };

    // Publishes `messages` as fast as the API accepts them; resolves when publishing is done and
    // `delivered` once every delivery has arrived.
    let published = 0;
    const publishAll = async (messages) => {
      const expectedDeliveries = messages * FAN_OUT;
      const delivered = receiver.expect(expectedDeliveries);
      const last = published + messages;
      await Promise.all(
        Array.from({ length: PUBLISH_CONNECTIONS }, async () => {
          while (published < last) {
            checkDeadline();
            published++;
            await publish(publishPath(published), { eventType: 'order.created', payload: { id: published, amount: 1999, currency: 'EUR' } });
          }
        }),
      );
      const timedOut = new Promise((_, reject) =>
        setTimeout(async () => reject(new Error(`only ${await receiver.arrivedSoFar()}/${expectedDeliveries} delivered`)), Math.max(1, deadline - Date.now())).unref(),
      );
      return { delivered: Promise.race([delivered, timedOut]) };
    };
    await (await publishAll(WARMUP)).delivered;

    // Throughput: publish as fast as the API accepts, count deliveries until all have arrived; in
    // ROUNDS slices, each between two slices of the raw client.
    const perRound = Math.floor(THROUGHPUT_MESSAGES / ROUNDS);
    const rawPerRound = Math.floor(RAW_REQUESTS / (ROUNDS + 1));
    const expected = perRound * ROUNDS * FAN_OUT;
    const rawSlices = [await raw.run(rawPerRound)];
    const rounds = [];
    let totalSeconds = 0;
    let publishSeconds = 0;
    const cpuMs = { hookrelay: 0, bench: 0, postgres: deployment.postgres ? 0 : null };
    for (let round = 0; round < ROUNDS; round++) {
      const cpuBefore = { bench: process.cpuUsage(), receiver: receiver.cpuMs(), server: serverCpuMs(deployment.pids), postgres: deployment.postgres ? postgresCpuByPid() : null };
      if (MARK_SLICES) console.error(`throughput slice ${round + 1} starting: server pids ${deployment.pids.join(' ')}`);
      const t0 = performance.now();
      const run = await publishAll(perRound);
      publishSeconds += (performance.now() - t0) / 1000;
      await run.delivered;
      const seconds = (performance.now() - t0) / 1000;
      if (MARK_SLICES) console.error(`throughput slice ${round + 1} done`);
      totalSeconds += seconds;
      const benchCpu = process.cpuUsage(cpuBefore.bench);
      cpuMs.hookrelay += serverCpuMs(deployment.pids) - cpuBefore.server;
      // The load generator and the receiver (in this process, or in its own).
      cpuMs.bench += (benchCpu.user + benchCpu.system) / 1000 + (cpuBefore.receiver === null ? 0 : receiver.cpuMs() - cpuBefore.receiver);
      // PostgreSQL's backends, when the server runs on this machine: with it, the CPU per delivery
      // of the whole system, a steadier measure than the rate on a machine shared by all of them.
      if (cpuMs.postgres !== null) cpuMs.postgres += cpuBefore.postgres.size > 0 ? postgresCpuSince(cpuBefore.postgres) : NaN;
      rawSlices.push(await raw.run(rawPerRound));
      const rawAround = (rawSlices[round].requests + rawSlices[round + 1].requests) / (rawSlices[round].seconds + rawSlices[round + 1].seconds);
      rounds.push({ deliveriesPerSec: Math.round((perRound * FAN_OUT) / seconds), rawPerSec: Math.round(rawAround), ratio: +((perRound * FAN_OUT) / seconds / rawAround).toFixed(3) });
    }
    const throughput = expected / totalSeconds;
    const rawTotals = rawSlices.reduce((t, r) => ({ requests: t.requests + r.requests, seconds: t.seconds + r.seconds, cpuMicros: t.cpuMicros + r.cpuMicros }), { requests: 0, seconds: 0, cpuMicros: 0 });
    const rawPerSec = rawTotals.requests / rawTotals.seconds;
    const cpuShare = {
      hookrelayCores: +(cpuMs.hookrelay / 1000 / totalSeconds).toFixed(2),
      benchProcessCores: +(cpuMs.bench / 1000 / totalSeconds).toFixed(2),
      ...(cpuMs.postgres === null ? {} : { postgresCores: +(cpuMs.postgres / 1000 / totalSeconds).toFixed(2) }),
      hookrelayMicrosPerDelivery: Math.round((cpuMs.hookrelay * 1000) / expected),
      ...(cpuMs.postgres === null ? {} : { postgresMicrosPerDelivery: Math.round((cpuMs.postgres * 1000) / expected) }),
    };

    // Latency at a fixed offered rate: each publish is timed from just before the request to the
    // message's arrival at the receiver, both in epoch milliseconds (the receiver may be another process).
    const epochMs = () => performance.timeOrigin + performance.now();
    const sentAt = new Map();
    const latencyMessages = LATENCY_RATE * LATENCY_SECONDS;
    await receiver.recordArrivals();
    const latencyFinished = receiver.expect(latencyMessages * FAN_OUT);
    const intervalMs = 1000 / LATENCY_RATE;
    const latencyCpuBefore = { server: serverCpuMs(deployment.pids), kdamond: kernelThreadsCpuMs(KDAMOND) };
    const l0 = performance.now();
    const inflight = [];
    // Time to the 202 as well: the share of publish-to-delivered that is the API's and its commit's.
    const acknowledged = [];
    const traced = LATENCY_TRACE ? [] : null;
    // For a tracer that waits for this phase (see LATENCY_TRACE above).
    if (traced) console.error(`latency phase starting: server pids ${deployment.pids.join(' ')}`);
    for (let seq = 0; seq < latencyMessages; seq++) {
      checkDeadline();
      const due = l0 + seq * intervalMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const started = performance.now();
      const startedNs = process.hrtime.bigint();
      sentAt.set(seq, epochMs());
      inflight.push(
        publish(publishPath(seq), { eventType: 'order.created', payload: { seq } }).then(() => {
          acknowledged.push(performance.now() - started);
          traced?.push(`{"seq":${seq},"startNs":${startedNs},"ackNs":${process.hrtime.bigint()}}`);
        }),
      );
    }
    await Promise.all(inflight);
    if (traced) {
      // Every thread of the server is named `node`: its CPU time so far tells which is which.
      const threads = deployment.pids.flatMap((pid) => readdirSync(`/proc/${pid}/task`).map((tid) => ({ pid, tid: Number(tid), cpuMs: processCpuMs(`${pid}/task/${tid}`) })));
      writeFileSync(LATENCY_TRACE, JSON.stringify({ serverThreads: threads, benchPid: process.pid }) + '\n' + traced.join('\n') + '\n');
    }
    const offeredSeconds = (performance.now() - l0) / 1000;
    await Promise.race([latencyFinished, new Promise((_, reject) => setTimeout(() => reject(new Error('latency run did not finish')), Math.max(1, deadline - Date.now())).unref())]);
    // Hookrelay's CPU per message at this rate: groups of one or two messages, so every commit,
    // wake-up and response is paid per message rather than shared as in the throughput phase.
    const latencyServerCpuMs = serverCpuMs(deployment.pids) - latencyCpuBefore.server;
    const latencyKdamondCpuMs = kernelThreadsCpuMs(KDAMOND) - latencyCpuBefore.kdamond;
    const latencies = (await receiver.takeArrivals()).filter(([seq]) => sentAt.has(seq)).map(([seq, arrivedAt]) => arrivedAt - sentAt.get(seq));
    latencies.sort((a, b) => a - b);
    acknowledged.sort((a, b) => a - b);

    // SQLite's WAL restarts over the whole run (they hold writers off; see docs/deploy.md).
    const metricsText = await fetch(`${deployment.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.text());
    const metricSum = (name) =>
      metricsText
        .split('\n')
        .filter((line) => line.startsWith(name + ' ') || line.startsWith(name + '{'))
        .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
    const walRestarts = metricSum('hookrelay_sqlite_wal_restarts_total');
    const result = {
      machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      deployment: deployment.label,
      applications: APPS,
      endpointsPerMessage: FAN_OUT,
      warmup: { messages: WARMUP, rawRequests: WARMUP },
      rawCeilingReqPerSec: Math.round(rawPerSec),
      // CPU per request of raw client and receiver together: the machine's speed in these minutes.
      rawCpuMicrosPerRequest: Math.round(rawTotals.cpuMicros / rawTotals.requests),
      throughput: {
        messages: perRound * ROUNDS,
        rounds,
        deliveries: expected,
        publishSeconds: +publishSeconds.toFixed(2),
        publishPerSec: Math.round((perRound * ROUNDS) / publishSeconds),
        endToEndSeconds: +totalSeconds.toFixed(2),
        deliveriesPerSec: Math.round(throughput),
        ratioToRawCeiling: +(throughput / rawPerSec).toFixed(3),
        cpu: cpuShare,
      },
      latency: {
        offeredRatePerSec: LATENCY_RATE,
        achievedRatePerSec: Math.round(latencyMessages / offeredSeconds),
        samples: latencies.length,
        p50Ms: +percentile(latencies, 50).toFixed(1),
        p90Ms: +percentile(latencies, 90).toFixed(1),
        p99Ms: +percentile(latencies, 99).toFixed(1),
        maxMs: +latencies[latencies.length - 1].toFixed(1),
        publishAcknowledgedP50Ms: +percentile(acknowledged, 50).toFixed(1),
        publishAcknowledgedP99Ms: +percentile(acknowledged, 99).toFixed(1),
        hookrelayMicrosPerMessage: Math.round((latencyServerCpuMs * 1000) / latencyMessages),
        // The kernel's DAMON threads (memory reclaim on this VM kind) run in bursts of 5-18 ms that
        // take one of the two vCPUs (docs/benchmarks.md, session 14): part of the tail, not Hookrelay's.
        ...(KDAMOND.length > 0 ? { kdamondCpuMs: Math.round(latencyKdamondCpuMs) } : {}),
      },
      ...(deployment.walBytes
        ? {
            sqliteWalPeakMiB: +(deployment.walBytes() / 1048576).toFixed(1),
            sqliteWalRestarts: walRestarts,
            sqliteWalRestartHoldAvgMs: walRestarts > 0 ? +((metricSum('hookrelay_sqlite_wal_restart_hold_seconds_sum') / walRestarts) * 1000).toFixed(1) : null,
          }
        : {}),
    };
    console.log(JSON.stringify(result, null, 2));
    console.log(
      `\n${deployment.label}: raw ceiling ${result.rawCeilingReqPerSec} req/s (${result.rawCpuMicrosPerRequest} µs CPU each) | end to end ${result.throughput.deliveriesPerSec} deliveries/s ` +
        `(${(result.throughput.ratioToRawCeiling * 100).toFixed(1)} % of raw; by round ${rounds.map((r) => (r.ratio * 100).toFixed(1)).join(' / ')} %) | latency at ${LATENCY_RATE} msg/s: ` +
        `p50 ${result.latency.p50Ms} ms, p90 ${result.latency.p90Ms} ms, p99 ${result.latency.p99Ms} ms ` +
        `(202 after p50 ${result.latency.publishAcknowledgedP50Ms} ms, p99 ${result.latency.publishAcknowledgedP99Ms} ms; ` +
        `Hookrelay ${result.latency.hookrelayMicrosPerMessage} µs CPU per message` +
        (result.latency.kdamondCpuMs === undefined ? '' : `, kdamond ${result.latency.kdamondCpuMs} ms`) +
        `) | ` +
        `CPU per delivery: Hookrelay ${cpuShare.hookrelayMicrosPerDelivery} µs` +
        (cpuMs.postgres === null ? '' : `, PostgreSQL ${cpuShare.postgresMicrosPerDelivery} µs`) +
        `, benchmark ${Math.round((cpuMs.bench * 1000) / expected)} µs` +
        (result.sqliteWalPeakMiB === undefined
          ? ''
          : ` | WAL peak ${result.sqliteWalPeakMiB} MiB, ${result.sqliteWalRestarts} restarts` +
            (result.sqliteWalRestartHoldAvgMs === null ? '' : ` holding writers ${result.sqliteWalRestartHoldAvgMs} ms on average`)) +
        '\n',
    );
    return result;
  } finally {
    await api.close();
  }
}

async function main() {
  const receiver = INLINE_RECEIVER ? await startInlineReceiver() : await startReceiverProcess();
  try {
    // BENCH_SQLITE=false leaves the embedded mode out (to measure the PostgreSQL modes alone).
    const modes = env.BENCH_SQLITE === 'false' ? [] : [() => deploySqlite()];
    // BENCH_POSTGRES_URL (a server URL; a database is created and dropped per run) adds the
    // scale-out mode with 1, 2 and 4 worker processes (BENCH_WORKERS to choose).
    if (env.BENCH_POSTGRES_URL) {
      for (const workers of (env.BENCH_WORKERS ?? '1,2,4').split(',').map(Number)) modes.push(() => deployPostgres(env.BENCH_POSTGRES_URL, workers));
    }
    const raw = rawClient(receiver);
    try {
      await raw.run(WARMUP);
      for (const deploy of modes) {
        const deployment = await deploy();
        try {
          await measure(deployment, receiver, raw);
        } finally {
          await deployment.stop();
        }
      }
    } finally {
      await raw.close();
    }
  } finally {
    await receiver.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
