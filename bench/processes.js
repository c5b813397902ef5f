// Helpers the benchmark scripts share for the processes they start and watch (Linux).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** CPU time (user + system, ms) one process has used so far, from /proc; NaN if unreadable. */
export function processCpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago, for a child server to listen on. */
export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
