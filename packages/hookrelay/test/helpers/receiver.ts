import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  receivedAt: number;
}

/** What the receiver does with a request: answer (after an optional delay, or once `after` settles) or never answer. */
export type Reply = { status: number; headers?: Record<string, string>; body?: string; delayMs?: number; after?: Promise<unknown> } | { hang: true };

/**
 * A real HTTP receiver on 127.0.0.1 with a programmable reply per request. It records every
 * request, and `close()` also ends requests left hanging.
 */
export class Receiver {
  readonly requests: ReceivedRequest[] = [];
  reply: (request: ReceivedRequest, index: number) => Reply = () => ({ status: 200, body: 'ok' });
  #server: Server;
  #hanging = new Set<ServerResponse>();
  #port = 0;

  private constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const request: ReceivedRequest = { path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), receivedAt: Date.now() };
        const index = this.requests.push(request) - 1;
        const reply = this.reply(request, index);
        if ('hang' in reply) {
          this.#hanging.add(res);
          res.on('close', () => this.#hanging.delete(res));
          return;
        }
        const send = () => {
          res.writeHead(reply.status, reply.headers ?? {});
          res.end(reply.body ?? '');
        };
        if (reply.after) void reply.after.then(send, send);
        else if (reply.delayMs) setTimeout(send, reply.delayMs);
        else send();
      });
    });
  }

  static async start(): Promise<Receiver> {
    const receiver = new Receiver();
    await new Promise<void>((resolve) => receiver.#server.listen(0, '127.0.0.1', resolve));
    receiver.#port = (receiver.#server.address() as AddressInfo).port;
    return receiver;
  }

  url(path = '/webhook'): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  /** Distinct webhook-id values received (message ids). */
  distinctIds(): Set<string> {
    return new Set(this.requests.map((r) => String(r.headers['webhook-id'])));
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
