/**
 * Worker thread that checkpoints the SQLite WAL. A checkpoint copies WAL pages into the database
 * file; done by whichever connection commits past the threshold, it stalls that thread's event
 * loop (the API or the dispatcher) for as long as the copy takes. Here it runs beside them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const connection = new BetterSqlite3(path);
connection.pragma('busy_timeout = 1000');
connection.pragma('wal_autocheckpoint = 0');

const timer = setInterval(() => {
  try {
    // PASSIVE never waits for readers or writers: it copies what it can and tries again later.
    connection.pragma('wal_checkpoint(PASSIVE)');
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
