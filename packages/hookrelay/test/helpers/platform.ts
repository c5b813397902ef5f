import { loadConfig, type HookrelayConfig } from '../../src/config/config.js';
import { startServer, type RunningServer } from '../../src/server/start-server.js';
import { parseCidrList } from '../../src/transport/ssrf/cidr.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabase, type TestDatabase, type TestEngine } from './test-database.js';

export interface TestPlatform {
  server: RunningServer;
  config: HookrelayConfig;
  /** Its own database, dropped on close; `database.dir` is the data directory. */
  database: TestDatabase;
  token: string;
  /** Calls the API with the admin token; returns status and parsed JSON (or null). */
  api<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

export const TEST_TOKEN = 'test-admin-token';

export interface TestPlatformOptions extends Partial<HookrelayConfig> {
  /** 'sqlite' unless told. */
  engine?: TestEngine;
}

/**
 * The whole platform in this process, on a database of its own (a SQLite file in a temp directory,
 * or a fresh PostgreSQL database), on an ephemeral port, with loopback allowed for deliveries
 * (test receivers live on 127.0.0.1).
 */
export async function startTestPlatform(options: TestPlatformOptions = {}, env: NodeJS.ProcessEnv = {}): Promise<TestPlatform> {
  const { engine = 'sqlite', ...overrides } = options;
  const database = await createTestDatabase(engine);
  const config = {
    ...loadConfig({ HOOKRELAY_DATABASE_URL: database.url, HOOKRELAY_DATA_DIR: database.dir, PORT: '0', HOOKRELAY_API_KEY: TEST_TOKEN, HOOKRELAY_LOG_LEVEL: 'silent', ...env }),
    ssrfAllow: parseCidrList('127.0.0.1/32,::1/128', 'HOOKRELAY_SSRF_ALLOW'),
    ...overrides,
  };
  let server: RunningServer;
  try {
    server = await startServer(config, createLogger(config.logLevel, 'test'));
  } catch (error) {
    await database.drop();
    throw error;
  }
  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(server.url + path, {
      method,
      headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  return {
    server,
    config,
    database,
    token: TEST_TOKEN,
    api,
    async close() {
      await server.close();
      await database.drop();
    },
  };
}

/** Creates an application and one endpoint pointing at `url`; returns their ids and the secret. */
export async function createAppWithEndpoint(platform: TestPlatform, url: string, endpoint: Record<string, unknown> = {}) {
  const app = await platform.api('POST', '/api/v1/app', { name: 'test app' });
  if (app.status !== 201) throw new Error(`creating app: ${app.status} ${JSON.stringify(app.body)}`);
  const ep = await platform.api('POST', `/api/v1/app/${app.body.id}/endpoint`, { url, ...endpoint });
  if (ep.status !== 201) throw new Error(`creating endpoint: ${ep.status} ${JSON.stringify(ep.body)}`);
  const secret = await platform.api('GET', `/api/v1/app/${app.body.id}/endpoint/${ep.body.id}/secret`);
  return { appId: app.body.id as string, endpointId: ep.body.id as string, secret: secret.body.key as string };
}
