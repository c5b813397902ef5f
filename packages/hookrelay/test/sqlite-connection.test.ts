import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openSqliteConnection } from '../src/storage/sqlite/open-sqlite.js';

/**
 * A connection reads the database's pages with pread, never through a memory map of the file: on
 * the VMs this project runs on, a map's remaps and page faults cost about 4 % of the CPU per
 * delivery (docs/benchmarks.md, session 14), and a read error through a map is a SIGBUS that kills
 * the process rather than an error code. Seen from the outside: after the connection has written
 * and read a few megabytes, no mapping of the database file appears in /proc/self/maps (the WAL's
 * shared-memory index, the -shm file, is mapped by design).
 */
const MAPS = '/proc/self/maps';

describe('SQLite connections', () => {
  it('read the database file without mapping it into memory', { skip: existsSync(MAPS) ? false : `${MAPS} is Linux's; this platform has none` }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'hookrelay-sqlite-connection-'));
    const path = join(dir, 'hookrelay.db');
    const connection = openSqliteConnection({ path, syncCommit: false });
    try {
      connection.exec('CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
      const insert = connection.prepare('INSERT INTO filler (body) VALUES (?)');
      connection.transaction(() => {
        for (let i = 0; i < 2_000; i++) insert.run('x'.repeat(2_000));
      })();
      // Copy the WAL into the database file, so that the reads below come from the file itself.
      connection.pragma('wal_checkpoint(TRUNCATE)');
      const { total } = connection.prepare('SELECT sum(length(body)) AS total FROM filler').get() as { total: number };
      assert.equal(total, 4_000_000, 'the rows were written and read back');
      const mapped = readFileSync(MAPS, 'utf8')
        .split('\n')
        .filter((line) => line.endsWith(path));
      assert.deepEqual(mapped, [], 'no mapping of the database file itself');
    } finally {
      connection.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
