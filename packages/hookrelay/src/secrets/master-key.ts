import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../config/config-error.js';

/**
 * The master key from configuration, or else from `keyFile`, created on first start with
 * owner-only permissions (then `onCreated` is told, to say so loudly). Losing this file makes
 * stored endpoint secrets unreadable: back it up.
 */
export function loadMasterKey(configured: string | null, keyFile: string, onCreated?: (keyFile: string) => void): Buffer {
  if (configured) return Buffer.from(configured, 'base64');
  if (existsSync(keyFile)) {
    const key = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new ConfigError('HOOKRELAY_MASTER_KEY', `${keyFile} does not hold 32 base64-encoded bytes`);
    return key;
  }
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(keyFile, 0o600);
  onCreated?.(keyFile);
  return key;
}
