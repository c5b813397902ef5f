import { USER_AGENT } from '../core/version.js';
import { secretKeyBytes } from './endpoint-secret.js';
import { signWebhook } from './sign-webhook.js';

/** Header names the platform owns: an endpoint's custom headers cannot override them. */
const RESERVED = new Set(['content-type', 'content-length', 'host', 'user-agent', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'svix-id', 'svix-timestamp', 'svix-signature', 'connection', 'transfer-encoding']);

export interface WebhookHeaderInput {
  msgId: string;
  timestampSeconds: number;
  payload: string;
  secrets: readonly string[];
  customHeaders: Record<string, string>;
  sendSvixHeaders: boolean;
}

/** HMAC keys by secret: an endpoint signs every delivery with the same one or two secrets. */
const keyBytes = new Map<string, Buffer>();
const KEY_CACHE_MAX = 10_000;

function hmacKey(secret: string): Buffer {
  let key = keyBytes.get(secret);
  if (key === undefined) {
    key = secretKeyBytes(secret);
    if (keyBytes.size >= KEY_CACHE_MAX) keyBytes.clear();
    keyBytes.set(secret, key);
  }
  return key;
}

export function buildWebhookHeaders(input: WebhookHeaderInput): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.customHeaders)) {
    if (!RESERVED.has(name.toLowerCase())) headers[name] = value;
  }
  const signature = signWebhook(input.secrets.map(hmacKey), input.msgId, input.timestampSeconds, input.payload);
  const timestamp = String(input.timestampSeconds);
  headers['content-type'] = 'application/json';
  headers['user-agent'] = USER_AGENT;
  headers['webhook-id'] = input.msgId;
  headers['webhook-timestamp'] = timestamp;
  headers['webhook-signature'] = signature;
  if (input.sendSvixHeaders) {
    headers['svix-id'] = input.msgId;
    headers['svix-timestamp'] = timestamp;
    headers['svix-signature'] = signature;
  }
  return headers;
}
