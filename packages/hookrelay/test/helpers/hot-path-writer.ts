/**
 * Worker thread for WAL tests: commits `transactions` transactions of 20 rows over 10 keys of an
 * index through the SQLite hot path, one per turn of the event loop, as the API's group commits and
 * the dispatcher's outcome batches do (each adds about a dozen pages to the WAL).
 */
import { workerData } from 'node:worker_threads';
import { CommitBell } from '../../src/storage/sqlite/commit-bell.js';
import { SqliteHotPath } from '../../src/storage/sqlite/sqlite-hot-path.js';
import { createSqliteKysely, openSqliteConnection } from '../../src/storage/sqlite/open-sqlite.js';

const { path, transactions, commitBell } = workerData as { path: string; transactions: number; commitBell: SharedArrayBuffer };
const connection = openSqliteConnection({ path, syncCommit: false });
const db = createSqliteKysely(connection);
const hotPath = new SqliteHotPath(db, connection, new CommitBell(commitBell));
const payload = 'x'.repeat(100);
for (let n = 0; n < transactions; n++) {
  await hotPath.transaction(() => {
    const insert = hotPath.statement('INSERT INTO events (k, v) VALUES (?, ?)');
    for (let i = 0; i < 20; i++) insert.run(`key${(n + i) % 10}`, payload);
  });
  await new Promise((resolve) => setImmediate(resolve));
}
await db.destroy();
