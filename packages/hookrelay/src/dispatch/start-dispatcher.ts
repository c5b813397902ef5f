import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { HookrelayConfig } from '../config/config.js';
import type { Storage } from '../storage/storage.js';
import { WebhookSender } from '../transport/webhook-sender.js';
import { createDispatcherMetrics } from '../observability/metrics.js';
import { Dispatcher, type CapacityChange } from './dispatcher.js';

export interface RunningDispatcher {
  dispatcher: Dispatcher;
  registry: Registry;
  stop(): Promise<void>;
}

/** Wires a dispatcher to a storage, an undici sender and its own metrics registry. */
export function startDispatcher(config: HookrelayConfig, storage: Storage, logger: Logger, onCapacity?: (change: CapacityChange) => void): RunningDispatcher {
  const registry = new Registry();
  const sender = new WebhookSender({ timeoutMs: config.requestTimeoutMs, ssrfAllow: config.ssrfAllow });
  const dispatcher = new Dispatcher({
    storage,
    sender,
    metrics: createDispatcherMetrics(registry),
    logger,
    retryScheduleMs: config.retryScheduleMs,
    leaseMs: config.leaseMs,
    requestTimeoutMs: config.requestTimeoutMs,
    maxInFlight: config.dispatcherConcurrency,
    endpointConcurrency: config.endpointConcurrency,
    sendSvixHeaders: config.sendSvixHeaders,
    requireHttps: config.requireHttps,
    disableFailingEndpointsAfterMs: config.endpointDisableAfterMs > 0 ? config.endpointDisableAfterMs : null,
    ...(onCapacity ? { onCapacity } : {}),
  });
  dispatcher.start();
  return {
    dispatcher,
    registry,
    async stop() {
      await dispatcher.stop();
      await sender.close();
    },
  };
}
