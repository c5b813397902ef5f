// Why the vCPUs idle during the throughput phase, seen by the kernel's scheduler.
//
// Runs bench/run.js (one throughput slice by default) with BENCH_MARK_SLICES=1, and records every
// context switch and wake-up on the machine with `perf` from the start of the first Hookrelay
// throughput slice to its last delivery. The pipeline's threads are those of `hookrelay serve` and of
// the benchmark (publishers and receiver). It prints:
//   - how the slice's time divides: every vCPU busy; a vCPU idle while a pipeline thread waited
//     (runnable, not running) behind another task on a busy vCPU; a vCPU idle while a thread woken
//     onto it had yet to run; a vCPU idle with no pipeline thread waiting;
//   - each time a pipeline thread had to wait for a vCPU: after a wake-up placed it on a busy vCPU,
//     or after it was preempted, and whether another vCPU was idle at that moment; how long it
//     waited, and whether it then ran where it waited;
//   - how long a wake-up onto an idle vCPU took to run.
// Session 16 found a vCPU idle, with a pipeline thread waiting on the other, for more than a third
// of the slice (docs/benchmarks.md).
//
// Needs Linux, `perf`, and the permission to trace scheduler events (root here). Every BENCH_*
// variable reaches bench/run.js unchanged. Own knob: IDLE_KEEP=1 keeps the trace (its folder is
// printed). Traffic stays on 127.0.0.1, as bench/run.js's does.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSchedRecorder, startTraceSession } from './sched-trace.js';

const env = process.env;
const RUN = fileURLToPath(new URL('./run.js', import.meta.url));
const session = startTraceSession('idle-trace', env.IDLE_KEEP === '1');
const fail = session.fail;
const schedFile = join(session.dir, 'sched.data');

const threadsOf = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
};

/**
 * Runs bench/run.js and records its first throughput slice. Resolves with its summary line and the
 * pipeline's threads (read when the slice started): { summary, serverPid, benchPid, tids }.
 */
function runBenchmark() {
  const child = spawn(process.execPath, [RUN], {
    env: { BENCH_ROUNDS: '1', BENCH_MESSAGES: '40000', BENCH_RAW_REQUESTS: '10000', BENCH_LATENCY_SECONDS: '1', ...env, BENCH_MARK_SLICES: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let recorder = null;
  let threads = null;
  let stopped = false;
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    const started = /throughput slice 1 starting: server pids (\d+)/.exec(stderr);
    if (recorder === null && started) {
      const serverPid = Number(started[1]);
      threads = { serverPid, benchPid: child.pid, tids: new Set([...threadsOf(serverPid), ...threadsOf(child.pid)]) };
      recorder = startSchedRecorder(schedFile);
    }
    if (recorder !== null && !stopped && stderr.includes('throughput slice 1 done')) {
      stopped = true;
      recorder.stop();
    }
  });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench/run.js exited with ${code}: ${stderr.slice(-2000)}`));
      if (recorder === null) return reject(new Error('the throughput slice never started'));
      void recorder.exited.then(() => resolve({ summary: stdout.split('\n').find((line) => line.startsWith('SQLite') || line.startsWith('PostgreSQL')) ?? '', ...threads }));
    });
  });
}

/**
 * Walks the trace once. Time counts only once every vCPU's task is known (after its first switch).
 * Returns the time split by what the vCPUs and the pipeline were doing, and every wait of a pipeline
 * thread for a vCPU.
 */
function analyse(events, pipeline) {
  const cpus = [...new Set(events.filter((e) => e.kind === 'switch').map((e) => e.cpu))].sort((a, b) => a - b);
  const running = new Map();
  /** Pipeline threads waiting for a vCPU: tid -> { from, cpu, cause, otherIdle }. */
  const waiting = new Map();
  const split = { allBusy: 0, idleWhileWaiting: 0, idleWhileWaking: 0, idleNothingWaiting: 0 };
  const busyBy = { pipeline: 0, other: 0 };
  const waits = [];
  const isIdle = (cpu) => running.get(cpu) === 0;
  const anotherIdle = (cpu) => cpus.some((c) => c !== cpu && isIdle(c));
  let last = null;
  for (const e of events) {
    if (last !== null && running.size === cpus.length) {
      const dt = e.t - last;
      const idle = cpus.filter(isIdle).length;
      if (idle === 0) split.allBusy += dt;
      else if ([...waiting.values()].some((w) => !isIdle(w.cpu))) split.idleWhileWaiting += dt;
      else if (waiting.size > 0) split.idleWhileWaking += dt;
      else split.idleNothingWaiting += dt;
      for (const cpu of cpus) {
        const tid = running.get(cpu);
        if (tid !== 0) busyBy[pipeline.has(tid) ? 'pipeline' : 'other'] += dt;
      }
    }
    last = e.t;
    if (e.kind === 'switch') {
      running.set(e.cpu, e.nextTid);
      const wait = waiting.get(e.nextTid);
      if (wait) {
        waiting.delete(e.nextTid);
        waits.push({ ...wait, ms: (e.t - wait.from) * 1000, ranThere: e.cpu === wait.cpu });
      }
      if (pipeline.has(e.prevTid) && e.prevState.startsWith('R')) waiting.set(e.prevTid, { from: e.t, cpu: e.cpu, cause: 'preempted', otherIdle: anotherIdle(e.cpu) });
    } else if (pipeline.has(e.tid) && !waiting.has(e.tid) && ![...running.values()].includes(e.tid)) {
      const onto = isIdle(e.targetCpu) ? 'woken onto an idle vCPU' : 'woken onto a busy vCPU';
      waiting.set(e.tid, { from: e.t, cpu: e.targetCpu, cause: onto, otherIdle: anotherIdle(e.targetCpu) });
    }
  }
  return { cpus, split, busyBy, waits };
}

function percentile(sorted, p) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const run = await runBenchmark().catch((error) => fail(error.message));
const events = session.readEvents(schedFile);
const { cpus, split, busyBy, waits } = analyse(events, run.tids);
const span = split.allBusy + split.idleWhileWaiting + split.idleWhileWaking + split.idleNothingWaiting;
const pct = (part, whole) => `${((100 * part) / Math.max(whole, 1e-9)).toFixed(1)} %`;

console.log(run.summary);
console.log(`\nTraced the first throughput slice: ${span.toFixed(2)} s on ${cpus.length} vCPUs; pipeline: ${run.tids.size} threads (hookrelay serve ${run.serverPid}, benchmark ${run.benchPid}).`);
console.log(`  every vCPU busy                                          ${pct(split.allBusy, span)}`);
console.log(`  a vCPU idle while a pipeline thread waited on another   ${pct(split.idleWhileWaiting, span)}`);
console.log(`  a vCPU idle while a thread woken onto it had yet to run ${pct(split.idleWhileWaking, span)}`);
console.log(`  a vCPU idle, no pipeline thread waiting                 ${pct(split.idleNothingWaiting, span)}`);
console.log(`  vCPU time used: pipeline ${busyBy.pipeline.toFixed(2)} s, other tasks ${busyBy.other.toFixed(2)} s, of ${(span * cpus.length).toFixed(2)} s`);
console.log('\nWaits of pipeline threads for a vCPU (count, total, p50 / p90, share that ran where they waited):');
const groups = new Map();
for (const w of waits) {
  const key = `${w.cause}${w.cause === 'woken onto an idle vCPU' ? '' : w.otherIdle ? ', another vCPU idle' : ', no other vCPU idle'}`;
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(w);
}
for (const [key, group] of [...groups].sort((a, b) => b[1].reduce((t, w) => t + w.ms, 0) - a[1].reduce((t, w) => t + w.ms, 0))) {
  const ms = group.map((w) => w.ms).sort((a, b) => a - b);
  const total = ms.reduce((t, x) => t + x, 0);
  const there = group.filter((w) => w.ranThere).length;
  console.log(`  ${key.padEnd(42)} ${String(group.length).padStart(6)}  ${total.toFixed(0).padStart(6)} ms  ${(percentile(ms, 50) * 1000).toFixed(0).padStart(5)} / ${(percentile(ms, 90) * 1000).toFixed(0).padStart(5)} µs  ${pct(there, group.length)}`);
}
session.finish();
