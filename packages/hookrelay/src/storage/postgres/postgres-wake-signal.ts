import { Client } from 'pg';
import { LocalWakeSignal, type WakeSignal } from '../wake-signal.js';

/** The channel every Hookrelay process NOTIFYs after committing pending deliveries, and LISTENs on. */
export const WAKE_CHANNEL = 'hookrelay_deliveries';

export interface PostgresWakeSignalOptions {
  /** postgres:// URL of the shared database. */
  url: string;
  /** LISTEN for other processes' wake-ups; a process without a dispatcher only sends them. */
  listen: boolean;
  /** Delay before the first reconnection try, doubled after each failed one up to maxMs; each wait is 50 to 100 % of that, at random. */
  backoff?: { minMs: number; maxMs: number };
  /** The dedicated connection was lost or could not be opened (`failures` in a row); next try in `retryInMs`. */
  onDisconnect?: (error: Error | null, failures: number, retryInMs: number) => void;
  /** It is connected (and listening) again after `failures` failed tries. */
  onReconnect?: (failures: number) => void;
}

const DEFAULT_BACKOFF = { minMs: 250, maxMs: 5_000 };

/**
 * A listening connection is idle nearly all the time, and idle TCP connections are what NAT
 * gateways and cloud load balancers drop without a word: no reset, so the client would go on
 * believing it listens. A query this often keeps the connection from idling, and one that gets no
 * answer within QUERY_TIMEOUT_MS counts as a lost connection (the same bound applies to a NOTIFY
 * and to opening the connection).
 */
const HEARTBEAT_MS = 30_000;
const QUERY_TIMEOUT_MS = 10_000;

interface Connection {
  client: Client;
  /** Drops this connection and schedules the next one (once, however often it is called). */
  lose(error: Error | null): void;
}

/**
 * Wake-ups across processes through PostgreSQL's LISTEN/NOTIFY, on one dedicated connection per
 * process (a pooled one would be handed to other queries, and LISTEN belongs to the session).
 *
 * - notify() wakes this process's subscribers at once and sends one NOTIFY; calls made while a
 *   NOTIFY is on its way collapse into a single next one, so under load a process sends about one
 *   per round trip, not one per message or per commit.
 * - Own notifications come back to a listening session; they are recognised by the sender's
 *   backend pid and dropped (the subscribers were already woken).
 * - When the connection drops it is reopened with backoff, forever; meanwhile wake-ups are neither
 *   sent nor received and the dispatchers' idle poll finds the work. After a reconnection the
 *   subscribers are woken once, for whatever was committed while nobody listened.
 */
export class PostgresWakeSignal implements WakeSignal {
  readonly #o: PostgresWakeSignalOptions;
  readonly #backoff: { minMs: number; maxMs: number };
  readonly #local = new LocalWakeSignal();
  /** Connected and, when listening, subscribed; null while down. */
  #connection: Connection | null = null;
  #failures = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  readonly #heartbeat: NodeJS.Timeout;
  #closed = false;
  #sendScheduled = false;
  #sendAgain = false;

  private constructor(options: PostgresWakeSignalOptions) {
    this.#o = options;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#heartbeat = setInterval(() => {
      const connection = this.#connection;
      void connection?.client.query('SELECT 1').catch((error: Error) => connection.lose(error));
    }, HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /** Resolves after the first connection try, connected or not: it keeps trying in the background. */
  static async open(options: PostgresWakeSignalOptions): Promise<PostgresWakeSignal> {
    const signal = new PostgresWakeSignal(options);
    await signal.#connect();
    return signal;
  }

  get connected(): boolean {
    return this.#connection !== null;
  }

  notify(): void {
    this.#local.notify();
    if (this.#sendScheduled) {
      this.#sendAgain = true;
      return;
    }
    this.#sendScheduled = true;
    // Calls made in the same turn share the NOTIFY.
    queueMicrotask(() => void this.#send());
  }

  subscribe(wake: () => void): () => void {
    return this.#local.subscribe(wake);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const connection = this.#connection;
    this.#connection = null;
    await this.#local.close();
    await connection?.client.end().catch(() => {});
  }

  async #send(): Promise<void> {
    try {
      do {
        this.#sendAgain = false;
        const connection = this.#connection;
        // Down: nothing is queued; the other processes' idle poll finds the work.
        if (connection === null || this.#closed) return;
        await connection.client.query(`NOTIFY ${WAKE_CHANNEL}`).catch((error: Error) => connection.lose(error));
      } while (this.#sendAgain);
    } finally {
      this.#sendScheduled = false;
    }
  }

  async #connect(): Promise<void> {
    this.#retryTimer = null;
    if (this.#closed) return;
    const client = new Client({ connectionString: this.#o.url, application_name: 'hookrelay-wake', keepAlive: true, connectionTimeoutMillis: QUERY_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS });
    let ownPid = -1;
    let lost = false;
    const onLost = (error: Error | null) => {
      if (lost) return;
      lost = true;
      if (this.#connection?.client === client) this.#connection = null;
      void client.end().catch(() => {});
      this.#scheduleReconnect(error);
    };
    // Without an 'error' listener a dropped connection would crash the process.
    client.on('error', (error) => onLost(error));
    client.on('end', () => onLost(null));
    client.on('notification', (notification) => {
      if (notification.processId !== ownPid) this.#local.notify();
    });
    try {
      await client.connect();
      ownPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      if (this.#o.listen) await client.query(`LISTEN ${WAKE_CHANNEL}`);
    } catch (error) {
      onLost(error as Error);
      return;
    }
    if (lost) return;
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#connection = { client, lose: onLost };
    const failures = this.#failures;
    this.#failures = 0;
    if (failures > 0) {
      this.#o.onReconnect?.(failures);
      this.#local.notify();
    }
  }

  #scheduleReconnect(error: Error | null): void {
    if (this.#closed || this.#retryTimer !== null) return;
    this.#failures += 1;
    const ceiling = Math.min(this.#backoff.maxMs, this.#backoff.minMs * 2 ** (this.#failures - 1));
    // Jitter: processes that lost the database together do not all come back in the same instant.
    const delay = Math.round(ceiling * (0.5 + Math.random() * 0.5));
    this.#o.onDisconnect?.(error, this.#failures, delay);
    this.#retryTimer = setTimeout(() => void this.#connect(), delay);
    this.#retryTimer.unref();
  }
}
