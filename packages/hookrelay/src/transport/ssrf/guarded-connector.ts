import { lookup as dnsLookup } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { buildConnector } from 'undici';
import { checkAddress } from './address-classifier.js';
import type { Cidr } from './cidr.js';
import { SsrfBlockedError } from './ssrf-blocked-error.js';

export { isSsrfBlocked } from './ssrf-blocked-error.js';

export interface GuardedConnectorOptions {
  /** Networks deliveries may reach even though they are not public (HOOKRELAY_SSRF_ALLOW). */
  allow: readonly Cidr[];
  /** Budget for resolving, connecting and (for https) the TLS handshake. */
  timeoutMs: number;
}

/**
 * An undici connector that refuses to connect to non-public addresses. The check runs on the address
 * the socket actually connects to, inside the socket's own DNS lookup, so a hostname that resolves to
 * a public address when the endpoint is saved and to 127.0.0.1 at delivery time (DNS rebinding) is
 * still refused. Use it as `new Agent({ connect: createGuardedConnector(...) })`; a refusal rejects
 * the request with an SsrfBlockedError (find it with isSsrfBlocked).
 */
export function createGuardedConnector(options: GuardedConnectorOptions): buildConnector.connector {
  const allow = [...options.allow];
  const connect = buildConnector({ timeout: options.timeoutMs, lookup: guardedLookup(allow) });
  return (connectOptions, callback) => {
    // Node never calls `lookup` for an IP literal, so literals are checked here. undici already strips
    // the brackets from IPv6 hosts; stripping again keeps this safe if that ever changes.
    const host = connectOptions.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) !== 0) {
      const check = checkAddress(host, allow);
      if (!check.allowed) {
        // Asynchronously, as a socket error would be: undici's connect loop does not expect re-entry.
        process.nextTick(callback, new SsrfBlockedError({ address: host, hostname: host, reason: check.reason }), null);
        return;
      }
    }
    connect(connectOptions, callback);
  };
}

/**
 * Resolves like the default lookup, but fails with SsrfBlockedError if ANY resolved address is not
 * allowed, rather than only the one Node would try first: with happy eyeballs Node may try several,
 * and a name that mixes public and internal addresses is a rebinding attempt, not a real endpoint.
 */
function guardedLookup(allow: readonly Cidr[]): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
      if (error) {
        callback(error, '');
        return;
      }
      for (const { address } of addresses) {
        const check = checkAddress(address, allow);
        if (!check.allowed) {
          callback(new SsrfBlockedError({ address, hostname, reason: check.reason }), '');
          return;
        }
      }
      const first = addresses[0];
      if (lookupOptions.all) callback(null, addresses);
      else if (first) callback(null, first.address, first.family);
      else callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname }), '');
    });
  };
}
