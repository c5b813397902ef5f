import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { HookrelayConfig } from '../config/config.js';
import type { Storage } from '../storage/storage.js';
import { startDispatcher } from './start-dispatcher.js';
import type { FromHost, ToHost } from './thread-messages.js';
import type { DeliveryHandoff } from '../ingest/delivery-handoff.js';

/** A cap's worth started and a cap's worth waiting (Dispatcher #canStartOrWait). */
function handoffEndpointLimit(config: HookrelayConfig): number {
  return 2 * config.endpointConcurrency;
}

/** What the API side holds of a dispatcher, wherever it runs. */
export interface DispatcherHandle {
  /** New deliveries were committed: claim them now. Calls within one tick are coalesced. */
  wake(): void;
  metricsJson(): Promise<unknown[]>;
  /** The in-memory fast path from the ingestor to this dispatcher. */
  handoff: DeliveryHandoff;
  /** Started and neither stopping nor dead (readiness). */
  isRunning(): boolean;
  stop(): Promise<void>;
}

/**
 * Runs the dispatcher in a worker thread with its own database connection (on SQLite, ringing
 * `commitBell` with the API's, see storage/sqlite/commit-bell.ts). `onFailure` is called
 * if the thread dies while not being stopped: nothing would deliver any more, so the caller should
 * stop the process and let its supervisor restart it (leases hand the work to the next start).
 */
export async function startDispatcherThread(config: HookrelayConfig, masterKey: Buffer, logger: Logger, onFailure: (error: Error) => void, commitBell?: SharedArrayBuffer): Promise<DispatcherHandle> {
  const worker = new Worker(new URL('./dispatcher-thread.js', import.meta.url), {
    workerData: { config, masterKey: masterKey.toString('base64'), ...(commitBell ? { commitBell } : {}) },
  });
  const metricRequests = new Map<number, (metrics: unknown[]) => void>();
  let nextRequestId = 1;
  let stopped: (() => void) | null = null;
  let exited = false;
  let stopping = false;
  // A mirror of the dispatcher's capacity, updated by its messages: the handoff's admission test
  // must answer synchronously inside the ingest transaction.
  const saturated = new Set<string>();
  let full = false;
  const post = (message: FromHost) => worker.postMessage(message);

  await new Promise<void>((resolve, reject) => {
    worker.on('message', (message: ToHost) => {
      if (message.type === 'ready') resolve();
      else if (message.type === 'metrics') {
        metricRequests.get(message.requestId)?.(message.metrics);
        metricRequests.delete(message.requestId);
      } else if (message.type === 'capacity') {
        const { endpointId, saturated: isSaturated } = message.change;
        if (endpointId === null) full = isSaturated;
        else if (isSaturated) saturated.add(endpointId);
        else saturated.delete(endpointId);
      } else if (message.type === 'stopped') stopped?.();
    });
    worker.once('error', (error) => {
      logger.fatal({ err: error }, 'dispatcher thread failed');
      reject(error);
    });
    worker.once('exit', (code) => {
      exited = true;
      for (const respond of metricRequests.values()) respond([]);
      metricRequests.clear();
      stopped?.();
      if (!stopping) {
        const error = new Error(`dispatcher thread exited with code ${code}`);
        logger.fatal({ code }, 'dispatcher thread exited');
        reject(error);
        onFailure(error);
      }
    });
  });

  let wakePending = false;
  return {
    wake() {
      if (wakePending || exited) return;
      wakePending = true;
      queueMicrotask(() => {
        wakePending = false;
        if (!exited) post({ type: 'wake' });
      });
    },
    handoff: {
      leaseMs: config.leaseMs,
      endpointLimit: handoffEndpointLimit(config),
      accepts: (endpointId) => !exited && !stopping && !full && !saturated.has(endpointId),
      handOff: (deliveries) => post({ type: 'handoff', deliveries }),
    },
    isRunning: () => !exited && !stopping,
    metricsJson() {
      if (exited) return Promise.resolve([]);
      const requestId = nextRequestId++;
      return new Promise((resolve) => {
        metricRequests.set(requestId, resolve);
        post({ type: 'metrics', requestId });
      });
    },
    async stop() {
      if (exited) return;
      stopping = true;
      await new Promise<void>((resolve) => {
        stopped = resolve;
        post({ type: 'stop' });
      });
      await worker.terminate();
    },
  };
}

/** Runs the dispatcher on the API's event loop, sharing its storage (tests, small deployments). */
export function startDispatcherInProcess(config: HookrelayConfig, storage: Storage, logger: Logger): DispatcherHandle {
  const running = startDispatcher(config, storage, logger);
  let stopping = false;
  let stopped: Promise<void> | null = null;
  return {
    wake: () => running.dispatcher.wake(),
    handoff: {
      leaseMs: config.leaseMs,
      endpointLimit: handoffEndpointLimit(config),
      accepts: (endpointId) => running.dispatcher.accepts(endpointId),
      handOff: (deliveries) => {
        running.dispatcher.acceptHandoff(deliveries).catch((error: unknown) => logger.error({ err: error }, 'taking handed-off deliveries failed'));
      },
    },
    metricsJson: () => running.registry.getMetricsAsJSON(),
    isRunning: () => !stopping,
    // Idempotent: a second stop() waits for the first instead of closing the sender twice.
    stop: () => {
      stopping = true;
      return (stopped ??= running.stop());
    },
  };
}
