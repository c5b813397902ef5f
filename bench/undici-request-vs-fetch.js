// Why deliveries use undici's `dispatch` with a small handler (transport/webhook-sender.ts), not
// `request` or `fetch`: all three against the same local receiver, same keep-alive Agent, same
// concurrency; CPU per request is this process's (client and receiver; the receiver's share is
// the same for all three). Bounded: N requests per client, 60 s at most.
import { createServer } from 'node:http';
import { Agent, fetch, request } from 'undici';

const N = Number(process.env.BENCH_REQUESTS ?? 20_000);
const CONCURRENCY = 64;
const body = JSON.stringify({ type: 'order.created', data: { id: 1, amount: 1999 } });
const deadline = Date.now() + 60_000;

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/hook`;
const headers = { 'content-type': 'application/json', 'webhook-id': 'msg_x' };

async function run(name, send) {
  const agent = new Agent({ keepAliveTimeout: 30_000 });
  let sent = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (sent < N && Date.now() < deadline) {
        sent++;
        await send(agent);
      }
    }),
  );
  const perSec = sent / ((performance.now() - started) / 1000);
  const cpu = process.cpuUsage(cpuBefore);
  await agent.close();
  console.log(`${name.padEnd(8)} ${Math.round(perSec)} req/s, ${((cpu.user + cpu.system) / sent).toFixed(1)} us CPU per request (${sent} requests, ${CONCURRENCY} concurrent)`);
  return perSec;
}

const viaRequest = async (agent) => {
  const res = await request(url, { method: 'POST', headers, body, dispatcher: agent });
  await res.body.text();
};
const viaFetch = async (agent) => {
  const res = await fetch(url, { method: 'POST', headers, body, dispatcher: agent });
  await res.text();
};

/** The response collected from the parser's chunks, as the webhook sender does: no stream objects. */
const { origin, pathname } = new URL(url);
const viaDispatch = (agent) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    agent.dispatch(
      { origin, path: pathname, method: 'POST', headers, body },
      {
        // undici tells this handler API from the legacy one by onRequestStart.
        onRequestStart: () => {},
        onResponseData: (_controller, chunk) => chunks.push(chunk),
        onResponseEnd: () => resolve(Buffer.concat(chunks).toString()),
        onResponseError: (_controller, error) => reject(error),
      },
    );
  });

await run('warm-up', viaRequest);
const d = await run('dispatch', viaDispatch);
const r = await run('request', viaRequest);
const f = await run('fetch', viaFetch);
console.log(`dispatch / request = ${(d / r).toFixed(2)}, request / fetch = ${(r / f).toFixed(2)}`);
server.close();
