// Where the slow acknowledgements of the latency phase come from, seen by the kernel's scheduler.
//
// Runs bench/run.js (a short run by default: one throughput round) with BENCH_LATENCY_TRACE, and
// while its latency phase runs (1,000 msg/s by default) records every context switch and wake-up
// on the machine with `perf record -a -e sched:sched_switch,sched:sched_wakeup`. Then, for each
// publish whose 202 came later than the threshold, it looks at that publish's time window:
//   - how long the API thread (the server's main thread) was running, waiting for a vCPU
//     (runnable), or asleep;
//   - which tasks the two vCPUs ran meanwhile;
//   - whether a kernel DAMON thread (`kdamond.N`, memory reclaim on this VM kind) ran in it.
// Session 14 found that most slow acknowledgements here coincide with kdamond bursts of 5-18 ms
// that take one vCPU (docs/benchmarks.md).
//
// Needs Linux, `perf`, and the permission to trace scheduler events (root here; tracefs is
// mounted if it is not). Every other BENCH_* variable reaches bench/run.js unchanged. Own knobs:
//   TAIL_THRESHOLD_MS  slow means at least this many ms to the 202 (default: the phase's p99);
//   TAIL_KEEP=1        keep the trace files (their folder is printed).
// Traffic stays on 127.0.0.1, as bench/run.js's does.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const env = process.env;
const LATENCY_SECONDS = Number(env.BENCH_LATENCY_SECONDS ?? 10);
const RUN = fileURLToPath(new URL('./run.js', import.meta.url));
let dir = null;

function fail(reason) {
  console.error(`tail-trace: ${reason}`);
  if (dir !== null && env.TAIL_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}

if (process.platform !== 'linux') fail('needs Linux (perf and the scheduler tracepoints)');
if (spawnSync('perf', ['--version']).status !== 0) fail('needs `perf` on the PATH');
if (!existsSync('/sys/kernel/tracing/events/sched')) spawnSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing']);
if (!existsSync('/sys/kernel/tracing/events/sched')) fail('the scheduler tracepoints are not available (mount tracefs at /sys/kernel/tracing, as root)');
dir = mkdtempSync(join(tmpdir(), 'hookrelay-tail-'));
const latencyFile = join(dir, 'latency.jsonl');
const schedFile = join(dir, 'sched.data');

/** Runs bench/run.js, starting the recorder when its latency phase starts; resolves with its summary line. */
function runBenchmark() {
  const child = spawn(process.execPath, [RUN], {
    env: { BENCH_ROUNDS: '1', BENCH_MESSAGES: '3000', BENCH_RAW_REQUESTS: '5000', ...env, BENCH_LATENCY_TRACE: latencyFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let recorder = null;
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    if (recorder === null && stderr.includes('latency phase starting')) {
      recorder = spawn('perf', ['record', '-q', '-a', '-k', 'CLOCK_MONOTONIC', '-e', 'sched:sched_switch,sched:sched_wakeup', '-o', schedFile], { stdio: 'ignore' });
      // The phase lasts LATENCY_SECONDS; its last deliveries and the 202s come just after.
      setTimeout(() => recorder.kill('SIGINT'), (LATENCY_SECONDS + 1) * 1000);
    }
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench/run.js exited with ${code}: ${stderr.slice(-2000)}`));
      if (recorder === null) return reject(new Error('the latency phase never started'));
      const finish = () => resolve(stdout.split('\n').find((line) => line.startsWith('SQLite') || line.startsWith('PostgreSQL')) ?? '');
      if (recorder.exitCode !== null) finish();
      else recorder.on('exit', finish);
    });
  });
}

/** The switches and wake-ups, in time order: { t, cpu, kind, prevTid, prevState, nextTid, nextComm } or { t, kind, tid }. */
function readSchedEvents() {
  const script = spawnSync('perf', ['script', '-i', schedFile, '-F', 'cpu,time,event,trace', '--ns'], { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (script.status !== 0) fail(`perf script failed: ${script.stderr}`);
  const events = [];
  for (const line of script.stdout.split('\n')) {
    const head = /^\s*\[(\d+)\]\s+([\d.]+):\s+sched:(sched_switch|sched_wakeup): (.*)$/.exec(line);
    if (!head) continue;
    const t = Number(head[2]);
    if (head[3] === 'sched_switch') {
      const m = /prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)/.exec(head[4]);
      if (m) events.push({ t, cpu: Number(head[1]), kind: 'switch', prevTid: Number(m[2]), prevState: m[3], nextComm: m[4], nextTid: Number(m[5]) });
    } else {
      const m = /pid=(\d+)/.exec(head[4]);
      if (m) events.push({ t, kind: 'wakeup', tid: Number(m[1]) });
    }
  }
  return events;
}

/** Every task's stretches on a vCPU: [{ tid, comm, from, to }], by start time. */
function runStretches(events) {
  const onCpu = new Map();
  const stretches = [];
  for (const e of events) {
    if (e.kind !== 'switch') continue;
    const current = onCpu.get(e.cpu);
    if (current) stretches.push({ ...current, to: e.t });
    onCpu.set(e.cpu, { tid: e.nextTid, comm: e.nextComm, from: e.t });
  }
  return stretches;
}

/** One thread's state changes: [{ t, state: 'running' | 'runnable' | 'asleep' }]. */
function threadStates(events, tid) {
  const changes = [];
  for (const e of events) {
    if (e.kind === 'wakeup' && e.tid === tid) changes.push({ t: e.t, state: 'runnable' });
    else if (e.kind === 'switch' && e.nextTid === tid) changes.push({ t: e.t, state: 'running' });
    else if (e.kind === 'switch' && e.prevTid === tid) changes.push({ t: e.t, state: e.prevState.startsWith('R') ? 'runnable' : 'asleep' });
  }
  return changes;
}

/** Milliseconds spent in each state within [from, to]. */
function statesWithin(changes, from, to) {
  const totals = { running: 0, runnable: 0, asleep: 0 };
  let state = null;
  let since = from;
  for (const change of changes) {
    if (change.t <= from) {
      state = change.state;
      continue;
    }
    if (change.t >= to) break;
    if (state) totals[state] += change.t - since;
    state = change.state;
    since = change.t;
  }
  if (state) totals[state] += to - since;
  for (const key of Object.keys(totals)) totals[key] *= 1000;
  return totals;
}

function overlapMs(stretch, from, to) {
  return Math.max(0, Math.min(to, stretch.to) - Math.max(from, stretch.from)) * 1000;
}

const summary = await runBenchmark().catch((error) => fail(error.message));
const [header, ...rows] = readFileSync(latencyFile, 'utf8').trim().split('\n');
const { serverThreads, benchPid } = JSON.parse(header);
const acks = rows.map((row) => JSON.parse(row)).map((r) => ({ seq: r.seq, from: Number(r.startNs) / 1e9, to: Number(r.ackNs) / 1e9 }));
const events = readSchedEvents();
if (events.length === 0) fail('the trace holds no scheduler events');
const traceFrom = events[0].t;
const traceTo = events[events.length - 1].t;
const traced = acks.filter((a) => a.from >= traceFrom && a.to <= traceTo);
const ackMs = (a) => (a.to - a.from) * 1000;
const sortedMs = traced.map(ackMs).sort((x, y) => x - y);
const p99 = sortedMs[Math.floor(sortedMs.length * 0.99)] ?? 0;
const threshold = Number(env.TAIL_THRESHOLD_MS ?? p99);
const slow = traced.filter((a) => ackMs(a) >= threshold);

const apiTid = serverThreads[0].pid;
const dispatcherTid = serverThreads.filter((t) => t.tid !== apiTid).sort((x, y) => y.cpuMs - x.cpuMs)[0]?.tid;
const serverTids = new Set(serverThreads.map((t) => t.tid));
const stretches = runStretches(events);
const nameOf = (s) => (s.tid === apiTid ? 'Hookrelay API thread' : s.tid === dispatcherTid ? 'Hookrelay dispatcher thread' : serverTids.has(s.tid) ? 'Hookrelay, other threads' : s.tid === benchPid ? 'benchmark (publishers, receiver)' : s.tid === 0 ? 'idle' : s.comm.startsWith('kdamond') ? 'kdamond' : s.comm);
const kdamond = stretches.filter((s) => s.comm.startsWith('kdamond'));
const apiStates = threadStates(events, apiTid);

const users = new Map();
const apiTotals = { running: 0, runnable: 0, asleep: 0 };
let withKdamond = 0;
for (const ack of slow) {
  let kdamondMs = 0;
  for (const s of stretches) {
    if (s.to <= ack.from || s.from >= ack.to) continue;
    const ms = overlapMs(s, ack.from, ack.to);
    users.set(nameOf(s), (users.get(nameOf(s)) ?? 0) + ms);
    if (s.comm.startsWith('kdamond')) kdamondMs += ms;
  }
  if (kdamondMs >= 3) withKdamond++;
  const states = statesWithin(apiStates, ack.from, ack.to);
  for (const key of Object.keys(apiTotals)) apiTotals[key] += states[key];
}
const spanSeconds = traceTo - traceFrom;
const kdamondMs = kdamond.reduce((total, s) => total + (s.to - s.from) * 1000, 0);
const bursts = kdamond.filter((s) => s.to - s.from >= 0.005).map((s) => (s.to - s.from) * 1000);
const share = (part, whole) => `${((part / Math.max(whole, 1e-9)) * 100).toFixed(0)} %`;
const perSlow = (ms) => (ms / Math.max(slow.length, 1)).toFixed(1);

console.log(summary);
console.log(`\nTraced ${spanSeconds.toFixed(1)} s: ${traced.length} publishes, 202 p99 ${p99.toFixed(1)} ms; ${slow.length} took ${threshold.toFixed(1)} ms or more.`);
console.log(`kdamond ran ${kdamondMs.toFixed(0)} ms (${(kdamondMs / 10 / spanSeconds).toFixed(1)} % of one vCPU), in ${kdamond.length} stretches; ${bursts.length} of 5 ms or more (longest ${Math.max(0, ...bursts).toFixed(1)} ms).`);
console.log(`Slow publishes whose window held 3 ms or more of kdamond: ${withKdamond} of ${slow.length} (${share(withKdamond, slow.length)}).`);
console.log(`The API thread in a slow publish's window, on average: running ${perSlow(apiTotals.running)} ms, waiting for a vCPU ${perSlow(apiTotals.runnable)} ms, asleep ${perSlow(apiTotals.asleep)} ms.`);
console.log('What the two vCPUs ran in those windows (ms per slow publish):');
for (const [name, ms] of [...users].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  ${name.padEnd(34)} ${perSlow(ms)}`);
if (env.TAIL_KEEP === '1') console.log(`\nTrace files: ${dir}`);
else rmSync(dir, { recursive: true, force: true });
