import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AggregatorRegistry, collectDefaultMetrics, Registry } from 'prom-client';
import { ConfigError } from '../config/config-error.js';
import { dataDirectory, isPostgresUrl, sqlitePath, type HookrelayConfig } from '../config/config.js';
import { loadMasterKey } from '../secrets/master-key.js';
import { SecretBox } from '../secrets/secret-box.js';
import { openStorage } from '../storage/open-storage.js';
import { CommitBell } from '../storage/sqlite/commit-bell.js';
import { startRetentionSweeper } from '../retention/retention-sweeper.js';
import { startCheckpointer, type Checkpointer } from '../storage/sqlite/checkpointer.js';
import type { Storage } from '../storage/storage.js';
import { openWakeSignal } from '../storage/open-wake-signal.js';
import type { WakeSignal } from '../storage/wake-signal.js';
import { MessageIngestor, type MessageAccepter } from '../ingest/message-ingestor.js';
import { startDispatcherInProcess, startDispatcherThread, type DispatcherHandle } from '../dispatch/dispatcher-host.js';
import { createApiMetrics, createBacklogMetrics, createCheckpointMetrics } from '../observability/metrics.js';
import { componentLogger, createLogger } from '../observability/logger.js';
import { buildApp, buildOperationsApp } from '../api/build-app.js';
import type { ProcessStatus } from '../api/routes/health-routes.js';

/**
 * Group commits written at once on PostgreSQL. One at a time, a group's round trips held back every
 * request that arrived meanwhile (the 202 took 11-50 ms at 1,000 msg/s); two overlap them, and
 * PostgreSQL flushes concurrent commits together. More would only make the groups smaller.
 */
const POSTGRES_GROUPS_IN_FLIGHT = 2;
import { generateApiKey, hashApiKey } from '../api/plugins/authenticate.js';

export interface RunningServer {
  /** http://host:port of the API (role worker: of its health and metrics listener). */
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
 * Starts what config.role asks for in this process, over storage (migrated first):
 * - `all`: the dispatcher (in a worker thread unless disabled) and the HTTP API, with the
 *   in-memory handoff between them;
 * - `api`: the HTTP API alone; accepted messages wait as pending deliveries for a worker;
 * - `worker`: the dispatcher alone, with a listener serving only /health, /health/ready and /metrics.
 * Either way it listens on config.host:config.port. Committed pending deliveries are announced on
 * the wake signal, which on PostgreSQL reaches the dispatchers of every process (LISTEN/NOTIFY).
 */
export async function startServer(config: HookrelayConfig, logger: Logger = createLogger(config.logLevel, config.role === 'worker' ? 'worker' : 'api')): Promise<RunningServer> {
  const dataDir = dataDirectory(config);
  const masterKey = loadMasterKey(config.masterKey, join(dataDir, 'master.key'), (file) =>
    logger.warn(
      { file },
      isPostgresUrl(config.databaseUrl)
        ? 'generated a new master key; every process sharing this PostgreSQL database must use this same key (set HOOKRELAY_MASTER_KEY to its contents), or the endpoint secrets one writes are unreadable to the others. Back it up'
        : 'generated a new master key; back it up: without it the stored endpoint secrets are unreadable',
    ),
  );
  // One commit bell for the threads of this process that write to a SQLite file (commit-bell.ts).
  const commitBell = isPostgresUrl(config.databaseUrl) ? undefined : new CommitBell().buffer;
  const storage = await openStorage({
    database: config,
    ...(commitBell ? { commitBell } : {}),
    secretBox: new SecretBox(masterKey),
    onIdleError: (error) => logger.warn({ err: error }, 'an idle database connection failed; it will be replaced'),
  });
  // A process with another key would fail every delivery (on PostgreSQL, silently for the others).
  if (!(await storage.endpoints.secretsReadable())) {
    await storage.close();
    throw new ConfigError(
      'HOOKRELAY_MASTER_KEY',
      'cannot decrypt the endpoint secrets stored in this database: they were sealed under another master key (every process sharing a database needs the same key)',
    );
  }
  const initialApiKey = await bootstrapApiKey(config, storage, dataDir, logger);
  // The WAL checkpointer is SQLite's alone; PostgreSQL checkpoints by itself.
  const databasePath = storage.engine === 'sqlite' ? sqlitePath(config.databaseUrl) : null;
  const registry = new Registry();
  const checkpointer: Checkpointer | null =
    databasePath === null || databasePath === ':memory:'
      ? null
      : startCheckpointer(databasePath, { ...(commitBell ? { commitBell } : {}), onReport: createCheckpointMetrics(registry) });

  const role = config.role;
  if (role !== 'all' && storage.engine === 'sqlite') {
    logger.warn({ role }, 'a split role on SQLite works (leases keep it correct), but other processes hear of new work only by polling (up to 1 s); scale out with PostgreSQL');
  }
  // An in-memory database is private to its connection, so the dispatcher must share this one.
  const inThread = config.dispatcherThread && databasePath !== ':memory:';
  let reportFailure: (error: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => (reportFailure = resolve));
  const dispatcher: DispatcherHandle | null =
    role === 'api'
      ? null
      : inThread
        ? await startDispatcherThread(config, masterKey, logger, (error) => reportFailure(error), commitBell)
        : startDispatcherInProcess(config, storage, componentLogger(logger, 'dispatcher'));

  const wakeSignal: WakeSignal = await openWakeSignal(config, {
    listen: dispatcher !== null,
    onDisconnect: (error, failures, retryInMs) => {
      // One warning per outage; the retries after it are routine until it ends.
      if (failures === 1) logger.warn({ err: error, retryInMs }, 'the wake-up connection to PostgreSQL is down; reconnecting (meanwhile other processes\' work is found by polling)');
      else logger.debug({ err: error, failures, retryInMs }, 'the wake-up connection is still down');
    },
    onReconnect: (failures) => logger.info({ failures }, 'the wake-up connection to PostgreSQL is back'),
  });
  if (dispatcher) wakeSignal.subscribe(() => dispatcher.wake());
  // Retention runs where deliveries run, so that API-only processes keep their event loop for requests.
  const retention = role === 'api' ? null : startRetentionSweeper({
    storage,
    retentionMs: config.retentionMs,
    batchSize: config.retentionBatch,
    intervalMs: config.retentionIntervalMs,
    logger: componentLogger(logger, 'retention'),
  });

  // The process's own health, under the names every Node dashboard knows: resident memory, CPU,
  // open file descriptors, heap, garbage collection, and the main event loop's delay (the API's).
  collectDefaultMetrics({ register: registry });
  createBacklogMetrics(registry, () => storage.deliveries.backlog(Date.now()));
  const renderMetrics = async () => {
    const [own, theirs] = await Promise.all([registry.getMetricsAsJSON(), dispatcher ? dispatcher.metricsJson() : []]);
    const merged = AggregatorRegistry.aggregate([own, theirs] as Parameters<typeof AggregatorRegistry.aggregate>[0]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  };
  const processStatus = (): ProcessStatus => ({
    role,
    required: dispatcher ? { dispatcher: dispatcher.isRunning() } : {},
    optional: storage.engine === 'postgres' ? { notifications: wakeSignal.connected } : {},
  });

  let app: FastifyInstance;
  if (role === 'worker') {
    app = await buildOperationsApp({ config, storage, renderMetrics, logger, processStatus });
  } else {
    const apiMetrics = createApiMetrics(registry);
    const ingestor: MessageAccepter = new MessageIngestor(
      storage,
      (accepted) => {
        apiMetrics.ingestGroupSize.observe(accepted.groupSize);
        apiMetrics.messagesAccepted.inc(accepted.messages);
        apiMetrics.deliveriesCreated.inc(accepted.deliveries);
        if (accepted.pending > 0) wakeSignal.notify();
      },
      // The handoff decides from this process's own counts whether an endpoint has a free slot.
      // On SQLite this process is the only dispatcher, so that is the whole truth; on PostgreSQL
      // other workers share the endpoint's cap, and only a claim can see their leases.
      storage.engine === 'sqlite' ? dispatcher?.handoff ?? null : null,
      storage.engine === 'postgres' ? POSTGRES_GROUPS_IN_FLIGHT : 1,
    );
    app = await buildApp({ config, storage, messages: ingestor, wakeDispatcher: () => wakeSignal.notify(), renderMetrics, logger, processStatus });
  }
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info(
    { url: `http://${host}:${port}`, role, database: withoutPassword(config.databaseUrl), dispatcher: dispatcher === null ? 'none' : inThread ? 'thread' : 'in-process' },
    role === 'worker' ? 'hookrelay worker running; health and metrics listening' : 'hookrelay listening',
  );

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
        await retention?.stop();
        await dispatcher?.stop();
        await wakeSignal.close();
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

/** The database URL for a log line: a PostgreSQL password does not belong in logs. */
function withoutPassword(databaseUrl: string): string {
  if (!isPostgresUrl(databaseUrl)) return databaseUrl;
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
