import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, dataDirectory, loadConfig } from '../src/config/config.js';
import { deliveryStartMarginMs, leaseCoversRequest, minimumLeaseMs } from '../src/dispatch/start-margin.js';

test('defaults match the README', () => {
  const config = loadConfig({});
  assert.equal(config.port, 8080);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.databaseUrl, 'sqlite:./data/hookrelay.db');
  assert.deepEqual(config.retryScheduleMs, [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
  assert.equal(config.requestTimeoutMs, 15_000);
  assert.equal(config.maxPayloadBytes, 1_048_576);
  assert.deepEqual(config.ssrfAllow, []);
  assert.equal(config.dataDir, null);
  assert.equal(config.pgPoolSize, 10);
  assert.equal(config.pgStatementTimeoutMs, 30_000);
  assert.equal(config.retentionMs, 30 * 86_400_000);
  assert.equal(config.retentionBatch, 500);
  assert.equal(config.retentionIntervalMs, 60_000);
});

test('durations take ms, s, m, h and d; plain numbers are seconds', () => {
  const retention = (raw: string) => loadConfig({ HOOKRELAY_RETENTION: raw }).retentionMs;
  assert.deepEqual(['250ms', '90', '1.5s', '5m', '2h', '30d', '0.5d', '0'].map(retention), [250, 90_000, 1_500, 300_000, 7_200_000, 2_592_000_000, 43_200_000, 0]);
  assert.throws(() => retention('30 days'), /HOOKRELAY_RETENTION.*30d/);
});

test('the data directory is HOOKRELAY_DATA_DIR, else the SQLite file\'s directory, else ./data', () => {
  assert.equal(dataDirectory(loadConfig({ HOOKRELAY_DATABASE_URL: 'sqlite:/var/lib/hookrelay/db.sqlite' })), '/var/lib/hookrelay');
  assert.equal(dataDirectory(loadConfig({ HOOKRELAY_DATABASE_URL: 'postgres://db.internal/hookrelay' })), join(process.cwd(), 'data'));
  assert.equal(dataDirectory(loadConfig({ HOOKRELAY_DATABASE_URL: 'postgresql://db.internal/hookrelay', HOOKRELAY_DATA_DIR: '/etc/hookrelay' })), '/etc/hookrelay');
});

test('every bad value names its setting', () => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ HOOKRELAY_DATABASE_URL: 'mysql://x' }, 'HOOKRELAY_DATABASE_URL'],
    [{ HOOKRELAY_SSRF_ALLOW: '10.0.0.0/33' }, 'HOOKRELAY_SSRF_ALLOW'],
    [{ HOOKRELAY_RETRY_SCHEDULE: '0,5x' }, 'HOOKRELAY_RETRY_SCHEDULE'],
    [{ HOOKRELAY_REQUEST_TIMEOUT: 'soon' }, 'HOOKRELAY_REQUEST_TIMEOUT'],
    [{ HOOKRELAY_MASTER_KEY: 'c2hvcnQ=' }, 'HOOKRELAY_MASTER_KEY'],
    [{ HOOKRELAY_SYNC_COMMIT: 'maybe' }, 'HOOKRELAY_SYNC_COMMIT'],
    [{ HOOKRELAY_LOG_LEVEL: 'loud' }, 'HOOKRELAY_LOG_LEVEL'],
    [{ HOOKRELAY_PG_POOL_SIZE: '0' }, 'HOOKRELAY_PG_POOL_SIZE'],
    [{ HOOKRELAY_PG_STATEMENT_TIMEOUT: 'soon' }, 'HOOKRELAY_PG_STATEMENT_TIMEOUT'],
    [{ HOOKRELAY_RETENTION: '1w' }, 'HOOKRELAY_RETENTION'],
    [{ HOOKRELAY_RETENTION_BATCH: '0' }, 'HOOKRELAY_RETENTION_BATCH'],
    [{ HOOKRELAY_RETENTION_INTERVAL: '0' }, 'HOOKRELAY_RETENTION_INTERVAL'],
    [{ HOOKRELAY_ENDPOINT_DISABLE_AFTER: 'never' }, 'HOOKRELAY_ENDPOINT_DISABLE_AFTER'],
    // 0 would be no deadline at all; it is refused rather than given that meaning.
    [{ HOOKRELAY_REQUEST_TIMEOUT: '0' }, 'HOOKRELAY_REQUEST_TIMEOUT'],
    [{ HOOKRELAY_REQUEST_TIMEOUT: '0ms', HOOKRELAY_LEASE: '1s' }, 'HOOKRELAY_REQUEST_TIMEOUT'],
    // The default request timeout is 15s: a 10s lease could lapse while its request still runs.
    [{ HOOKRELAY_LEASE: '10s' }, 'HOOKRELAY_LEASE'],
    [{ HOOKRELAY_LEASE: '5s', HOOKRELAY_REQUEST_TIMEOUT: '5s' }, 'HOOKRELAY_LEASE'],
    [{ HOOKRELAY_LEASE: '0' }, 'HOOKRELAY_LEASE'],
  ];
  assert.equal(loadConfig({ HOOKRELAY_LEASE: '2s', HOOKRELAY_REQUEST_TIMEOUT: '1s' }).leaseMs, 2_000);
  for (const [env, setting] of cases) {
    assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && error.setting === setting && error.message.includes(setting), setting);
  }
});

test('the lease covers the request timeout plus the dispatcher\'s start margin, or start-up is refused naming both settings', () => {
  // Longer than the timeout, but a delivery that waited in memory starts with as little as
  // min(timeout + 1.02 s, lease / 2) of its lease left: 3s - 1.5s < 2s, so it could lapse mid-request.
  const refused: Record<string, string>[] = [
    { HOOKRELAY_LEASE: '3s', HOOKRELAY_REQUEST_TIMEOUT: '2s' },
    { HOOKRELAY_LEASE: '25s' },
    { HOOKRELAY_LEASE: '29999ms', HOOKRELAY_REQUEST_TIMEOUT: '15s' },
    { HOOKRELAY_LEASE: '1h', HOOKRELAY_REQUEST_TIMEOUT: '31m' },
  ];
  for (const env of refused) {
    assert.throws(
      () => loadConfig(env),
      (error: unknown) =>
        error instanceof ConfigError && error.setting === 'HOOKRELAY_LEASE' && error.message.includes('HOOKRELAY_LEASE') && error.message.includes('HOOKRELAY_REQUEST_TIMEOUT'),
      JSON.stringify(env),
    );
  }
  // Set in the configuration file, they are checked alike.
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-config-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ HOOKRELAY_LEASE: '20s', HOOKRELAY_REQUEST_TIMEOUT: '15s' }));
  assert.throws(() => loadConfig({ HOOKRELAY_CONFIG_FILE: file }), /HOOKRELAY_LEASE.*HOOKRELAY_REQUEST_TIMEOUT/);
  // The defaults pass, and so does every lease from twice the timeout up.
  assert.equal(loadConfig({}).leaseMs, 60_000);
  for (const [lease, timeout] of [['30s', '15s'], ['31s', '15s'], ['4s', '2s'], ['2h', '30m'], ['60s', '1ms']] as const) {
    assert.doesNotThrow(() => loadConfig({ HOOKRELAY_LEASE: lease, HOOKRELAY_REQUEST_TIMEOUT: timeout }), `${lease} / ${timeout}`);
  }
});

test('the start-up check and the dispatcher use one start margin: the minimum lease is exactly the one that covers a request', () => {
  for (const timeout of [1, 7, 999, 1_000, 1_021, 5_000, 15_000, 600_000]) {
    const minimum = minimumLeaseMs(timeout);
    assert.ok(leaseCoversRequest(minimum, timeout), `${minimum} ms covers ${timeout} ms`);
    assert.ok(!leaseCoversRequest(minimum - 1, timeout), `${minimum - 1} ms does not cover ${timeout} ms`);
    // From the minimum up, a delivery started with the start margin left outlives its request.
    for (const lease of [minimum, minimum + 1, minimum + 2_040, minimum + 10_000]) {
      assert.ok(deliveryStartMarginMs(timeout, lease) >= timeout, `lease ${lease} ms, timeout ${timeout} ms`);
      assert.ok(leaseCoversRequest(lease, timeout));
    }
  }
});

test('settings come from a JSON file, and the environment wins', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-config-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ PORT: 9000, HOOKRELAY_RETRY_SCHEDULE: '0,1s', HOST: '0.0.0.0' }));
  const config = loadConfig({ HOOKRELAY_CONFIG_FILE: file, HOST: '::1' });
  assert.equal(config.port, 9000);
  assert.deepEqual(config.retryScheduleMs, [0, 1000]);
  assert.equal(config.host, '::1');
  writeFileSync(file, JSON.stringify({ PORTT: 1 }));
  assert.throws(() => loadConfig({ HOOKRELAY_CONFIG_FILE: file }), /PORTT/);
});

test('the CLI refuses to start on a bad setting, naming it', () => {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const result = spawnSync(process.execPath, [cli, 'serve'], { env: { ...process.env, PORT: 'not-a-port' }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(result.status, 78);
  assert.match(result.stderr, /Invalid setting PORT/);
});

test('the README documents every setting', async () => {
  const { readFileSync } = await import('node:fs');
  const { SETTINGS } = await import('../src/config/config.js');
  const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
  for (const s of SETTINGS) assert.ok(readme.includes('`' + s.env + '`'), `README lacks ${s.env}`);
  assert.ok(readme.includes('npm install && npm start') && readme.includes('npm test'));
});
