import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CommitBell } from '../src/storage/sqlite/commit-bell.js';
import { restartDue, startCheckpointer, type CheckpointReport } from '../src/storage/sqlite/checkpointer.js';
import { openSqliteConnection } from '../src/storage/sqlite/open-sqlite.js';

const MiB = 1024 * 1024;

/** Runs test/helpers/hot-path-writer.ts in a worker thread of its own. */
function writer(path: string, transactions: number, commitBell: CommitBell): Promise<void> {
  const worker = new Worker(new URL('./helpers/hot-path-writer.js', import.meta.url), { workerData: { path, transactions, commitBell: commitBell.buffer } });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited with ${code}`))));
  });
}

test('under writes that never pause, the WAL stays bounded: past its frame limit the checkpointer restarts it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-wal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'wal.db');
  // Held open for the whole test, so that the WAL file outlives the writers and can be measured.
  const reader = openSqliteConnection({ path, syncCommit: false });
  t.after(() => reader.close());
  reader.exec('CREATE TABLE events (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL); CREATE INDEX events_by_k ON events (k, id);');

  // Two writer threads and the checkpointer share one bell, as the API, the dispatcher and the
  // checkpointer of one process do.
  const bell = new CommitBell();
  const reports: CheckpointReport[] = [];
  const checkpointer = startCheckpointer(path, { intervalMs: 20, restartAtFrames: 256, commitBell: bell.buffer, onReport: (report) => reports.push(report) });
  t.after(() => checkpointer.stop());
  const transactionsEach = 600;
  await Promise.all([writer(path, transactionsEach, bell), writer(path, transactionsEach, bell)]);

  const rows = reader.prepare('SELECT count(*) AS n FROM events').get() as { n: number };
  assert.equal(rows.n, 2 * transactionsEach * 20, 'every committed row is there');
  // Without the RESTART the passive checkpoints never let the WAL start over while both writers
  // commit: it grew to about 70 MB here (the file keeps its largest size, so this is the peak).
  // With it, the WAL holds 256 frames (1 MiB) plus what the writers add before the next tick.
  const walBytes = statSync(`${path}-wal`).size;
  t.diagnostic(`WAL peak: ${(walBytes / MiB).toFixed(1)} MiB`);
  assert.ok(walBytes < 24 * MiB, `the WAL peaked at ${(walBytes / MiB).toFixed(1)} MiB`);
  // What the metrics are made of: the restarts, and how long each held the writers.
  const restarts = reports.filter((r) => r.restartHoldMs !== null);
  assert.ok(restarts.some((r) => r.restarted && r.walBytes === 0), 'a RESTART let the WAL start over');
  assert.ok(restarts.every((r) => r.restartHoldMs! >= 0));
  t.diagnostic(`${restarts.length} restarts; writers held ${Math.max(...restarts.map((r) => r.restartHoldMs!)).toFixed(1)} ms at most`);
});

test('a RESTART is due past the frame limit, once the passive copy reached the end of the WAL', () => {
  assert.equal(restartDue({ busy: 0, log: 255, checkpointed: 255 }, 256), false, 'under the limit');
  assert.equal(restartDue({ busy: 0, log: 256, checkpointed: 256 }, 256), true);
  assert.equal(restartDue({ busy: 0, log: 9_000, checkpointed: 9_000 }, 256), true);
  // A reader's snapshot held the copy back: a RESTART would hold writers off while waiting for it.
  assert.equal(restartDue({ busy: 0, log: 9_000, checkpointed: 4_000 }, 256), false);
});
