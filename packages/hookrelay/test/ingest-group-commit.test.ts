import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageIngestor } from '../src/ingest/message-ingestor.js';
import type { AcceptItem, AcceptOutcome, Storage } from '../src/storage/storage.js';
import { waitFor } from './helpers/wait-for.js';

/**
 * The group commit's scheduling, against a store whose writes finish only when the test says so:
 * which groups are written, and how many at once.
 */
function blockingStore() {
  const writes: { items: readonly AcceptItem[]; finish: () => void }[] = [];
  let finished = 0;
  const storage = {
    ingest: {
      acceptBatch: (items: readonly AcceptItem[]) =>
        new Promise<AcceptOutcome[]>((resolve) => {
          writes.push({
            items,
            finish: () => {
              finished += 1;
              resolve(items.map(() => ({ ok: true, deliveries: [] })));
            },
          });
        }),
    },
  } as unknown as Storage;
  return { storage, writes, inFlight: () => writes.length - finished };
}

const input = (n: number) => ({ eventType: 'order.created', payload: `{"n":${n}}`, eventId: null, channels: null, tags: null });

/** Enough turns of the event loop for a group that could start to have started. */
async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('one group in flight: arrivals during a write wait, then share the next group', async () => {
  const { storage, writes, inFlight } = blockingStore();
  const ingestor = new MessageIngestor(storage, () => {});
  const first = ingestor.accept('app_1', input(1), null);
  await waitFor('the first group to be written', () => writes.length === 1);
  const later = [2, 3, 4].map((n) => ingestor.accept('app_1', input(n), null));
  await turns();
  assert.equal(writes.length, 1, 'no second write while the first is in flight');
  writes[0]!.finish();
  await first;
  await waitFor('the waiting messages to be written', () => writes.length === 2);
  assert.equal(writes[1]!.items.length, 3, 'the three that waited go in one group');
  assert.equal(inFlight(), 1);
  writes[1]!.finish();
  await Promise.all(later);
});

test('two groups in flight (PostgreSQL): a second group is written while the first is, a third waits', async () => {
  const { storage, writes, inFlight } = blockingStore();
  const ingestor = new MessageIngestor(storage, () => {}, null, 2);
  const first = ingestor.accept('app_1', input(1), null);
  await waitFor('the first group to be written', () => writes.length === 1);
  const second = [2, 3].map((n) => ingestor.accept('app_1', input(n), null));
  await waitFor('a second group while the first is in flight', () => writes.length === 2);
  assert.deepEqual(writes[1]!.items.map((i) => i.message.payload), ['{"n":2}', '{"n":3}']);
  assert.equal(inFlight(), 2);

  const third = [4, 5, 6].map((n) => ingestor.accept('app_1', input(n), null));
  await turns();
  assert.equal(writes.length, 2, 'no third write while two are in flight');
  writes[1]!.finish();
  await Promise.all(second);
  await waitFor('the waiting messages once a slot is free', () => writes.length === 3);
  assert.equal(writes[2]!.items.length, 3);
  writes[0]!.finish();
  writes[2]!.finish();
  const accepted = await Promise.all([first, ...third]);
  assert.equal(new Set(accepted.map((m) => m.id)).size, 4, 'every caller gets its own message once its group is written');
});
