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
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runStretches, startSchedRecorder, startTraceSession, threadStates } from './sched-trace.js';

const env = process.env;
const LATENCY_SECONDS = Number(env.BENCH_LATENCY_SECONDS ?? 10);
const RUN = fileURLToPath(new URL('./run.js', import.meta.url));
const session = startTraceSession('tail-trace', env.TAIL_KEEP === '1');
const fail = session.fail;
const latencyFile = join(session.dir, 'latency.jsonl');
const schedFile = join(session.dir, 'sched.data');

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
      recorder = startSchedRecorder(schedFile);
      // The phase lasts LATENCY_SECONDS; its last deliveries and the 202s come just after.
      setTimeout(() => recorder.stop(), (LATENCY_SECONDS + 1) * 1000);
    }
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench/run.js exited with ${code}: ${stderr.slice(-2000)}`));
      if (recorder === null) return reject(new Error('the latency phase never started'));
      void recorder.exited.then(() => resolve(stdout.split('\n').find((line) => line.startsWith('SQLite') || line.startsWith('PostgreSQL')) ?? ''));
    });
  });
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
const events = session.readEvents(schedFile);
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
session.finish();
