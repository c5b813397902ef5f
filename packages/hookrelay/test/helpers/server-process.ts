import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait-for.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

/**
 * Starts `hookrelay serve` (with `args`, e.g. `--role worker`, and `nodeArgs` for node itself) as
 * a real child process and waits until it answers /health (every role serves it).
 */
export async function spawnServer(env: Record<string, string>, port: number, args: readonly string[] = [], nodeArgs: readonly string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'serve', ...args], {
    env: { ...process.env, HOOKRELAY_LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const url = `http://127.0.0.1:${port}`;
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  await waitFor(`server on ${url} to answer /health`, async () => {
    if (exitedEarly) throw new Error(`server exited: ${output}`);
    const res = await fetch(url + '/health').catch(() => null);
    return res?.status === 200;
  }, 20_000, 25);
  return { child, url, output: () => output, exited };
}

/** A free TCP port on 127.0.0.1 (the OS picks it; a child process then binds it). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
