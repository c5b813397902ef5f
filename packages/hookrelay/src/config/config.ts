import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { leaseCoversRequest, minimumLeaseMs } from '../dispatch/start-margin.js';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../retry/retry-schedule.js';
import { parseCidrList, type Cidr } from '../transport/ssrf/cidr.js';
import { ConfigError } from './config-error.js';

export { ConfigError };

/**
 * What `hookrelay serve` runs: `api` the HTTP API alone (accepted messages wait as pending
 * deliveries for a worker), `worker` the dispatcher alone (with a small health and metrics
 * listener), `all` both in one process.
 */
export type ServerRole = 'api' | 'worker' | 'all';

export const SERVER_ROLES: readonly ServerRole[] = ['api', 'worker', 'all'];

/** The whole typed configuration. Every field comes from one setting in SETTINGS below. */
export interface HookrelayConfig {
  role: ServerRole;
  port: number;
  host: string;
  databaseUrl: string;
  /** Where the master key and the first API key are kept; null: the SQLite file's directory, or ./data. */
  dataDir: string | null;
  /** Connections each PostgreSQL pool opens at most (a process has two: API and dispatcher thread). */
  pgPoolSize: number;
  /** PostgreSQL statement_timeout of every pooled connection, in ms; 0 leaves the server's own setting. */
  pgStatementTimeoutMs: number;
  pgConnectTimeoutMs: number;
  /** When set, accepted as an admin bearer token besides the keys stored in the database. */
  apiKey: string | null;
  ssrfAllow: Cidr[];
  requireHttps: boolean;
  retryScheduleMs: number[];
  requestTimeoutMs: number;
  maxPayloadBytes: number;
  /** base64 of 32 bytes; null means "read or create the key file in the data directory". */
  masterKey: string | null;
  /** fsync every commit (SQLite synchronous=FULL): a 202 then survives power loss, not only a crash. */
  syncCommit: boolean;
  sendSvixHeaders: boolean;
  endpointConcurrency: number;
  dispatcherConcurrency: number;
  endpointDisableAfterMs: number;
  leaseMs: number;
  secretRotationGraceMs: number;
  idempotencyTtlMs: number;
  /** Messages (with their deliveries) and attempts older than this are deleted; 0 keeps them forever. */
  retentionMs: number;
  /** Rows one retention delete removes at most: each batch is a short transaction of its own. */
  retentionBatch: number;
  /** Pause between two retention sweeps (each sweep runs batches until nothing old is left). */
  retentionIntervalMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Run the dispatcher in a worker thread (default) so SQLite calls never block the API's event loop. */
  dispatcherThread: boolean;
}

type Parser<T> = (raw: string, setting: string) => T;

const integer = (min: number, max: number): Parser<number> => (raw, setting) => {
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(setting, `expected an integer, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(setting, `expected a value from ${min} to ${max}, got ${value}`);
  return value;
};

const boolean: Parser<boolean> = (raw, setting) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  throw new ConfigError(setting, `expected true or false, got "${raw}"`);
};

const text: Parser<string> = (raw) => raw;

const databaseUrl: Parser<string> = (raw, setting) => {
  if (raw.startsWith('sqlite:') || isPostgresUrl(raw)) return raw;
  throw new ConfigError(setting, `expected sqlite:<path> or postgres://..., got "${raw}"`);
};

const durationList: Parser<number[]> = (raw, setting) => {
  const parts = raw.split(',').map((p) => p.trim()).filter(Boolean);
  if (parts.length === 0) throw new ConfigError(setting, 'expected a comma-separated list of durations such as "0,5s,5m,30m,2h"');
  return parts.map((part) => parseDuration(part, setting));
};

const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

function parseDuration(part: string, setting: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(part);
  if (!match) throw new ConfigError(setting, `"${part}" is not a duration (use 500ms, 5s, 5m, 2h, 30d or plain seconds)`);
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[(match[2] ?? 's') as keyof typeof DURATION_UNITS_MS]);
}

const duration: Parser<number> = (raw, setting) => parseDuration(raw.trim(), setting);

const masterKey: Parser<string> = (raw, setting) => {
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length !== 32) throw new ConfigError(setting, 'expected 32 bytes encoded as base64 (openssl rand -base64 32)');
  return raw;
};

const logLevel: Parser<HookrelayConfig['logLevel']> = (raw, setting) => {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
  const found = levels.find((l) => l === raw);
  if (!found) throw new ConfigError(setting, `expected one of ${levels.join(', ')}, got "${raw}"`);
  return found;
};

const role: Parser<ServerRole> = (raw, setting) => {
  const found = SERVER_ROLES.find((r) => r === raw.trim());
  if (!found) throw new ConfigError(setting, `expected one of ${SERVER_ROLES.join(', ')}, got "${raw}"`);
  return found;
};

interface Setting<K extends keyof HookrelayConfig> {
  key: K;
  env: string;
  parse: Parser<NonNullable<HookrelayConfig[K]>>;
  default: HookrelayConfig[K];
  doc: string;
}

const setting = <K extends keyof HookrelayConfig>(s: Setting<K>): Setting<K> => s;

/** The single list of settings: the README's configuration reference is generated from the same docs. */
export const SETTINGS = [
  setting({ key: 'role', env: 'HOOKRELAY_ROLE', parse: role, default: 'all', doc: 'What `hookrelay serve` runs: api (HTTP API only), worker (dispatcher only) or all' }),
  setting({ key: 'port', env: 'PORT', parse: integer(0, 65535), default: 8080, doc: 'HTTP port of the API' }),
  setting({ key: 'host', env: 'HOST', parse: text, default: '127.0.0.1', doc: 'Interface the API listens on' }),
  setting({ key: 'databaseUrl', env: 'HOOKRELAY_DATABASE_URL', parse: databaseUrl, default: 'sqlite:./data/hookrelay.db', doc: 'sqlite:<path> or postgres://user:password@host:port/database' }),
  setting({ key: 'dataDir', env: 'HOOKRELAY_DATA_DIR', parse: text, default: null, doc: 'Directory of the master key and the first API key (default: the SQLite file\'s directory, or ./data with PostgreSQL)' }),
  setting({ key: 'pgPoolSize', env: 'HOOKRELAY_PG_POOL_SIZE', parse: integer(1, 1000), default: 10, doc: 'PostgreSQL connections per pool at most (the API and the dispatcher thread have one each)' }),
  setting({ key: 'pgStatementTimeoutMs', env: 'HOOKRELAY_PG_STATEMENT_TIMEOUT', parse: duration, default: 30_000, doc: 'PostgreSQL statement_timeout of every connection (30s); 0 leaves the server\'s own setting' }),
  setting({ key: 'pgConnectTimeoutMs', env: 'HOOKRELAY_PG_CONNECT_TIMEOUT', parse: duration, default: 10_000, doc: 'How long opening a PostgreSQL connection may take before it fails (10s); 0 waits forever' }),
  setting({ key: 'apiKey', env: 'HOOKRELAY_API_KEY', parse: text, default: null, doc: 'Extra admin bearer token for automation' }),
  setting({ key: 'ssrfAllow', env: 'HOOKRELAY_SSRF_ALLOW', parse: parseCidrList, default: [], doc: 'CIDRs deliveries may reach despite the SSRF guard, e.g. 127.0.0.1/32,::1/128' }),
  setting({ key: 'requireHttps', env: 'HOOKRELAY_REQUIRE_HTTPS', parse: boolean, default: false, doc: 'Refuse endpoint URLs that are not https' }),
  setting({ key: 'retryScheduleMs', env: 'HOOKRELAY_RETRY_SCHEDULE', parse: durationList, default: [...DEFAULT_RETRY_SCHEDULE_MS], doc: 'Delay before each attempt: 0,5s,5m,30m,2h,5h,10h,10h' }),
  setting({ key: 'requestTimeoutMs', env: 'HOOKRELAY_REQUEST_TIMEOUT', parse: duration, default: 15_000, doc: 'Timeout of one delivery request (15s); must be more than 0' }),
  setting({ key: 'maxPayloadBytes', env: 'HOOKRELAY_MAX_PAYLOAD_BYTES', parse: integer(1024, 64 * 1024 * 1024), default: 1024 * 1024, doc: 'Largest accepted request body (1 MiB)' }),
  setting({ key: 'masterKey', env: 'HOOKRELAY_MASTER_KEY', parse: masterKey, default: null, doc: 'base64 32-byte key encrypting endpoint secrets; generated into <data dir>/master.key when absent' }),
  setting({ key: 'syncCommit', env: 'HOOKRELAY_SYNC_COMMIT', parse: boolean, default: false, doc: 'fsync each (group) commit so accepted messages survive power loss' }),
  setting({ key: 'sendSvixHeaders', env: 'HOOKRELAY_SVIX_HEADERS', parse: boolean, default: false, doc: 'Also send svix-id, svix-timestamp, svix-signature' }),
  setting({ key: 'endpointConcurrency', env: 'HOOKRELAY_ENDPOINT_CONCURRENCY', parse: integer(1, 1000), default: 20, doc: 'Requests in flight to one endpoint at most' }),
  setting({ key: 'dispatcherConcurrency', env: 'HOOKRELAY_DISPATCHER_CONCURRENCY', parse: integer(1, 10000), default: 512, doc: 'Requests in flight per dispatcher at most' }),
  setting({ key: 'endpointDisableAfterMs', env: 'HOOKRELAY_ENDPOINT_DISABLE_AFTER', parse: duration, default: 5 * 86_400_000, doc: 'Disable an endpoint once every attempt to it has failed for this long, as Svix does (5d); 0 never disables' }),
  setting({ key: 'leaseMs', env: 'HOOKRELAY_LEASE', parse: duration, default: 60_000, doc: 'How long a claimed delivery stays reserved before another claim may take it (60s); at least twice HOOKRELAY_REQUEST_TIMEOUT' }),
  setting({ key: 'secretRotationGraceMs', env: 'HOOKRELAY_SECRET_ROTATION_GRACE', parse: duration, default: 24 * 3_600_000, doc: 'How long a rotated-out secret still signs (24h)' }),
  setting({ key: 'idempotencyTtlMs', env: 'HOOKRELAY_IDEMPOTENCY_TTL', parse: duration, default: 24 * 3_600_000, doc: 'How long an Idempotency-Key replays its response (24h)' }),
  setting({ key: 'retentionMs', env: 'HOOKRELAY_RETENTION', parse: duration, default: 30 * 86_400_000, doc: 'How long messages, their deliveries and attempts are kept (30d); 0 keeps them forever' }),
  setting({ key: 'retentionBatch', env: 'HOOKRELAY_RETENTION_BATCH', parse: integer(1, 100_000), default: 500, doc: 'Rows one retention delete removes at most (each batch is its own short transaction)' }),
  setting({ key: 'retentionIntervalMs', env: 'HOOKRELAY_RETENTION_INTERVAL', parse: duration, default: 60_000, doc: 'Pause between retention sweeps (1m)' }),
  setting({ key: 'logLevel', env: 'HOOKRELAY_LOG_LEVEL', parse: logLevel, default: 'info', doc: 'pino log level' }),
  setting({ key: 'dispatcherThread', env: 'HOOKRELAY_DISPATCHER_THREAD', parse: boolean, default: true, doc: 'Run the dispatcher in a worker thread' }),
] as const;

/**
 * Reads settings from an optional JSON file (HOOKRELAY_CONFIG_FILE, keys are the variable names)
 * and then the environment, which wins. Throws ConfigError naming the first bad setting.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<HookrelayConfig> = {}): HookrelayConfig {
  const fromFile = readConfigFile(env['HOOKRELAY_CONFIG_FILE']);
  const config: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const raw = env[s.env] ?? fromFile[s.env];
    config[s.key] = raw === undefined || raw === '' ? s.default : (s.parse as Parser<unknown>)(String(raw), s.env);
  }
  const merged = { ...config, ...overrides } as HookrelayConfig;
  if (merged.retryScheduleMs.length === 0) throw new ConfigError('HOOKRELAY_RETRY_SCHEDULE', 'needs at least one entry');
  // Only this one refusal: an api or worker process on a SQLite *file* works (leases and WAL keep
  // several processes correct), it is just not how Hookrelay scales (see docs/deploy.md).
  if (merged.role !== 'all' && !isPostgresUrl(merged.databaseUrl) && sqlitePath(merged.databaseUrl) === ':memory:') {
    throw new ConfigError('HOOKRELAY_ROLE', `role ${merged.role} needs a database other processes can open; an in-memory SQLite database is private to this process (use role all)`);
  }
  // 0 would mean no deadline at all (undici and the sender read 0 as "none"): a hanging receiver
  // would hold its request, and its lease, forever. Refused rather than given that meaning.
  if (merged.requestTimeoutMs <= 0) {
    throw new ConfigError('HOOKRELAY_REQUEST_TIMEOUT', `must be more than 0 (got ${merged.requestTimeoutMs} ms); a delivery request needs a deadline, e.g. 15s`);
  }
  // A lease that can run out while its request is still running lets another claim send the same
  // delivery again while nothing has crashed. A delivery waiting in memory is started with as little
  // as the dispatcher's start margin left (start-margin.ts), so the lease must cover the timeout
  // from there: at least the timeout plus that margin, which comes to twice the timeout.
  if (!leaseCoversRequest(merged.leaseMs, merged.requestTimeoutMs)) {
    throw new ConfigError(
      'HOOKRELAY_LEASE',
      `${merged.leaseMs} ms is too short for HOOKRELAY_REQUEST_TIMEOUT ${merged.requestTimeoutMs} ms: the lease must be at least the request timeout plus the dispatcher's start margin (min(timeout + 1.02 s, lease / 2)), i.e. at least ${minimumLeaseMs(merged.requestTimeoutMs)} ms (twice the timeout), or a delivery still in flight could be claimed and sent again; raise HOOKRELAY_LEASE or lower HOOKRELAY_REQUEST_TIMEOUT`,
    );
  }
  // A sweep that finds nothing costs a few indexed reads; more often than every second is a mistake.
  if (merged.retentionIntervalMs < 1_000) throw new ConfigError('HOOKRELAY_RETENTION_INTERVAL', 'must be at least 1s');
  return Object.freeze(merged);
}

function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError('HOOKRELAY_CONFIG_FILE', `cannot read ${path} as JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('HOOKRELAY_CONFIG_FILE', `${path} must hold a JSON object of SETTING: value`);
  }
  const known = new Set<string>(SETTINGS.map((s) => s.env));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(key, `unknown setting in ${path}`);
  }
  return parsed as Record<string, unknown>;
}

/** The SQLite file path from `sqlite:<path>`; `sqlite::memory:` is allowed for tests. */
export function sqlitePath(databaseUrl: string): string {
  return databaseUrl.slice('sqlite:'.length);
}

export function isPostgresUrl(databaseUrl: string): boolean {
  return databaseUrl.startsWith('postgres://') || databaseUrl.startsWith('postgresql://');
}

/**
 * The data directory: the master key and the first API key live there. HOOKRELAY_DATA_DIR, or else
 * the SQLite file's directory, or ./data (PostgreSQL, or an in-memory SQLite database).
 */
export function dataDirectory(config: Pick<HookrelayConfig, 'databaseUrl' | 'dataDir'>): string {
  if (config.dataDir !== null) return config.dataDir;
  const path = isPostgresUrl(config.databaseUrl) ? null : sqlitePath(config.databaseUrl);
  return path === null || path === ':memory:' ? join(process.cwd(), 'data') : dirname(path);
}
