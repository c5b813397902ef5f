// The benchmark's receiver: a Node `http` server on 127.0.0.1 that answers every POST with
// `200 ok`, counts arrivals and, while latency is being measured, notes when each message arrived.
// It runs in the benchmark's process (`startInlineReceiver`, the default), or in a process of its
// own (`startReceiverProcess`, BENCH_RECEIVER=process), as a customer's receiver would be a
// program of its own. Both offer the same interface:
//   expect(count)     resolves once `count` requests have arrived after the call;
//   recordArrivals()  from now on, notes each request's `seq` (from its JSON body) and arrival time;
//   takeArrivals()    resolves to the [seq, epochMs] pairs noted since, and stops noting;
//   cpuMs()           CPU time the receiver has used (its process's; null inline: it is the benchmark's);
//   close().
// Arrival times are performance.timeOrigin + performance.now(): epoch milliseconds with sub-ms
// precision, comparable between processes on one machine.
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { processCpuMs } from './processes.js';

const epochMs = () => performance.timeOrigin + performance.now();

function createReceiverServer() {
  let arrived = 0;
  let expected = Infinity;
  let onExpected = () => {};
  let arrivals = null;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
      if (arrivals) arrivals.push([JSON.parse(Buffer.concat(chunks).toString()).seq, epochMs()]);
      if (++arrived === expected) onExpected();
    });
  });
  server.keepAliveTimeout = 60_000;
  return {
    server,
    expect(count) {
      arrived = 0;
      expected = count;
      return new Promise((resolve) => {
        onExpected = resolve;
        if (count === 0) resolve();
      });
    },
    arrivedSoFar: () => arrived,
    recordArrivals() {
      arrivals = [];
    },
    takeArrivals() {
      const taken = arrivals ?? [];
      arrivals = null;
      return taken;
    },
  };
}

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
}

function close(server) {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
}

export async function startInlineReceiver() {
  const receiver = createReceiverServer();
  const url = await listen(receiver.server);
  return {
    url,
    expect: (count) => receiver.expect(count),
    arrivedSoFar: async () => receiver.arrivedSoFar(),
    recordArrivals: async () => receiver.recordArrivals(),
    takeArrivals: async () => receiver.takeArrivals(),
    cpuMs: () => null,
    close: () => close(receiver.server),
  };
}

/** The receiver in a child process of its own, driven over IPC (one message per call, none per request). */
export async function startReceiverProcess() {
  const child = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies = new Map();
  let nextId = 1;
  child.on('message', (message) => {
    replies.get(message.id)?.(message.value);
    replies.delete(message.id);
  });
  const call = (op, arg) =>
    new Promise((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error('the receiver process has exited'));
      const id = nextId++;
      replies.set(id, resolve);
      child.send({ id, op, arg });
    });
  const url = await call('url');
  return {
    url,
    expect: (count) => call('expect', count),
    arrivedSoFar: () => call('arrivedSoFar'),
    recordArrivals: () => call('recordArrivals'),
    takeArrivals: () => call('takeArrivals'),
    cpuMs: () => processCpuMs(child.pid),
    async close() {
      await call('close');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    },
  };
}

if (process.argv[2] === '--child') {
  const receiver = createReceiverServer();
  const urlPromise = listen(receiver.server);
  process.on('message', async ({ id, op, arg }) => {
    const reply = (value) => process.send({ id, value });
    if (op === 'url') reply(await urlPromise);
    else if (op === 'expect') receiver.expect(arg).then(() => reply(null));
    else if (op === 'arrivedSoFar') reply(receiver.arrivedSoFar());
    else if (op === 'recordArrivals') reply(receiver.recordArrivals() ?? null);
    else if (op === 'takeArrivals') reply(receiver.takeArrivals());
    else if (op === 'close') {
      await close(receiver.server);
      reply(null);
      process.disconnect();
    }
  });
}
