import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, appendFileSync, chownSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './server-process.js';
import { postgresTestDatabase, type TestDatabase } from './test-database.js';

/** How a private cluster's binaries are run: from one bin directory, as the OS user that may run them. */
interface Toolchain {
  /** The real directory of initdb; pg_ctl and postgres are taken from it too, so the versions match. */
  bin: string;
  /** Prefix of every command: runuser to the postgres OS user when we are root (initdb and postgres refuse root), else nothing. */
  runAs: string[];
  /** Owner to give the cluster's directory (root only). */
  owner: { uid: number; gid: number } | null;
}

const DIR_PREFIX = 'hookrelay-pg-';
/** A cluster directory older than this belongs to a run that died before destroying it. */
const ABANDONED_AFTER_MS = 3_600_000;
/** pg_ctl's own wait bound (-t), in seconds; each command is also killed if it outlives COMMAND_TIMEOUT_MS. */
const PG_CTL_WAIT_S = 30;
const COMMAND_TIMEOUT_MS = 60_000;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** initdb on PATH, else under /usr/lib/postgresql/<version>/bin (newest version first), resolved to its real directory. */
function findBinDir(): string | null {
  const candidates = (process.env['PATH'] ?? '').split(delimiter).filter(Boolean);
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join(root, v, 'bin')));
  }
  for (const dir of candidates) {
    const initdb = join(dir, 'initdb');
    if (isExecutable(initdb)) return dirname(realpathSync(initdb));
  }
  return null;
}

function findOnPath(name: string, extra: readonly string[]): string | null {
  for (const dir of [...(process.env['PATH'] ?? '').split(delimiter).filter(Boolean), ...extra]) {
    if (isExecutable(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** The environment of every PostgreSQL command: none of the caller's PG* variables (PGDATA, PGPORT, ...) leak in. */
function commandEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG')) env[key] = value;
  return env;
}

let probed: Toolchain | string | undefined;

/** Finds the binaries and checks that they run as the user they will run as; a string says why not. */
function probe(): Toolchain | string {
  if (probed !== undefined) return probed;
  probed = (() => {
    const bin = findBinDir();
    if (!bin) return 'a private PostgreSQL cluster needs initdb: not found on PATH nor under /usr/lib/postgresql/*/bin';
    for (const tool of ['pg_ctl', 'postgres']) {
      if (!isExecutable(join(bin, tool))) return `a private PostgreSQL cluster needs ${tool} beside initdb in ${bin}: not found`;
    }
    let runAs: string[] = [];
    let owner: Toolchain['owner'] = null;
    if (process.getuid?.() === 0) {
      // initdb and postgres refuse to run as root: the cluster runs as the postgres OS user.
      const runuser = findOnPath('runuser', ['/usr/sbin', '/sbin']);
      if (!runuser) return 'running as root, a private PostgreSQL cluster needs runuser to run as the postgres OS user: not found';
      const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8', timeout: 10_000 });
      const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8', timeout: 10_000 });
      if (uid.status !== 0 || gid.status !== 0) return 'running as root, a private PostgreSQL cluster needs a postgres OS user to run as: there is none';
      runAs = [runuser, '-u', 'postgres', '--'];
      owner = { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    }
    for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
      const argv = [...runAs, join(bin, tool), '--version'];
      const result = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 10_000, env: commandEnv() });
      if (result.status !== 0) {
        return `a private PostgreSQL cluster cannot be run: \`${argv.join(' ')}\` failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`}) ${result.stderr ?? ''}`.trim();
      }
    }
    return { bin, runAs, owner };
  })();
  return probed;
}

/**
 * Why no private PostgreSQL cluster can be started here (initdb, pg_ctl or postgres missing or
 * not runnable), or null when one can: for node:test's `skip`.
 */
export function privatePostgresUnavailable(): string | null {
  const result = probe();
  return typeof result === 'string' ? result : null;
}

/** Clusters of this process whose server may be running: stopped on exit if the test could not. */
const live = new Set<PrivatePostgres>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous, as 'exit' handlers must be. Covers a test that ended without its cleanup; a
  // process killed outright is covered by the sweep of abandoned clusters at the next start.
  process.on('exit', () => {
    for (const cluster of live) cluster.destroySync();
  });
}

/** Stops and removes private clusters that runs which died left behind in the temp directory. */
function sweepAbandoned(toolchain: Toolchain): void {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((name) => name.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const name of entries) {
    const dir = join(tmpdir(), name);
    try {
      if (Date.now() - statSync(dir).mtimeMs < ABANDONED_AFTER_MS) continue;
      stopSync(toolchain, join(dir, 'data'));
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // another run's, or not ours after all: leave it
    }
  }
}

/** pg_ctl stop -m immediate, synchronously, if the data directory has a postmaster.pid; then SIGKILL if it is still there. */
function stopSync(toolchain: Toolchain, data: string): void {
  const pidFile = join(data, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const argv = [...toolchain.runAs, join(toolchain.bin, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop'];
  spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 20_000, env: commandEnv() });
  killPostmaster(data);
}

/**
 * Last resort: SIGKILL to the postmaster named in postmaster.pid, if that file is still there (its
 * backends exit when they see it gone), and only if that pid is still a postgres of this data
 * directory (a stale file's pid may be another process's by now).
 */
function killPostmaster(data: string): void {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 1) return;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    if (cmdline.includes('postgres') && cmdline.includes(data)) process.kill(pid, 'SIGKILL');
  } catch {
    // no file, no such process, or no /proc
  }
}

/**
 * A PostgreSQL cluster of one test's own: initdb'd in a temp directory, listening on 127.0.0.1 at
 * a free port (and a unix socket inside the directory), trust authentication for the `postgres`
 * superuser. A test can stop it (also crash-like) and start it again on the same port without
 * touching the shared test server. fsync stays on, so an immediate stop is an honest crash test:
 * what was committed must come back through WAL recovery.
 */
export class PrivatePostgres {
  readonly port: number;
  /** The temp directory: data/, sock/, postgres.log. */
  readonly dir: string;
  readonly #toolchain: Toolchain;
  readonly #data: string;
  readonly #logFile: string;
  #running = false;
  #destroyed = false;

  private constructor(toolchain: Toolchain, dir: string, port: number) {
    this.#toolchain = toolchain;
    this.dir = dir;
    this.port = port;
    this.#data = join(dir, 'data');
    this.#logFile = join(dir, 'postgres.log');
  }

  /** initdb and start a new cluster; throws (having removed what it made) if that fails. */
  static async start(): Promise<PrivatePostgres> {
    const toolchain = probe();
    if (typeof toolchain === 'string') throw new Error(toolchain);
    sweepAbandoned(toolchain);
    installExitHook();
    const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
    const cluster = new PrivatePostgres(toolchain, dir, await freePort());
    live.add(cluster);
    try {
      const sock = join(dir, 'sock');
      mkdirSync(sock);
      if (toolchain.owner) for (const path of [dir, sock]) chownSync(path, toolchain.owner.uid, toolchain.owner.gid);
      // --no-sync: initdb's own files are not fsynced (nothing to crash yet); the server keeps fsync on.
      await cluster.#run('initdb', ['-D', cluster.#data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C']);
      // Appended, so the file keeps its owner (the server's user); later settings win.
      appendFileSync(join(cluster.#data, 'postgresql.conf'), [
        '',
        '# hookrelay test: a private cluster',
        "listen_addresses = '127.0.0.1'",
        `port = ${cluster.port}`,
        `unix_socket_directories = '${sock}'`,
        'fsync = on',
        'synchronous_commit = on',
        'full_page_writes = on',
        'shared_buffers = 16MB',
        'max_connections = 40',
        '',
      ].join('\n'));
      await cluster.start();
    } catch (error) {
      await cluster.destroy().catch(() => {});
      throw error;
    }
    return cluster;
  }

  /** True between a successful start() and the next stop(). */
  get running(): boolean {
    return this.#running;
  }

  /** postgres://postgres@127.0.0.1:PORT/<database> */
  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** The server's log (every start, recovery and stop of this cluster), for diagnostics. */
  log(): string {
    try {
      return readFileSync(this.#logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** (Re)starts the server on the same port and data directory; resolves once it accepts connections (after any WAL recovery). */
  async start(): Promise<void> {
    if (this.#destroyed) throw new Error('this private PostgreSQL cluster was destroyed');
    this.#running = true; // until proven otherwise: a timed-out start may leave a server behind
    try {
      await this.#run('pg_ctl', ['-D', this.#data, '-l', this.#logFile, '-w', '-t', String(PG_CTL_WAIT_S), 'start']);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- server log ---\n${this.log().split('\n').slice(-30).join('\n')}`);
    }
  }

  /**
   * Stops the server: 'immediate' kills it crash-like (backends quit at once, no shutdown
   * checkpoint; the next start replays WAL), 'fast' rolls back open transactions and shuts down cleanly.
   */
  async stop(mode: 'immediate' | 'fast'): Promise<void> {
    await this.#run('pg_ctl', ['-D', this.#data, '-m', mode, '-w', '-t', String(PG_CTL_WAIT_S), 'stop']);
    this.#running = false;
  }

  /** A database on this cluster. */
  async createDatabase(name: string): Promise<void> {
    const client = new Client({ connectionString: this.url('postgres'), connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
    } finally {
      await client.end();
    }
  }

  /** A new database on this cluster as a TestDatabase (for Cluster), with a temp directory of its own for HOOKRELAY_DATA_DIR. */
  async createTestDatabase(): Promise<TestDatabase> {
    const name = `hookrelay_t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
    await this.createDatabase(name);
    return postgresTestDatabase(this.url(name), async () => {
      // A stopped or destroyed cluster takes its databases with it when destroyed.
      if (!this.#running) return;
      const client = new Client({ connectionString: this.url('postgres'), connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    });
  }

  /** Stops the server (immediate: nothing of it is kept) and removes the directory. Safe to call more than once. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    try {
      if (existsSync(join(this.#data, 'postmaster.pid'))) {
        await this.stop('immediate').catch(() => {});
        killPostmaster(this.#data);
      }
    } finally {
      this.#destroyed = true;
      this.#running = false;
      live.delete(this);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  /** destroy() for a process 'exit' handler. */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    live.delete(this);
    try {
      stopSync(this.#toolchain, this.#data);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  /** Runs one of the cluster's binaries as the cluster's user; rejects with its output on failure or after COMMAND_TIMEOUT_MS. */
  #run(tool: 'initdb' | 'pg_ctl', args: readonly string[]): Promise<string> {
    const argv = [...this.#toolchain.runAs, join(this.#toolchain.bin, tool), ...args];
    return new Promise((resolve, reject) => {
      // pg_ctl start sends the server's output to the log file (-l), so these pipes close when pg_ctl exits.
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: commandEnv() });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`\`${argv.join(' ')}\` could not be run: ${error.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(output);
        else reject(new Error(`\`${argv.join(' ')}\` failed (${code ?? signal}${signal === 'SIGKILL' ? `, killed after ${COMMAND_TIMEOUT_MS} ms` : ''}): ${output.trim()}`));
      });
    });
  }
}
