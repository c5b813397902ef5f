// The kernel scheduler's view of a benchmark run, shared by bench/tail-trace.js and
// bench/idle-trace.js: checks that `perf` can record the scheduler's tracepoints, records context
// switches and wake-ups on every vCPU, and reads them back as plain objects.
//
// Needs Linux, `perf`, and the permission to trace scheduler events (root here; tracefs is mounted
// if it is not).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A tracing script's start: checks that scheduler tracing works here and makes a working folder.
 * Returns { dir, fail(reason), readEvents(file), finish() }: `fail` prints the reason, removes the
 * folder (unless `keep`) and exits 1; `readEvents` is readSchedEvents, failing on an empty trace;
 * `finish` removes the folder, or prints where it is when `keep`.
 */
export function startTraceSession(name, keep) {
  let dir = null;
  const fail = (reason) => {
    console.error(`${name}: ${reason}`);
    if (dir !== null && !keep) rmSync(dir, { recursive: true, force: true });
    process.exit(1);
  };
  const unavailable = schedTracingUnavailable();
  if (unavailable !== null) fail(unavailable);
  dir = mkdtempSync(join(tmpdir(), `hookrelay-${name}-`));
  return {
    dir,
    fail,
    readEvents(file) {
      let events = [];
      try {
        events = readSchedEvents(file);
      } catch (error) {
        fail(error.message);
      }
      if (events.length === 0) fail('the trace holds no scheduler events');
      return events;
    },
    finish() {
      if (keep) console.log(`\nTrace files: ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Why scheduler tracing cannot work here, or null when it can. Mounts tracefs if that is all that is missing. */
function schedTracingUnavailable() {
  if (process.platform !== 'linux') return 'needs Linux (perf and the scheduler tracepoints)';
  if (spawnSync('perf', ['--version']).status !== 0) return 'needs `perf` on the PATH';
  if (!existsSync('/sys/kernel/tracing/events/sched')) spawnSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing']);
  if (!existsSync('/sys/kernel/tracing/events/sched')) return 'the scheduler tracepoints are not available (mount tracefs at /sys/kernel/tracing, as root)';
  return null;
}

/**
 * Starts `perf record` of every switch and wake-up on the machine into `file`, timestamped with
 * CLOCK_MONOTONIC (process.hrtime's clock). Stop it with `.stop()`; the file is written once
 * `.exited` has resolved.
 */
export function startSchedRecorder(file) {
  const perf = spawn('perf', ['record', '-q', '-a', '-k', 'CLOCK_MONOTONIC', '-e', 'sched:sched_switch,sched:sched_wakeup', '-o', file], { stdio: 'ignore' });
  const exited = new Promise((resolve) => perf.once('exit', resolve));
  return { exited, stop: () => perf.kill('SIGINT') };
}

/**
 * The switches and wake-ups in `file`, in time order (seconds):
 *   { t, cpu, kind: 'switch', prevTid, prevState, nextComm, nextTid }
 *   { t, cpu, kind: 'wakeup', tid, targetCpu }
 * Throws if `perf script` fails.
 */
function readSchedEvents(file) {
  const script = spawnSync('perf', ['script', '-i', file, '-F', 'cpu,time,event,trace', '--ns'], { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (script.status !== 0) throw new Error(`perf script failed: ${script.stderr}`);
  const events = [];
  for (const line of script.stdout.split('\n')) {
    const head = /^\s*\[(\d+)\]\s+([\d.]+):\s+sched:(sched_switch|sched_wakeup): (.*)$/.exec(line);
    if (!head) continue;
    const t = Number(head[2]);
    const cpu = Number(head[1]);
    if (head[3] === 'sched_switch') {
      const m = /prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)/.exec(head[4]);
      if (m) events.push({ t, cpu, kind: 'switch', prevTid: Number(m[2]), prevState: m[3], nextComm: m[4], nextTid: Number(m[5]) });
    } else {
      const m = /pid=(\d+).*target_cpu=(\d+)/.exec(head[4]);
      if (m) events.push({ t, cpu, kind: 'wakeup', tid: Number(m[1]), targetCpu: Number(m[2]) });
    }
  }
  return events;
}

/** Every task's stretches on a vCPU: [{ tid, comm, from, to }], by start time. */
export function runStretches(events) {
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
export function threadStates(events, tid) {
  const changes = [];
  for (const e of events) {
    if (e.kind === 'wakeup' && e.tid === tid) changes.push({ t: e.t, state: 'runnable' });
    else if (e.kind === 'switch' && e.nextTid === tid) changes.push({ t: e.t, state: 'running' });
    else if (e.kind === 'switch' && e.prevTid === tid) changes.push({ t: e.t, state: e.prevState.startsWith('R') ? 'runnable' : 'asleep' });
  }
  return changes;
}
