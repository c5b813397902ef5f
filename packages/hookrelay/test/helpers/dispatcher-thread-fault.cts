/**
 * Test-only preload for a `hookrelay serve` child process (`node --require <this .cjs>`): on
 * SIGUSR2 the dispatcher's worker thread dies of an uncaught exception, as it would of a bug, while
 * the rest of the process carries on. Nothing in the product knows of it: node runs --require
 * preloads in every thread, and this one acts only in the process's main thread (the signal) and
 * in the dispatcher thread (the fault), which hear each other on a BroadcastChannel.
 * Used by test/dispatcher-thread-death.test.ts.
 */
import wt = require('node:worker_threads');

const CHANNEL = 'hookrelay-test-dispatcher-thread-fault';

/** The dispatcher thread's workerData carries the config and the master key; the checkpointer's does not. */
function isDispatcherThread(data: unknown): boolean {
  return typeof data === 'object' && data !== null && 'config' in data && 'masterKey' in data;
}

if (wt.isMainThread) {
  const channel = new wt.BroadcastChannel(CHANNEL);
  channel.unref();
  process.on('SIGUSR2', () => channel.postMessage('die'));
} else if (isDispatcherThread(wt.workerData)) {
  const channel = new wt.BroadcastChannel(CHANNEL);
  channel.unref();
  channel.onmessage = () => {
    // Thrown from a plain callback: an uncaught exception on the thread's event loop.
    setImmediate(() => {
      throw new Error('fault injected by the test: the dispatcher thread dies of an uncaught exception');
    });
  };
}
