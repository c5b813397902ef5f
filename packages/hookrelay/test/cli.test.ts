import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnServer, freePort } from './helpers/server-process.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function run(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
}

test('migrate, api-key create, first start: keys work, secrets are sealed, key files are owner-only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-cli-'));
  const env = { HOOKRELAY_DATABASE_URL: `sqlite:${join(dir, 'db', 'hookrelay.db')}`, HOOKRELAY_LOG_LEVEL: 'warn' };
  let server: Awaited<ReturnType<typeof spawnServer>> | null = null;
  t.after(() => {
    server?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const migrated = run(['migrate'], env);
  assert.equal(migrated.status, 0, migrated.stderr);
  assert.match(migrated.stdout, /applied migrations: 1/);
  assert.match(run(['migrate'], env).stdout, /up to date/);

  const created = run(['api-key', 'create', '--name', 'ci'], env);
  assert.equal(created.status, 0, created.stderr);
  const cliKey = created.stdout.trim();
  assert.match(cliKey, /^\S{20,}$/);
  assert.equal(statSync(join(dir, 'db', 'master.key')).mode & 0o777, 0o600);

  // A key already exists, so the first start creates none.
  server = await spawnServer(env, await freePort());
  assert.throws(() => statSync(join(dir, 'db', 'initial-api-key')));
  const ok = await fetch(server.url + '/api/v1/app', { headers: { authorization: `Bearer ${cliKey}` } });
  assert.equal(ok.status, 200);
  const wrong = await fetch(server.url + '/api/v1/app', { headers: { authorization: `Bearer ${cliKey}x` } });
  assert.equal(wrong.status, 401);
  assert.equal(((await wrong.json()) as { code: string }).code, 'authentication_failed');

  const secret = 'whsec_' + Buffer.alloc(32, 9).toString('base64');
  const app = (await (await fetch(server.url + '/api/v1/app', { method: 'POST', headers: { authorization: `Bearer ${cliKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'a' }) })).json()) as { id: string };
  const ep = await fetch(server.url + `/api/v1/app/${app.id}/endpoint`, { method: 'POST', headers: { authorization: `Bearer ${cliKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: 'https://example.invalid/hook', secret }) });
  assert.equal(ep.status, 201);
  server.child.kill('SIGTERM');
  assert.equal(await server.exited, 0);
  server = null;
  const files = ['hookrelay.db', 'hookrelay.db-wal'].map((f) => { try { return readFileSync(join(dir, 'db', f)); } catch { return Buffer.alloc(0); } });
  const secretBody = secret.slice('whsec_'.length);
  assert.ok(files.every((bytes) => !bytes.includes(secretBody) && !bytes.includes(Buffer.from(secretBody, 'base64'))), 'the endpoint secret is not stored in plain text');
  assert.ok(files.every((bytes) => !bytes.includes(cliKey)), 'the API key is not stored in plain text');

  // Another master key cannot open the stored secrets: the start is refused, naming the setting,
  // instead of a server whose every delivery would fail.
  const otherKey = Buffer.alloc(32, 7).toString('base64');
  const refused = run(['serve'], { ...env, HOOKRELAY_MASTER_KEY: otherKey, PORT: String(await freePort()) });
  assert.equal(refused.status, 78, refused.stderr);
  assert.match(refused.stderr, /HOOKRELAY_MASTER_KEY.*another master key/);
});

test('a fresh database gets a first API key in an owner-only file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookrelay-first-'));
  let server: Awaited<ReturnType<typeof spawnServer>> | null = null;
  t.after(() => {
    server?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  server = await spawnServer({ HOOKRELAY_DATABASE_URL: `sqlite:${join(dir, 'hookrelay.db')}` }, await freePort());
  const file = join(dir, 'initial-api-key');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const key = readFileSync(file, 'utf8').trim();
  assert.match(server.output(), new RegExp(key), 'the key is printed once at first start');
  const res = await fetch(server.url + '/api/v1/app', { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
});
