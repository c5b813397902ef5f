import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from '../../src/api/build-app.js';
import { loadConfig, type HookrelayConfig } from '../../src/config/config.js';
import { MessageIngestor, type MessageAccepter } from '../../src/ingest/message-ingestor.js';
import { SecretBox } from '../../src/secrets/secret-box.js';
import { openStorage } from '../../src/storage/open-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import { createTestDatabase, type TestDatabase, type TestEngine } from './test-database.js';

export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when the body is empty. */
  body: any;
}

export interface RequestOptions {
  /** A value to send as JSON, or a raw string/Buffer sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Bearer token; null sends no Authorization header. Defaults to the admin key. */
  token?: string | null;
}

export interface Harness {
  url: string;
  /** The harness's own database (SQLite file or PostgreSQL database); `dump()` reads it. */
  database: TestDatabase;
  app: FastifyInstance;
  storage: Storage;
  config: HookrelayConfig;
  /** How many times the API woke the dispatcher. */
  wakes: number;
  request(method: string, path: string, options?: RequestOptions): Promise<ApiResponse>;
  /** Closes the connection (SQLite) or pool (PostgreSQL) under `storage`: the database stops answering. */
  disconnect(): Promise<void>;
  /** Stops the server and closes storage; the database is dropped unless `keepDatabase` (to reopen it). */
  close(options?: { keepDatabase?: boolean }): Promise<void>;
}

export interface HarnessOptions {
  /** 'sqlite' unless told; ignored when `database` is given. */
  engine?: TestEngine;
  /** Reuse the database of a previous harness closed with keepDatabase. */
  database?: TestDatabase;
  config?: Partial<HookrelayConfig>;
  /** Wraps the real ingestor, e.g. to inject a failure. */
  wrapMessages?: (real: MessageAccepter) => MessageAccepter;
  /** The API's logger (default: none), e.g. one that keeps its lines for the test to read. */
  logger?: Logger;
}

/** A fixed test master key, so a harness reopened on the same database can read its secrets. */
const MASTER_KEY = createHash('sha256').update('hookrelay api tests').digest();

/**
 * The real API over a real database of its own (a SQLite file in a temp directory, or a fresh
 * PostgreSQL database), listening on 127.0.0.1 with an ephemeral port, with the real storage and
 * ingestor. Nothing is mocked except the dispatcher, whose wake-ups are counted.
 */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const database = options.database ?? (await createTestDatabase(options.engine ?? 'sqlite'));
  const config = loadConfig({}, { databaseUrl: database.url, dataDir: database.dir, apiKey: ADMIN_KEY, ...options.config });
  const storage = await openStorage({ database: config, secretBox: new SecretBox(MASTER_KEY) });
  let disconnected = false;
  const harness = {
    wakes: 0,
  } as Harness;
  const app = await buildApp({
    config,
    storage,
    // As in start-server: the ingestor wakes the dispatcher when it wrote deliveries to claim.
    messages: (options.wrapMessages ?? ((real) => real))(
      new MessageIngestor(storage, (accepted) => {
        if (accepted.pending > 0) harness.wakes += 1;
      }),
    ),
    wakeDispatcher: () => {
      harness.wakes += 1;
    },
    renderMetrics: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '# HELP test_metric A test metric\ntest_metric 1\n' }),
    logger: options.logger ?? false,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the server has no TCP address');
  const url = `http://127.0.0.1:${address.port}`;

  return Object.assign(harness, {
    url,
    database,
    app,
    storage,
    config,
    async request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
      const headers: Record<string, string> = { ...opts.headers };
      const token = opts.token === undefined ? ADMIN_KEY : opts.token;
      if (token !== null) headers['authorization'] = `Bearer ${token}`;
      let body: string | Buffer | undefined;
      if (typeof opts.body === 'string' || Buffer.isBuffer(opts.body)) {
        body = opts.body;
      } else if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(url + path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await response.text();
      let parsed: unknown;
      if (text.length > 0 && (response.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text);
      return { status: response.status, headers: response.headers, text, body: parsed };
    },
    async disconnect(): Promise<void> {
      disconnected = true;
      await storage.close();
    },
    async close(closeOptions: { keepDatabase?: boolean } = {}): Promise<void> {
      await app.close();
      if (!disconnected) await storage.close();
      if (!closeOptions.keepDatabase) await database.drop();
    },
  });
}
