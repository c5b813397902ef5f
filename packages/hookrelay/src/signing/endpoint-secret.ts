import { randomBytes } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';

/** A new Standard Webhooks secret: `whsec_` + base64 of 24 random bytes (as Svix generates). */
export function generateEndpointSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString('base64');
}

/** Key sizes Svix accepts for a supplied secret, in bytes (its KEY_SIZE and KEY_SIZE_MAX). */
export const SECRET_MIN_BYTES = 24;
export const SECRET_MAX_BYTES = 75;

/** Whether a caller-supplied secret is usable: `whsec_` + base64 of 24 to 75 bytes, as Svix takes it. */
export function isValidEndpointSecret(secret: string): boolean {
  if (!secret.startsWith(SECRET_PREFIX)) return false;
  const body = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return false;
  const length = Buffer.from(body, 'base64').length;
  return length >= SECRET_MIN_BYTES && length <= SECRET_MAX_BYTES;
}

/** The HMAC key bytes of a `whsec_` secret. */
export function secretKeyBytes(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}
