// How fast a backlog drains through claims: what happens after an outage, a restart, or a burst
// beyond the endpoints' caps. `node bench/drain-backlog.js` (build first):
//   1. `hookrelay serve --role api` on a fresh SQLite file takes DRAIN_MESSAGES messages (default
//      30,000) over DRAIN_APPS applications (default 10), one endpoint each; with no dispatcher
//      running, every delivery is written pending;
//   2. `hookrelay serve --role worker` then delivers them to a receiver on 127.0.0.1: every
//      delivery goes through the claim loop (no in-memory handoff). Prints deliveries/s and the
//      worker's CPU per delivery.
// Bounded by the message count and a 180 s deadline; all traffic stays on 127.0.0.1.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort, processCpuMs } from './processes.js';
import { startInlineReceiver } from './receiver.js';

const MESSAGES = Number(process.env.DRAIN_MESSAGES ?? 30_000);
const APPS = Number(process.env.DRAIN_APPS ?? 10);
const CLI = fileURLToPath(new URL('../packages/hookrelay/dist/src/cli/main.js', import.meta.url));
const TOKEN = 'drain-token';
const deadline = Date.now() + 180_000;

async function serve(role, env) {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'serve', '--role', role], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', HOOKRELAY_API_KEY: TOKEN, HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32', HOOKRELAY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400 && !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
  return { child, url, stop: () => new Promise((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', resolve), child.kill('SIGTERM')))) };
}

const dataDir = mkdtempSync(join(tmpdir(), 'hookrelay-drain-'));
const env = { HOOKRELAY_DATABASE_URL: `sqlite:${join(dataDir, 'drain.db')}`, HOOKRELAY_DATA_DIR: dataDir, HOOKRELAY_MASTER_KEY: randomBytes(32).toString('base64') };
const receiver = await startInlineReceiver();
try {
  const api = await serve('api', env);
  const pool = new Pool(api.url, { connections: 64 });
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const post = async (path, body) => {
    const res = await pool.request({ path, method: 'POST', headers, body: JSON.stringify(body) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`POST ${path}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  const paths = [];
  for (let a = 0; a < APPS; a++) {
    const app = await post('/api/v1/app', { name: `drain ${a}` });
    await post(`/api/v1/app/${app.id}/endpoint`, { url: `${receiver.url}/app${a}` });
    paths.push(`/api/v1/app/${app.id}/msg`);
  }
  let published = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (published < MESSAGES) {
        if (Date.now() > deadline) throw new Error('publishing exceeded the time limit');
        const n = published++;
        await post(paths[n % APPS], { eventType: 'order.created', payload: { id: n, amount: 1999, currency: 'EUR' } });
      }
    }),
  );
  await pool.close();
  await api.stop();

  const delivered = receiver.expect(MESSAGES);
  const t0 = performance.now();
  const worker = await serve('worker', env);
  const cpuBefore = processCpuMs(worker.child.pid);
  const started = performance.now();
  await Promise.race([delivered, new Promise((_, reject) => setTimeout(async () => reject(new Error(`only ${await receiver.arrivedSoFar()}/${MESSAGES} delivered`)), Math.max(1, deadline - Date.now())).unref())]);
  const seconds = (performance.now() - started) / 1000;
  const cpuMs = processCpuMs(worker.child.pid) - cpuBefore;
  await worker.stop();
  console.log(
    `drained ${MESSAGES} pending deliveries over ${APPS} endpoints in ${seconds.toFixed(2)} s (worker started in ${((started - t0) / 1000).toFixed(2)} s): ` +
      `${Math.round(MESSAGES / seconds)} deliveries/s, worker CPU ${Math.round((cpuMs * 1000) / MESSAGES)} µs per delivery (${(cpuMs / 1000 / seconds).toFixed(2)} cores)`,
  );
} finally {
  await receiver.close();
  rmSync(dataDir, { recursive: true, force: true });
}
