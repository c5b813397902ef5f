import { isIP } from 'node:net';
import { ConfigError } from '../../config/config-error.js';

/** An IP address as a number. IPv4-mapped IPv6 (::ffff:a.b.c.d) is always stored as its IPv4 address. */
export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

/** A network: the address with its host bits cleared, and the prefix length (0-32 or 0-128). */
export interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;

/**
 * Parses a bare IP address, or returns null. Validation is left to node:net's isIP so only canonical
 * dotted-quad IPv4 is accepted: the lenient forms (0x7f.1, 017.0.0.1, 2130706433) that some resolvers
 * expand are refused rather than silently reinterpreted. An IPv6 zone (%eth0) does not change which
 * range an address is in, so it is dropped.
 */
export function parseIpAddress(text: string): IpAddress | null {
  const family = isIP(text);
  if (family === 4) return { family: 4, value: parseIpv4(text) };
  if (family !== 6) return null;
  const value = parseIpv6(text.split('%')[0]!);
  // Mapped addresses reach the same IPv4 host, so every check must see the IPv4 address.
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

function parseIpv4(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(octet), 0n);
}

function parseIpv6(text: string): bigint {
  let groups = text.toLowerCase();
  const lastColon = groups.lastIndexOf(':');
  const tail = groups.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIpv4(tail);
    groups = `${groups.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = groups.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  return [...headGroups, ...zeros, ...restGroups].reduce((acc, group) => (acc << 16n) | BigInt(`0x${group}`), 0n);
}

/** Whether the address lies in the network. An address that does not parse is in no network. */
export function cidrContains(cidr: Cidr, ip: string | IpAddress): boolean {
  const address = typeof ip === 'string' ? parseIpAddress(ip) : ip;
  if (address === null || address.family !== cidr.family) return false;
  return (address.value & prefixMask(cidr.family, cidr.prefix)) === cidr.network;
}

function prefixMask(family: 4 | 6, prefix: number): bigint {
  const bits = BigInt(BITS[family]);
  return ((1n << BigInt(prefix)) - 1n) << (bits - BigInt(prefix));
}

/**
 * Parses one `address/prefix` or bare address (a single host). Throws TypeError with a message fit for
 * an operator. Host bits must be clear: "10.0.0.5/8" is more likely a typo than a wish to allow 10/8.
 * A mapped network (::ffff:10.0.0.0/104) becomes its IPv4 network (10.0.0.0/8); an IPv6 network wider
 * than /96 never matches IPv4 addresses, so an allow list only reaches IPv4 hosts it names in IPv4 terms.
 */
export function parseCidr(text: string): Cidr {
  const [addressText = '', prefixText, extra] = text.split('/');
  if (extra !== undefined) throw new TypeError(`"${text}" has more than one "/"`);
  if (addressText.includes('%')) throw new TypeError(`"${text}" has an IPv6 zone (%...), which a CIDR cannot have`);
  const family = isIP(addressText);
  if (family !== 4 && family !== 6) throw new TypeError(`"${text}" is not an IPv4 or IPv6 address or CIDR`);
  const bits = BITS[family];
  let prefix: number = bits;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
      throw new TypeError(`"${text}" has prefix length "${prefixText}"; expected 0 to ${bits}`);
    }
    prefix = Number(prefixText);
  }
  const value = family === 4 ? parseIpv4(addressText) : parseIpv6(addressText);
  const mask = prefixMask(family, prefix);
  if ((value & mask) !== value) {
    const network = family === 4 ? formatIpv4(value & mask) : null;
    const hint = network === null ? '' : `; did you mean ${network}/${prefix}?`;
    throw new TypeError(`"${text}" has host bits set beyond /${prefix}${hint}`);
  }
  if (family === 6 && prefix >= 96 && value >> 32n === 0xffffn) {
    return { family: 4, network: value & 0xffffffffn, prefix: prefix - 96 };
  }
  return { family, network: value, prefix };
}

/** Dotted-quad text of an IPv4 address held as a number. */
export function formatIpv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => ((value >> shift) & 0xffn).toString()).join('.');
}

/** Parses a comma-separated CIDR list setting such as "127.0.0.1/32, ::1/128, 10.0.0.0/8". */
export function parseCidrList(raw: string, setting: string): Cidr[] {
  if (raw.trim() === '') return [];
  return raw.split(',').map((entry) => entry.trim()).map((entry, index) => {
    if (entry === '') throw new ConfigError(setting, `entry ${index + 1} of "${raw}" is empty (stray comma?)`);
    try {
      return parseCidr(entry);
    } catch (error) {
      throw new ConfigError(setting, `bad CIDR entry ${index + 1}: ${(error as Error).message}`);
    }
  });
}
