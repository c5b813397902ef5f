/**
 * Worker thread that checkpoints the SQLite WAL. A checkpoint copies WAL pages into the database
 * file; done by whichever connection commits past the threshold, it stalls that thread's event
 * loop (the API or the dispatcher) for as long as the copy takes. Here it runs beside them.
 *
 * A PASSIVE checkpoint never makes the WAL file shorter: the next writer starts writing it from
 * the beginning again only if, when it begins, every frame has been copied. While traffic flows
 * some commit always lands while the copy runs (at 250 messages a second with retries, the WAL
 * grew 13 MB a second): it reached 258 MiB in every benchmark run, the writers' autocheckpoint
 * threshold (open-sqlite.ts), where the API's or the dispatcher's own thread does the copy.
 *
 * Past `restartAtFrames`, a RESTART checkpoint takes the write lock, copies the few frames the
 * passive one left, syncs, and waits for readers to leave the WAL: the next commit then starts it
 * over. That holds writers for one copy and sync (a few ms, reported as
 * hookrelay_sqlite_wal_restart_hold_seconds) every few seconds.
 */
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { CommitBell } from './commit-bell.js';
import { restartDue, type CheckpointReport, type CheckpointResult } from './checkpointer.js';

const { path, intervalMs, restartAtFrames, commitBell } = workerData as {
  path: string;
  intervalMs: number;
  restartAtFrames: number;
  commitBell?: SharedArrayBuffer;
};
/**
 * A RESTART waiting for the write lock blocks new writers, and one waiting for a reader holds
 * them too; giving up after this long, it tries again at the next tick.
 */
const RESTART_BUSY_TIMEOUT_MS = 100;

const bell = commitBell ? new CommitBell(commitBell) : null;
const connection = new BetterSqlite3(path);
connection.pragma(`busy_timeout = ${RESTART_BUSY_TIMEOUT_MS}`);
connection.pragma('wal_autocheckpoint = 0');

function checkpoint(mode: 'PASSIVE' | 'RESTART'): CheckpointResult {
  return (connection.pragma(`wal_checkpoint(${mode})`) as CheckpointResult[])[0]!;
}

const pageSize = Number(connection.pragma('page_size', { simple: true }));

const timer = setInterval(() => {
  try {
    // PASSIVE never waits for readers or writers: it copies what it can and tries again later.
    const passive = checkpoint('PASSIVE');
    if (!restartDue(passive, restartAtFrames)) return report({ walBytes: passive.log * pageSize, restartHoldMs: null, restarted: false });
    // Hot-path writers retry the lock at once when it frees, so a RESTART waiting in SQLite's busy
    // handler (which sleeps 1, 2, 5 ms... between tries) would rarely get it: they hold off meanwhile.
    const heldAt = performance.now();
    bell?.holdWriters();
    let restart: CheckpointResult;
    try {
      restart = checkpoint('RESTART');
    } finally {
      bell?.releaseWriters();
    }
    // busy = 0: every frame copied and no reader left in the WAL, so the next commit starts it over.
    const restarted = restart.busy === 0;
    report({ walBytes: restarted ? 0 : restart.log * pageSize, restartHoldMs: performance.now() - heldAt, restarted });
  } catch {
    // SQLITE_BUSY or a locked file: the next tick tries again.
  }
}, intervalMs);

function report(checkpointReport: CheckpointReport): void {
  parentPort!.postMessage(checkpointReport);
}

parentPort!.on('message', (message: string) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  connection.close();
  parentPort!.close();
});
