import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { Client } from 'pg';
import { PostgresWakeSignal, WAKE_CHANNEL } from '../src/storage/postgres/postgres-wake-signal.js';
import { LocalWakeSignal } from '../src/storage/wake-signal.js';
import { createTestDatabase, postgresDatabaseName, POSTGRES_SKIP_REASON, TEST_POSTGRES_URL, type TestDatabase } from './helpers/test-database.js';
import { waitFor } from './helpers/wait-for.js';

test('the in-process wake signal wakes each subscription until it is unsubscribed', async () => {
  const signal = new LocalWakeSignal();
  let a = 0;
  let b = 0;
  const unsubscribeA = signal.subscribe(() => a++);
  signal.subscribe(() => b++);
  signal.notify();
  unsubscribeA();
  signal.notify();
  assert.deepEqual([a, b], [1, 2]);
  assert.equal(signal.connected, true);
  await signal.close();
  signal.notify();
  assert.equal(b, 2, 'closed: nobody is woken');
});

/** Backends of `database` whose application_name is the wake signal's. */
async function wakeBackends(admin: Client, database: string): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'hookrelay-wake'", [database]);
  return rows.map((r) => r.pid);
}

if (!TEST_POSTGRES_URL) test('PostgreSQL wake signal (LISTEN/NOTIFY)', { skip: POSTGRES_SKIP_REASON }, () => {});
else describe('PostgreSQL wake signal (LISTEN/NOTIFY)', () => {
  let database: TestDatabase;
  let admin: Client;
  const name = () => postgresDatabaseName(database.url);
  const opened: PostgresWakeSignal[] = [];
  const open = async (listen: boolean, onDisconnect?: () => void) => {
    const signal = await PostgresWakeSignal.open({ url: database.url, listen, backoff: { minMs: 20, maxMs: 200 }, ...(onDisconnect ? { onDisconnect } : {}) });
    opened.push(signal);
    return signal;
  };
  before(async () => {
    database = await createTestDatabase('postgres');
    // On the server's own database: ALTER DATABASE cannot act on the database it is connected to.
    admin = new Client({ connectionString: TEST_POSTGRES_URL! });
    await admin.connect();
  });
  after(async () => {
    for (const signal of opened) await signal.close();
    await admin?.end();
    await database?.drop();
  });

  it('a notify reaches the listeners of other connections, and wakes its own process once, not twice', async () => {
    const sender = await open(true);
    const listener = await open(true);
    let own = 0;
    let other = 0;
    sender.subscribe(() => own++);
    listener.subscribe(() => other++);
    sender.notify();
    assert.equal(own, 1, 'its own subscribers are woken at once');
    await waitFor('the other connection to hear it', () => other === 1);
    // A second notify that the listener hears proves the first one's echo was not delivered late.
    sender.notify();
    await waitFor('the second wake-up', () => other === 2);
    assert.equal(own, 2, 'the echo of its own NOTIFY does not wake the sender again');
  });

  it('a burst of notify calls is carried by one NOTIFY or two, not one per call', async () => {
    const sender = await open(false);
    const listener = await open(true);
    let heard = 0;
    listener.subscribe(() => heard++);
    for (let i = 0; i < 1_000; i++) sender.notify();
    await waitFor('the burst to be heard', () => heard > 0);
    // One more notification after the burst: once it is heard, everything before it was too.
    const probe = new Client({ connectionString: database.url });
    await probe.connect();
    await probe.query(`NOTIFY ${WAKE_CHANNEL}`);
    await probe.end();
    await waitFor('the probe to be heard', () => heard >= 2);
    assert.ok(heard - 1 <= 2, `the burst of 1,000 calls was carried by ${heard - 1} notifications`);
  });

  it('a listener whose connection is killed reconnects by itself, wakes its subscribers once, and hears again', async () => {
    let disconnects = 0;
    const listener = await open(true, () => disconnects++);
    const sender = await open(false);
    let heard = 0;
    listener.subscribe(() => heard++);
    const before = new Set(await wakeBackends(admin, name()));
    for (const pid of before) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitFor('the disconnection to be noticed', () => disconnects > 0);
    await waitFor('both to be connected again', () => listener.connected && sender.connected, 10_000);
    assert.ok(heard >= 1, 'reconnecting woke the subscribers (wake-ups may have been missed meanwhile)');
    const afterReconnect = heard;
    sender.notify();
    await waitFor('a wake-up over the new connection', () => heard > afterReconnect);
  });

  it('while the database refuses connections it keeps retrying, and comes back when they are allowed', async () => {
    const listener = await open(true);
    let heard = 0;
    listener.subscribe(() => heard++);
    await admin.query(`ALTER DATABASE "${name()}" ALLOW_CONNECTIONS false`);
    try {
      for (const pid of await wakeBackends(admin, name())) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor('the listener to be down', () => !listener.connected);
      listener.notify(); // down: wakes this process only, and does not throw
    } finally {
      await admin.query(`ALTER DATABASE "${name()}" ALLOW_CONNECTIONS true`);
    }
    await waitFor('the listener to reconnect', () => listener.connected, 10_000);
    const sender = await open(false);
    const before = heard;
    sender.notify();
    await waitFor('a wake-up after the outage', () => heard > before);
  });
});
