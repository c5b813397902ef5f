import { Worker } from 'node:worker_threads';

export interface Checkpointer {
  stop(): Promise<void>;
}

/** Starts the WAL checkpoint thread for the SQLite file at `path` (see checkpointer-thread.ts). */
export function startCheckpointer(path: string, intervalMs = 200): Checkpointer {
  const worker = new Worker(new URL('./checkpointer-thread.js', import.meta.url), { workerData: { path, intervalMs } });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.postMessage('stop');
      await exited;
    },
  };
}
