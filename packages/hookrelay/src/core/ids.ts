import { randomFillSync } from 'node:crypto';

/**
 * Resource ids are a type prefix plus 27 base62 characters (as Svix's KSUID-based ids), built from
 * a 48-bit millisecond timestamp and 112 random bits. The encoding is fixed-width and the alphabet
 * is in ASCII order, so ids sort lexicographically by creation time: list cursors are plain ids.
 */
export type IdPrefix = 'app' | 'ep' | 'msg' | 'atmpt' | 'key';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ENCODED_LENGTH = 27;
const RANDOM_BYTES = 14;

/** How many ids' worth of random bytes one call to the CSPRNG fetches. */
const RANDOM_POOL_IDS = 128;

let lastMillis = 0;
/** The id being built: 6 bytes of time, then the random part (kept between calls, see below). */
const idBytes = Buffer.alloc(6 + RANDOM_BYTES);
const randomPool = Buffer.alloc(RANDOM_BYTES * RANDOM_POOL_IDS);
let randomPoolOffset = randomPool.length;

/**
 * Sets the random part of idBytes for an id at `millis`: fresh random bytes in a new millisecond;
 * within one millisecond the previous random part plus one, so ids from one process stay ordered.
 * Random bytes are fetched for many ids at once: one CSPRNG call per id was a visible cost.
 */
function nextRandom(millis: number): void {
  if (millis > lastMillis) {
    lastMillis = millis;
    if (randomPoolOffset === randomPool.length) {
      randomFillSync(randomPool);
      randomPoolOffset = 0;
    }
    randomPool.copy(idBytes, 6, randomPoolOffset, randomPoolOffset + RANDOM_BYTES);
    randomPoolOffset += RANDOM_BYTES;
    return;
  }
  for (let i = idBytes.length - 1; i >= 6; i--) {
    idBytes[i] = (idBytes[i]! + 1) & 0xff;
    if (idBytes[i] !== 0) break;
  }
}

/** Bytes per limb of the long division: 40-bit limbs keep remainder * 2^40 + limb below 2^53, exact in a double. */
const LIMB_BYTES = 5;
const LIMB_BASE = 2 ** (8 * LIMB_BYTES);

/**
 * Fixed-width base62 of a big-endian byte string, by long division over 40-bit limbs (plain
 * numbers stay exact; this runs once per message and per attempt, where BigInt was slow, and
 * 16-bit limbs took two and a half times as many divisions).
 */
export function encodeBase62(bytes: Uint8Array): string {
  const limbs: number[] = [];
  // The first limb takes the bytes left over, so every later one is exactly LIMB_BYTES wide.
  let i = 0;
  for (let end = bytes.length % LIMB_BYTES || LIMB_BYTES; i < bytes.length; end += LIMB_BYTES) {
    let limb = 0;
    for (; i < end; i++) limb = limb * 256 + bytes[i]!;
    limbs.push(limb);
  }
  let out = '';
  let start = 0;
  for (let position = 0; position < ENCODED_LENGTH; position++) {
    while (start < limbs.length && limbs[start] === 0) start++;
    let remainder = 0;
    for (let k = start; k < limbs.length; k++) {
      const value = remainder * LIMB_BASE + limbs[k]!;
      const quotient = Math.floor(value / 62);
      remainder = value - quotient * 62;
      limbs[k] = quotient;
    }
    out = ALPHABET[remainder]! + out;
  }
  return out;
}

export function newId(prefix: IdPrefix, now: number = Date.now()): string {
  const millis = Math.max(now, lastMillis);
  nextRandom(millis);
  idBytes.writeUIntBE(millis, 0, 6);
  return `${prefix}_${encodeBase62(idBytes)}`;
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
