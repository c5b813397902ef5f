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
  /** The process's commit bell (commit-bell.ts): its writers hold off during a RESTART, and it rings when that ends. */
  commitBell?: SharedArrayBuffer;
  /** Called after every checkpoint with what it found (for metrics). */
  onReport?: (report: CheckpointReport) => void;
}

/** What one tick of the checkpoint thread found and did. */
export interface CheckpointReport {
  /** Bytes of WAL the next commit appends after (0 right after a RESTART). */
  walBytes: number;
  /** How long writers were held off for a RESTART, in ms; null when none ran. */
  restartHoldMs: number | null;
  /** Whether that RESTART let the WAL start over (false: a reader or writer kept it, retried next tick). */
  restarted: boolean;
}

/**
 * 16,384 frames: 64 MiB of WAL with SQLite's 4 KiB pages. A commit adds a page per index leaf it
 * touches, so the WAL grows 5-13 KB per delivery; at 1,000 deliveries a second a RESTART comes
 * every few seconds. A lower limit means more restarts, each holding writers for a disk sync.
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
  const onReport = options.onReport;
  if (onReport) worker.on('message', (report: CheckpointReport) => onReport(report));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.postMessage('stop');
      await exited;
    },
  };
}
