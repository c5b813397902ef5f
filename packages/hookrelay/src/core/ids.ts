import { randomBytes } from 'node:crypto';

/**
 * Resource ids are a type prefix plus 27 base62 characters (as Svix's KSUID-based ids), built from
 * a 48-bit millisecond timestamp and 112 random bits. The encoding is fixed-width and the alphabet
 * is in ASCII order, so ids sort lexicographically by creation time: list cursors are plain ids.
 */
export type IdPrefix = 'app' | 'ep' | 'msg' | 'atmpt' | 'key';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ENCODED_LENGTH = 27;
const RANDOM_BYTES = 14;

let lastMillis = 0;
let lastRandom = Buffer.alloc(RANDOM_BYTES);

/** Within one millisecond the random part is incremented, so ids from one process stay ordered. */
function nextRandom(millis: number): Buffer {
  if (millis > lastMillis) {
    lastMillis = millis;
    lastRandom = randomBytes(RANDOM_BYTES);
    return lastRandom;
  }
  const next = Buffer.from(lastRandom);
  for (let i = next.length - 1; i >= 0; i--) {
    next[i] = (next[i]! + 1) & 0xff;
    if (next[i] !== 0) break;
  }
  lastRandom = next;
  return next;
}

/**
 * Fixed-width base62 of a big-endian byte string, by long division over 16-bit limbs (plain
 * numbers stay exact, and this runs once per message and per attempt, where BigInt was slow).
 */
export function encodeBase62(bytes: Uint8Array): string {
  const limbs: number[] = [];
  let i = 0;
  if (bytes.length % 2 === 1) limbs.push(bytes[i++]!);
  for (; i < bytes.length; i += 2) limbs.push((bytes[i]! << 8) | bytes[i + 1]!);
  const out: string[] = new Array(ENCODED_LENGTH).fill('0');
  let position = ENCODED_LENGTH - 1;
  let start = 0;
  while (start < limbs.length && position >= 0) {
    let remainder = 0;
    for (let k = start; k < limbs.length; k++) {
      const value = remainder * 65536 + limbs[k]!;
      limbs[k] = Math.floor(value / 62);
      remainder = value % 62;
    }
    out[position--] = ALPHABET[remainder]!;
    while (start < limbs.length && limbs[start] === 0) start++;
  }
  return out.join('');
}

export function newId(prefix: IdPrefix, now: number = Date.now()): string {
  const millis = Math.max(now, lastMillis);
  const bytes = Buffer.alloc(6 + RANDOM_BYTES);
  bytes.writeUIntBE(millis, 0, 6);
  nextRandom(millis).copy(bytes, 6);
  return `${prefix}_${encodeBase62(bytes)}`;
}

/** The smallest id of a given prefix created at or after `millis`: a cursor for time filters. */
export function idLowerBoundAt(prefix: IdPrefix, millis: number): string {
  const bytes = Buffer.alloc(6 + RANDOM_BYTES);
  bytes.writeUIntBE(Math.max(0, Math.floor(millis)), 0, 6);
  return `${prefix}_${encodeBase62(bytes)}`;
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return id.startsWith(prefix + '_') && id.length === prefix.length + 1 + ENCODED_LENGTH;
}
