import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import { dataDirectory, isPostgresUrl, sqlitePath, type HookrelayConfig } from '../config/config.js';
import { loadMasterKey } from '../secrets/master-key.js';
import { SecretBox } from '../secrets/secret-box.js';
import { openStorage } from '../storage/open-storage.js';
import { startCheckpointer, type Checkpointer } from '../storage/sqlite/checkpointer.js';
import type { Storage } from '../storage/storage.js';
import { MessageIngestor } from '../ingest/message-ingestor.js';
import { startDispatcherInProcess, startDispatcherThread, type DispatcherHandle } from '../dispatch/dispatcher-host.js';
import { createApiMetrics, createBacklogMetrics } from '../observability/metrics.js';
import { createLogger } from '../observability/logger.js';
import { buildApp } from '../api/build-app.js';
import { generateApiKey, hashApiKey } from '../api/plugins/authenticate.js';

export interface RunningServer {
  /** http://host:port of the API. */
  url: string;
  port: number;
  app: FastifyInstance;
  storage: Storage;
  /** Set when this start created the first API key (fresh database, no HOOKRELAY_API_KEY). */
  initialApiKey: string | null;
  /** Settles if a part the server cannot run without (the dispatcher thread) fails. */
  failed: Promise<Error>;
  close(): Promise<void>;
}

/**
 * Starts the whole platform in this process: storage (migrated), the dispatcher (in a worker
 * thread unless disabled), and the HTTP API listening on config.host:config.port.
 */
export async function startServer(config: HookrelayConfig, logger: Logger = createLogger(config.logLevel, 'api')): Promise<RunningServer> {
  const dataDir = dataDirectory(config);
  const masterKey = loadMasterKey(config.masterKey, join(dataDir, 'master.key'), (file) =>
    logger.warn(
      { file },
      isPostgresUrl(config.databaseUrl)
        ? 'generated a new master key; every process sharing this PostgreSQL database must use this same key (set HOOKRELAY_MASTER_KEY to its contents), or the endpoint secrets one writes are unreadable to the others. Back it up'
        : 'generated a new master key; back it up: without it the stored endpoint secrets are unreadable',
    ),
  );
  const storage = await openStorage({
    database: config,
    secretBox: new SecretBox(masterKey),
    onIdleError: (error) => logger.warn({ err: error }, 'an idle database connection failed; it will be replaced'),
  });
  const initialApiKey = await bootstrapApiKey(config, storage, dataDir, logger);
  // The WAL checkpointer is SQLite's alone; PostgreSQL checkpoints by itself.
  const databasePath = storage.engine === 'sqlite' ? sqlitePath(config.databaseUrl) : null;
  const checkpointer: Checkpointer | null = databasePath === null || databasePath === ':memory:' ? null : startCheckpointer(databasePath);

  // An in-memory database is private to its connection, so the dispatcher must share this one.
  const inThread = config.dispatcherThread && databasePath !== ':memory:';
  let reportFailure: (error: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => (reportFailure = resolve));
  const dispatcher: DispatcherHandle = inThread
    ? await startDispatcherThread(config, masterKey, logger, (error) => reportFailure(error))
    : startDispatcherInProcess(config, storage, logger.child({ component: 'dispatcher' }));

  const registry = new Registry();
  const apiMetrics = createApiMetrics(registry);
  createBacklogMetrics(registry, () => storage.deliveries.backlog(Date.now()));
  const ingestor = new MessageIngestor(
    storage,
    (accepted) => {
      apiMetrics.ingestGroupSize.observe(accepted.groupSize);
      apiMetrics.messagesAccepted.inc(accepted.messages);
      apiMetrics.deliveriesCreated.inc(accepted.deliveries);
      if (accepted.pending > 0) dispatcher.wake();
    },
    dispatcher.handoff,
  );

  const app = await buildApp({
    config,
    storage,
    messages: ingestor,
    wakeDispatcher: () => dispatcher.wake(),
    renderMetrics: async () => {
      const [own, theirs] = await Promise.all([registry.getMetricsAsJSON(), dispatcher.metricsJson()]);
      const merged = AggregatorRegistry.aggregate([own, theirs] as Parameters<typeof AggregatorRegistry.aggregate>[0]);
      return { contentType: merged.contentType, body: await merged.metrics() };
    },
    logger,
  });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info({ url: `http://${host}:${port}`, database: config.databaseUrl, dispatcher: inThread ? 'thread' : 'in-process' }, 'hookrelay listening');

  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    port,
    app,
    storage,
    initialApiKey,
    failed,
    close() {
      // Stop taking requests (in-flight ones finish and commit), then drain the dispatcher.
      closing ??= (async () => {
        await app.close();
        await dispatcher.stop();
        await checkpointer?.stop();
        await storage.close();
      })();
      return closing;
    },
  };
}

/**
 * On a fresh database with no HOOKRELAY_API_KEY, creates the first admin key so the quick start
 * works, writes it to <data dir>/initial-api-key (owner-only) and logs where to find it.
 */
async function bootstrapApiKey(config: HookrelayConfig, storage: Storage, dataDir: string, logger: Logger): Promise<string | null> {
  if (config.apiKey || (await storage.apiKeys.count()) > 0) return null;
  const key = generateApiKey();
  await storage.apiKeys.create('initial', hashApiKey(key));
  const file = join(dataDir, 'initial-api-key');
  // With PostgreSQL nothing else has created the data directory (the master key may come from the environment).
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, key + '\n', { mode: 0o600 });
  logger.warn({ file }, 'created the first API key; it is stored hashed, and its only plain copy is this file');
  return key;
}
