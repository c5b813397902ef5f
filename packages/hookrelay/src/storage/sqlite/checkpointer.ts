import { Worker } from 'node:worker_threads';

export interface Checkpointer {
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  /** How often the thread checkpoints. */
  intervalMs?: number;
  /**
   * WAL frames (pages) at which a passive checkpoint is followed by a RESTART one, so that the
   * next commit writes the WAL from its start again: the WAL file's size bound under load that
   * never pauses (see checkpointer-thread.ts).
   */
  restartAtFrames?: number;
  /** The process's commit bell (commit-bell.ts): rung when a RESTART lets go of the write lock. */
  commitBell?: SharedArrayBuffer;
}

/**
 * 16,384 frames: 64 MiB of WAL with SQLite's 4 KiB pages. At 1,000 messages a second the WAL
 * starts over by itself long before this (a few MB); under a sustained peak (about 5 KB of WAL per
 * delivery) a RESTART then comes every few seconds.
 */
export const DEFAULT_RESTART_AT_FRAMES = 16_384;

/** A row of `PRAGMA wal_checkpoint`. */
export interface CheckpointResult {
  busy: number;
  /** Frames in the WAL. */
  log: number;
  /** Frames copied into the database file. */
  checkpointed: number;
}

/**
 * Whether a passive checkpoint's result calls for a RESTART: the WAL is past its limit, and the
 * passive copy reached its end. When a reader's older snapshot kept the copy short, a RESTART
 * would only wait for that reader with every writer held off meanwhile; the reader goes first.
 */
export function restartDue(passive: CheckpointResult, restartAtFrames: number): boolean {
  return passive.log >= restartAtFrames && passive.checkpointed === passive.log;
}

/** Starts the WAL checkpoint thread for the SQLite file at `path` (see checkpointer-thread.ts). */
export function startCheckpointer(path: string, options: CheckpointerOptions = {}): Checkpointer {
  const workerData = {
    path,
    intervalMs: options.intervalMs ?? 200,
    restartAtFrames: options.restartAtFrames ?? DEFAULT_RESTART_AT_FRAMES,
    ...(options.commitBell ? { commitBell: options.commitBell } : {}),
  };
  const worker = new Worker(new URL('./checkpointer-thread.js', import.meta.url), { workerData });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.postMessage('stop');
      await exited;
    },
  };
}
