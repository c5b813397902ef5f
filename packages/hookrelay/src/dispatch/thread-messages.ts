/** Messages between the API thread (host) and the dispatcher thread. Metrics travel as prom-client JSON. */
export type FromHost = { type: 'wake' } | { type: 'stop' } | { type: 'metrics'; requestId: number };
export type ToHost = { type: 'ready' } | { type: 'stopped' } | { type: 'failed'; error: string } | { type: 'metrics'; requestId: number; metrics: unknown[] };
