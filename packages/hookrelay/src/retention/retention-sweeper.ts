import type { Logger } from 'pino';
import { newRetentionCursor, type RetentionBatchResult, type Storage } from '../storage/storage.js';

export interface RetentionSweeperOptions {
  storage: Pick<Storage, 'retention'>;
  /** Messages and attempts older than this are deleted; 0 keeps them (expired idempotency keys still go). */
  retentionMs: number;
  /** Rows of each kind one batch deletes at most. */
  batchSize: number;
  /** Pause from the end of one sweep to the start of the next. */
  intervalMs: number;
  logger: Logger;
}

export interface RetentionSweeper {
  /** Ends the sweep at the next batch boundary (the batch running, if any, completes first). */
  stop(): Promise<void>;
}

/**
 * Deletes expired data in the background. A sweep runs batches until one finds less than a full
 * batch of every kind, then sleeps `intervalMs`. Between batches it pauses as long as the last
 * batch took: with SQLite's single writer, the API's commits and the dispatcher's outcomes then
 * get the write lock at least half the time however much there is to delete, and the event loop
 * of the process running the sweep is never held for more than one batch.
 *
 * The cutoff is fixed when a sweep starts, so a sweep always ends. Its batches carry one cursor,
 * so each starts where the last one stopped (RetentionCursor). A failing batch (database
 * unreachable) ends the sweep with an error logged; the next sweep tries again.
 */
export function startRetentionSweeper(options: RetentionSweeperOptions): RetentionSweeper {
  const { storage, retentionMs, batchSize, intervalMs, logger } = options;
  let stopped = false;
  let interrupt: (() => void) | null = null;

  /**
   * Sleeps `ms`, or less if stop() is called meanwhile. It ends through setImmediate, which runs
   * after the event loop has polled for I/O: requests that arrived during the last batch are taken
   * in before the next one starts. The timer does not keep the process alive.
   */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped) return resolve();
      const timer = setTimeout(() => setImmediate(done), ms);
      timer.unref();
      interrupt = done;
      function done() {
        clearTimeout(timer);
        interrupt = null;
        resolve();
      }
    });

  const sweep = async (): Promise<void> => {
    const startedAt = Date.now();
    const cutoff = retentionMs > 0 ? startedAt - retentionMs : 0;
    const total: RetentionBatchResult = { messages: 0, deliveries: 0, attempts: 0, idempotencyKeys: 0 };
    // One per sweep: what a sweep kept (a pending delivery's message) is looked at again by the next.
    const cursor = newRetentionCursor();
    let batches = 0;
    while (!stopped) {
      const batchStart = performance.now();
      const batch = await storage.retention.deleteExpiredBatch(cutoff, startedAt, batchSize, cursor);
      batches++;
      for (const kind of RESULT_KINDS) total[kind] += batch[kind];
      // Less than a full batch of every kind: nothing expired is left (deliveries go before the
      // messages they free, so a short delivery batch has freed every message it could).
      if (RESULT_KINDS.every((kind) => batch[kind] < batchSize)) break;
      await pause(Math.max(1, performance.now() - batchStart));
    }
    if (RESULT_KINDS.some((kind) => total[kind] > 0)) {
      logger.info({ ...total, batches, cutoff: cutoff > 0 ? new Date(cutoff).toISOString() : null, durationMs: Date.now() - startedAt }, 'retention: deleted expired data');
    }
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        await sweep();
      } catch (error) {
        logger.error({ err: error }, 'retention sweep failed; trying again after the interval');
      }
      await pause(intervalMs);
    }
  })();

  return {
    async stop() {
      stopped = true;
      interrupt?.();
      await loop;
    },
  };
}

const RESULT_KINDS = ['messages', 'deliveries', 'attempts', 'idempotencyKeys'] as const satisfies readonly (keyof RetentionBatchResult)[];
