import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CommitBell } from '../src/storage/sqlite/commit-bell.js';
import { SqliteHotPath } from '../src/storage/sqlite/sqlite-hot-path.js';
import { createSqliteKysely, openSqliteConnection } from '../src/storage/sqlite/open-sqlite.js';
import { waitFor } from './helpers/wait-for.js';

const require = createRequire(import.meta.url);

/** A SQLite file with one table, and a cleanup. */
function scratchDatabase(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-bell-'));
  const path = join(dir, 'bell.db');
  const setup = openSqliteConnection({ path, syncCommit: false });
  setup.exec('CREATE TABLE rows (n INTEGER)');
  setup.close();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path;
}

/** A hot path on a connection of its own; polls only every `pollMs` for writers that do not ring. */
function hotPathOn(path: string, bell: CommitBell | null, pollMs: number, t: { after(fn: () => Promise<void>): void }) {
  const connection = openSqliteConnection({ path, syncCommit: false });
  const db = createSqliteKysely(connection);
  t.after(() => db.destroy());
  return { hotPath: new SqliteHotPath(db, connection, bell, pollMs), connection };
}

test('a hot-path transaction rings the bell when it commits and when it rolls back', async (t) => {
  const path = scratchDatabase(t);
  const bell = new CommitBell();
  const { hotPath, connection } = hotPathOn(path, bell, 1, t);
  await hotPath.transaction(() => connection.prepare('INSERT INTO rows VALUES (1)').run());
  assert.equal(bell.rings(), 1);
  await assert.rejects(hotPath.transaction(() => {
    connection.prepare('INSERT INTO rows VALUES (2)').run();
    throw new Error('work failed');
  }), /work failed/);
  assert.equal(bell.rings(), 2);
  assert.deepEqual(connection.prepare('SELECT n FROM rows').all(), [{ n: 1 }], 'the failed transaction was rolled back');
});

test('a transaction waiting for the write lock begins when another thread rings, not at its next poll', async (t) => {
  const path = scratchDatabase(t);
  // The waiter's poll is a minute: only the bell can wake it within the test's bounds.
  const waiterBell = new CommitBell();
  const { hotPath, connection } = hotPathOn(path, waiterBell, 60_000, t);

  // Another thread of the process takes the write lock and holds it until told to commit, then
  // rings the same bell (the same shared memory) as the dispatcher thread's hot path does.
  const holder = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const Database = require(workerData.betterSqlite3);
     const db = new Database(workerData.path);
     const count = new Int32Array(workerData.bell);
     db.exec('BEGIN IMMEDIATE');
     db.exec('INSERT INTO rows VALUES (1)');
     parentPort.postMessage('holding');
     parentPort.once('message', () => {
       db.exec('COMMIT');
       Atomics.add(count, 0, 1);
       Atomics.notify(count, 0);
       db.close();
       parentPort.postMessage('committed');
     });`,
    { eval: true, workerData: { path, bell: waiterBell.buffer, betterSqlite3: require.resolve('better-sqlite3') } },
  );
  t.after(() => holder.terminate());
  const messages: string[] = [];
  holder.on('message', (message: string) => messages.push(message));
  await waitFor('the other thread holding the write lock', () => messages.includes('holding'));

  let done = false;
  const waiting = hotPath.transaction(() => connection.prepare('INSERT INTO rows VALUES (2)').run()).then(() => (done = true));
  // It tried, found the lock taken, tried again on the next turn, and now waits for the bell.
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false, 'the write lock is held by the other thread');

  holder.postMessage('commit');
  await waitFor('the waiting transaction to begin and commit', () => done, 10_000);
  await waiting;
  assert.deepEqual(connection.prepare('SELECT n FROM rows ORDER BY n').all(), [{ n: 1 }, { n: 2 }]);
});

test('without a ring, a waiting transaction still polls for writers that do not ring', async (t) => {
  const path = scratchDatabase(t);
  const { hotPath, connection } = hotPathOn(path, new CommitBell(), 1, t);
  const other = openSqliteConnection({ path, syncCommit: false });
  t.after(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  let done = false;
  const waiting = hotPath.transaction(() => connection.prepare('INSERT INTO rows VALUES (2)').run()).then(() => (done = true));
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false);
  other.exec('COMMIT'); // no ring: a Kysely transaction, or another process
  await waitFor('the waiting transaction', () => done, 10_000);
  await waiting;
});

test('while the checkpointer holds writers off, a transaction waits for it to let go', async (t) => {
  const path = scratchDatabase(t);
  const bell = new CommitBell();
  // A minute's poll: only the release's ring can start it within the test's bounds.
  const { hotPath, connection } = hotPathOn(path, bell, 60_000, t);
  bell.holdWriters();
  let done = false;
  const waiting = hotPath.transaction(() => connection.prepare('INSERT INTO rows VALUES (1)').run()).then(() => (done = true));
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false, 'the lock is free, but the writer holds off');
  bell.releaseWriters();
  await waitFor('the transaction to begin once released', () => done, 10_000);
  await waiting;
  assert.deepEqual(connection.prepare('SELECT n FROM rows').all(), [{ n: 1 }]);
});

test('a hold that is never released delays a transaction for a bounded time only', async (t) => {
  const path = scratchDatabase(t);
  const bell = new CommitBell();
  const { hotPath, connection } = hotPathOn(path, bell, 60_000, t);
  bell.holdWriters(); // a checkpointer that died holding: writers must not stall for good
  const started = Date.now();
  let done = false;
  const waiting = hotPath.transaction(() => connection.prepare('INSERT INTO rows VALUES (1)').run()).then(() => (done = true));
  await waitFor('the transaction despite the hold', () => done, 10_000);
  await waiting;
  assert.ok(Date.now() - started >= 900, 'it held off for about a second first');
  assert.equal(bell.writersHeld(), true);
});
