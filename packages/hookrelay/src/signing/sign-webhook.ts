import { createHmac } from 'node:crypto';

/**
 * Standard Webhooks v1 signature: base64 HMAC-SHA256 over `${id}.${timestamp}.${payload}` with
 * each key, `v1,<sig>` entries separated by spaces so receivers accept any key during rotation.
 */
export function signWebhook(keys: readonly Buffer[], msgId: string, timestampSeconds: number, payload: string): string {
  const content = `${msgId}.${timestampSeconds}.${payload}`;
  return keys.map((key) => 'v1,' + createHmac('sha256', key).update(content).digest('base64')).join(' ');
}
