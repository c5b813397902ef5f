/**
 * Worker thread that checkpoints the SQLite WAL. A checkpoint copies WAL pages into the database
 * file; done by whichever connection commits past the threshold, it stalls that thread's event
 * loop (the API or the dispatcher) for as long as the copy takes. Here it runs beside them.
 *
 * A PASSIVE checkpoint never makes the WAL file shorter: the next writer starts writing it from
 * the beginning again only if, when it begins, every frame has been copied. Under load that never
 * pauses some commit always lands while the copy runs, so the WAL grew without end (hundreds of MB
 * in a minute of peak load, at about 5 KB per delivery). Past `restartAtFrames`, a RESTART
 * checkpoint takes the write lock, copies the few frames the passive one left, syncs, and waits
 * for readers to leave the WAL: the next commit then starts it over. That holds writers for one
 * copy and sync (a few ms) every few seconds of peak load, and never at ordinary rates.
 */
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { CommitBell } from './commit-bell.js';
import { restartDue, type CheckpointResult } from './checkpointer.js';

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

const timer = setInterval(() => {
  try {
    // PASSIVE never waits for readers or writers: it copies what it can and tries again later.
    const passive = checkpoint('PASSIVE');
    if (!restartDue(passive, restartAtFrames)) return;
    // Hot-path writers retry the lock at once when it frees, so a RESTART waiting in SQLite's busy
    // handler (which sleeps 1, 2, 5 ms... between tries) would rarely get it: they hold off meanwhile.
    bell?.holdWriters();
    try {
      checkpoint('RESTART');
    } finally {
      bell?.releaseWriters();
    }
  } catch {
    // SQLITE_BUSY or a locked file: the next tick tries again.
  }
}, intervalMs);

parentPort!.on('message', (message: string) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  connection.close();
  parentPort!.close();
});
