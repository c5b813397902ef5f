import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/build-app.js';
import { loadConfig, type HookrelayConfig } from '../../src/config/config.js';
import { MessageIngestor, type MessageAccepter } from '../../src/ingest/message-ingestor.js';
import { SecretBox } from '../../src/secrets/secret-box.js';
import type BetterSqlite3 from 'better-sqlite3';
import { assembleStorage } from '../../src/storage/open-storage.js';
import { createSqliteKysely, migrateSqlite, openSqliteConnection } from '../../src/storage/sqlite/open-sqlite.js';
import type { Storage } from '../../src/storage/storage.js';

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
  dir: string;
  dbPath: string;
  app: FastifyInstance;
  storage: Storage;
  /** The SQLite connection under `storage` (closing it makes the database stop answering). */
  connection: BetterSqlite3.Database;
  config: HookrelayConfig;
  /** How many times the API woke the dispatcher. */
  wakes: number;
  request(method: string, path: string, options?: RequestOptions): Promise<ApiResponse>;
  /** Stops the server and closes storage; the directory is kept when `keepDir` (to reopen it). */
  close(options?: { keepDir?: boolean }): Promise<void>;
}

export interface HarnessOptions {
  /** Reuse a directory from a previous harness (same database file). */
  dir?: string;
  config?: Partial<HookrelayConfig>;
  /** Wraps the real ingestor, e.g. to inject a failure. */
  wrapMessages?: (real: MessageAccepter) => MessageAccepter;
}

/** A fixed test master key, so a harness reopened on the same directory can read its secrets. */
const MASTER_KEY = createHash('sha256').update('hookrelay api tests').digest();

/**
 * The real API over a real SQLite file in a temp directory, listening on 127.0.0.1 with an
 * ephemeral port, with the real storage and ingestor. Nothing is mocked except the dispatcher,
 * whose wake-ups are counted.
 */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'hookrelay-api-'));
  const dbPath = join(dir, 'hookrelay.db');
  const config = loadConfig({}, { databaseUrl: `sqlite:${dbPath}`, apiKey: ADMIN_KEY, ...options.config });
  // What openStorage does, keeping hold of the connection.
  const connection = openSqliteConnection({ path: dbPath, syncCommit: false });
  migrateSqlite(connection);
  const storage = assembleStorage('sqlite', createSqliteKysely(connection), new SecretBox(MASTER_KEY));
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
    logger: false,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the server has no TCP address');
  const url = `http://127.0.0.1:${address.port}`;

  return Object.assign(harness, {
    url,
    dir,
    dbPath,
    app,
    storage,
    connection,
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
    async close(closeOptions: { keepDir?: boolean } = {}): Promise<void> {
      await app.close();
      await storage.close();
      if (!closeOptions.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Every row of every table, read through a separate connection (WAL lets it read while the API runs). */
export function dumpDatabase(dbPath: string): Record<string, unknown[]> {
  const connection = openSqliteConnection({ path: dbPath, syncCommit: false });
  try {
    const tables = (connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    const dump: Record<string, unknown[]> = {};
    for (const table of tables) dump[table] = connection.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).all();
    return dump;
  } finally {
    connection.close();
  }
}
