/**
 * Entry point of the dispatcher's worker thread. better-sqlite3 calls are synchronous, so the
 * dispatcher gets its own thread and connection: its claims and writes never block the API's
 * event loop, and the second core is used. On PostgreSQL it gets its own pool likewise.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { HookrelayConfig } from '../config/config.js';
import { openStorage } from '../storage/open-storage.js';
import { SecretBox } from '../secrets/secret-box.js';
import { createLogger } from '../observability/logger.js';
import { startDispatcher } from './start-dispatcher.js';
import type { FromHost, ToHost } from './thread-messages.js';

const { config, masterKey, commitBell } = workerData as { config: HookrelayConfig; masterKey: string; commitBell?: SharedArrayBuffer };
const port = parentPort!;
const logger = createLogger(config.logLevel, 'dispatcher');
const storage = await openStorage({
  database: config,
  secretBox: new SecretBox(Buffer.from(masterKey, 'base64')),
  migrate: false,
  // A lease or an outcome that a database crash takes back costs a repeated delivery, which
  // at-least-once allows; waiting for each commit's disk flush would cost throughput for nothing.
  dispatcherOnly: true,
  ...(commitBell ? { commitBell } : {}),
  onIdleError: (error) => logger.warn({ err: error }, 'an idle database connection failed; it will be replaced'),
});
const send = (message: ToHost) => port.postMessage(message);
const running = startDispatcher(config, storage, logger, (change) => send({ type: 'capacity', change }));

port.on('message', (message: FromHost) => {
  switch (message.type) {
    case 'wake':
      running.dispatcher.wake();
      break;
    case 'handoff':
      running.dispatcher.acceptHandoff(message.deliveries).catch((error: unknown) => {
        // The deliveries keep their lease; when it runs out the claim loop takes them.
        logger.error({ err: error, count: message.deliveries.length }, 'taking handed-off deliveries failed');
      });
      break;
    case 'metrics':
      void running.registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', requestId: message.requestId, metrics }));
      break;
    case 'stop':
      // Stopping while the database is away fails to give back the unstarted claims (their leases
      // lapse instead); the host must still hear 'stopped', or its shutdown would wait forever.
      void running
        .stop()
        .catch((error: unknown) => logger.error({ err: error }, 'stopping the dispatcher failed; its remaining claims are left to their leases'))
        .then(() => storage.close())
        .catch((error: unknown) => logger.warn({ err: error }, 'closing the database failed'))
        .then(() => send({ type: 'stopped' }));
      break;
  }
});
send({ type: 'ready' });
