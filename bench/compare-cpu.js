// Compares the CPU cost per delivery of two Hookrelay configurations, side by side on the same
// machine at the same time, so that the machine's own drift (on a shared virtual machine, 10-50 %
// within minutes) touches both alike. Two `hookrelay serve` processes on fresh SQLite files, each
// offered the same fixed rate of messages (open loop, interleaved) for several rounds; each round
// prints both processes' CPU per delivery and their quotient. All traffic stays on 127.0.0.1.
//
//   COMPARE_A='{"HOOKRELAY_X":"1"}' COMPARE_B='{}' node bench/compare-cpu.js
//
// COMPARE_A_CLI / COMPARE_B_CLI run that side from another build's packages/hookrelay/dist/src/cli/main.js
// (e.g. a `git worktree` of another commit, built), to compare two commits rather than two settings.
//
// Knobs: COMPARE_RATE (messages/s per process, default 1500), COMPARE_ROUNDS (8), COMPARE_SECONDS (4).
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort, processCpuMs } from './processes.js';

const env = process.env;
const RATE = Number(env.COMPARE_RATE ?? 1500);
const ROUNDS = Number(env.COMPARE_ROUNDS ?? 8);
const SECONDS = Number(env.COMPARE_SECONDS ?? 4);
const APPS = 10;
const CLI = fileURLToPath(new URL('../packages/hookrelay/dist/src/cli/main.js', import.meta.url));
const TOKEN = 'compare-token';
const variants = { A: JSON.parse(env.COMPARE_A ?? '{}'), B: JSON.parse(env.COMPARE_B ?? '{}') };
const deadline = Date.now() + 10 * 60_000;

async function start(name, extraEnv, receiverUrl, onDelivery) {
  const dataDir = mkdtempSync(join(tmpdir(), `hookrelay-compare-${name}-`));
  const port = await freePort();
  const child = spawn(process.execPath, [env[`COMPARE_${name}_CLI`] || CLI, 'serve'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', HOOKRELAY_API_KEY: TOKEN, HOOKRELAY_SSRF_ALLOW: '127.0.0.1/32', HOOKRELAY_LOG_LEVEL: 'warn', HOOKRELAY_DATABASE_URL: `sqlite:${join(dataDir, 'db.sqlite')}`, ...extraEnv },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400 && !(await fetch(url + '/health').then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
  const api = new Pool(url, { connections: 64 });
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const call = async (path, body) => {
    const res = await api.request({ path, method: 'POST', headers, body: JSON.stringify(body) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${name} POST ${path}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  const paths = [];
  for (let a = 0; a < APPS; a++) {
    const app = await call('/api/v1/app', { name: `compare ${a}` });
    await call(`/api/v1/app/${app.id}/endpoint`, { url: `${receiverUrl}/${name}/app${a}` });
    paths.push(`/api/v1/app/${app.id}/msg`);
  }
  let n = 0;
  return {
    name,
    pid: child.pid,
    publish() {
      n++;
      return api.request({ path: paths[n % APPS], method: 'POST', headers, body: JSON.stringify({ eventType: 'order.created', payload: { id: n, amount: 1999, currency: 'EUR' } }) }).then(async (res) => {
        if (res.statusCode >= 300) throw new Error(`${name} publish: ${res.statusCode} ${await res.body.text()}`);
        await res.body.dump();
      });
    },
    async stop() {
      await api.close();
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Offers RATE messages/s to each instance, interleaved, for `seconds`; waits for every delivery. */
async function offer(instances, delivered, seconds) {
  const expected = new Map(instances.map((i) => [i.name, delivered.get(i.name) + RATE * seconds]));
  const t0 = performance.now();
  const inflight = [];
  for (let k = 0; k < RATE * seconds; k++) {
    if (Date.now() > deadline) throw new Error('time limit');
    const wait = t0 + (k * 1000) / RATE - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    // Each goes first every other time: neither is always the one whose request waits.
    for (const i of k % 2 === 0 ? instances : [...instances].reverse()) inflight.push(i.publish());
  }
  await Promise.all(inflight);
  for (let tries = 0; [...expected].some(([name, n]) => delivered.get(name) < n); tries++) {
    if (tries > 3000) throw new Error('deliveries did not all arrive');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main() {
  const delivered = new Map([['A', 0], ['B', 0]]);
  const server = createServer((req, res) => {
    const name = req.url.split('/')[1];
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
      delivered.set(name, delivered.get(name) + 1);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const receiverUrl = `http://127.0.0.1:${server.address().port}`;
  const instances = [await start('A', variants.A, receiverUrl), await start('B', variants.B, receiverUrl)];
  try {
    await offer(instances, delivered, 3); // warm-up, not measured
    const quotients = [];
    const describe = (name) => JSON.stringify(variants[name]) + (env[`COMPARE_${name}_CLI`] ? ` from ${env[`COMPARE_${name}_CLI`]}` : '');
    console.log(`A = ${describe('A')}, B = ${describe('B')}; ${RATE} msg/s each, ${ROUNDS} rounds of ${SECONDS} s`);
    for (let round = 1; round <= ROUNDS; round++) {
      const before = instances.map((i) => processCpuMs(i.pid));
      const counts = instances.map((i) => delivered.get(i.name));
      await offer(instances, delivered, SECONDS);
      const perDelivery = instances.map((i, k) => ((processCpuMs(i.pid) - before[k]) * 1000) / (delivered.get(i.name) - counts[k]));
      quotients.push(perDelivery[1] / perDelivery[0]);
      console.log(`round ${round}: A ${perDelivery[0].toFixed(0)} µs, B ${perDelivery[1].toFixed(0)} µs per delivery, B/A ${(perDelivery[1] / perDelivery[0]).toFixed(3)}`);
    }
    quotients.sort((x, y) => x - y);
    console.log(`B/A median ${quotients[Math.floor(quotients.length / 2)].toFixed(3)}, range ${quotients[0].toFixed(3)}-${quotients[quotients.length - 1].toFixed(3)}`);
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    server.closeAllConnections();
    server.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
