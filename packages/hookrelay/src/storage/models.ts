/**
 * Domain records as the rest of the platform sees them: camelCase, timestamps in epoch
 * milliseconds, JSON columns already parsed. The row shapes (snake_case) live in db-schema.ts and
 * never leave the storage folder.
 */
export type Metadata = Record<string, string>;

export interface Application {
  id: string;
  uid: string | null;
  name: string;
  rateLimit: number | null;
  metadata: Metadata;
  createdAt: number;
  updatedAt: number;
}

export interface Endpoint {
  id: string;
  appId: string;
  uid: string | null;
  url: string;
  description: string;
  disabled: boolean;
  filterTypes: string[] | null;
  channels: string[] | null;
  rateLimit: number | null;
  metadata: Metadata;
  headers: Record<string, string>;
  version: number;
  createdAt: number;
  updatedAt: number;
}

/** A signing key of an endpoint; `expiresAt` null is the current key, otherwise a rotated-out one. */
export interface EndpointSecret {
  key: string;
  createdAt: number;
  expiresAt: number | null;
}

export interface EventType {
  name: string;
  description: string;
  archived: boolean;
  deprecated: boolean;
  schemas: unknown | null;
  featureFlag: string | null;
  groupName: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface Message {
  id: string;
  appId: string;
  eventType: string;
  eventId: string | null;
  /** The payload exactly as stored and as sent: serialized JSON. */
  payload: string;
  channels: string[] | null;
  tags: string[] | null;
  createdAt: number;
}

/** Svix's MessageStatus numbering, used for deliveries and attempts alike. */
export const DeliveryStatus = { Success: 0, Pending: 1, Fail: 2, Sending: 3 } as const;
export type DeliveryStatus = (typeof DeliveryStatus)[keyof typeof DeliveryStatus];
/**
 * A delivery not yet finished: pending, or "sending" under a lease. Only SQLite writes "sending"
 * (its migration 10); PostgreSQL keeps a leased delivery pending, with its lease token.
 */
export const UNFINISHED_DELIVERY_STATUSES: readonly DeliveryStatus[] = [DeliveryStatus.Pending, DeliveryStatus.Sending];

export const TriggerType = { Scheduled: 0, Manual: 1 } as const;
export type TriggerType = (typeof TriggerType)[keyof typeof TriggerType];

export interface Attempt {
  id: string;
  msgId: string;
  endpointId: string;
  appId: string;
  url: string;
  status: DeliveryStatus;
  responseStatusCode: number;
  /** Response body, cut to 20 KB; for a network failure, the reason. */
  response: string;
  responseDurationMs: number;
  triggerType: TriggerType;
  /** Stable code of a failure that had no HTTP response (timeout, SSRF refusal, connect error). */
  errorCode: string | null;
  createdAt: number;
}

export interface ListPage<T> {
  data: T[];
  iterator: string | null;
  prevIterator: string | null;
  done: boolean;
}

export interface PageRequest {
  limit: number;
  /** An id from a previous page's `iterator` (next page) or `prevIterator` (prefixed with "-"). */
  iterator?: string | null;
  order?: 'ascending' | 'descending';
}
