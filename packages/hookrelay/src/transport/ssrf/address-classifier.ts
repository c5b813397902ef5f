import { cidrContains, formatIpv4, parseCidr, parseIpAddress, type Cidr, type IpAddress } from './cidr.js';

/**
 * What kind of network an address belongs to. Only 'public' may be delivered to without an explicit
 * allow-list entry; documentation, benchmarking, broadcast and unallocated space are all 'reserved'.
 */
export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link_local'
  | 'cgnat'
  | 'unique_local'
  | 'multicast'
  | 'unspecified'
  | 'reserved';

export type AddressCheck = { allowed: true } | { allowed: false; reason: string };

const ALLOW_SETTING = 'HOOKRELAY_SSRF_ALLOW';

interface Verdict {
  class: AddressClass;
  /** Completes "address X is ..." in the refusal message. */
  label: string;
}

interface Range extends Verdict {
  cidr: Cidr;
}

/** Which 32 bits of an IPv6 address carry an IPv4 address the packet may end up at. */
interface EmbeddingRange {
  cidr: Cidr;
  name: string;
  shift: bigint;
}

const range = (cidr: string, cls: AddressClass, label: string): Range => ({ cidr: parseCidr(cidr), class: cls, label });

const DOCUMENTATION_V4 = 'reserved for documentation (RFC 5737)';
const PRIVATE_V4 = 'private (RFC 1918)';

// First match wins, so a range must come before any wider range that contains it.
const IPV4_RANGES: readonly Range[] = [
  range('0.0.0.0/8', 'unspecified', 'unspecified ("this network", RFC 1122)'),
  range('10.0.0.0/8', 'private', PRIVATE_V4),
  range('100.64.0.0/10', 'cgnat', 'carrier-grade NAT shared space (RFC 6598)'),
  range('127.0.0.0/8', 'loopback', 'loopback (RFC 1122)'),
  range('169.254.0.0/16', 'link_local', 'link-local (RFC 3927, home of cloud metadata services such as 169.254.169.254)'),
  range('172.16.0.0/12', 'private', PRIVATE_V4),
  range('192.0.0.0/24', 'reserved', 'reserved for IETF protocol assignments (RFC 6890)'),
  range('192.0.2.0/24', 'reserved', DOCUMENTATION_V4),
  range('192.88.99.0/24', 'reserved', 'reserved (deprecated 6to4 relay anycast, RFC 7526)'),
  range('192.168.0.0/16', 'private', PRIVATE_V4),
  range('198.18.0.0/15', 'reserved', 'reserved for benchmarking (RFC 2544)'),
  range('198.51.100.0/24', 'reserved', DOCUMENTATION_V4),
  range('203.0.113.0/24', 'reserved', DOCUMENTATION_V4),
  range('224.0.0.0/4', 'multicast', 'multicast (RFC 5771)'),
  range('255.255.255.255/32', 'reserved', 'the limited broadcast address (RFC 919)'),
  range('240.0.0.0/4', 'reserved', 'reserved for future use (RFC 1112)'),
];

// Traffic to these reaches the embedded IPv4 host through a translator or relay, so that host decides.
const IPV4_EMBEDDING_RANGES: readonly EmbeddingRange[] = [
  { cidr: parseCidr('64:ff9b::/96'), name: 'the NAT64 prefix 64:ff9b::/96', shift: 0n },
  { cidr: parseCidr('2002::/16'), name: 'the 6to4 prefix 2002::/16', shift: 80n },
];

const IPV6_RANGES: readonly Range[] = [
  range('::/128', 'unspecified', 'unspecified (RFC 4291)'),
  range('::1/128', 'loopback', 'loopback (RFC 4291)'),
  range('::/96', 'reserved', 'reserved (deprecated IPv4-compatible IPv6, RFC 4291)'),
  range('64:ff9b:1::/48', 'reserved', 'reserved for local-use NAT64 (RFC 8215)'),
  range('100::/64', 'reserved', 'reserved as discard-only (RFC 6666)'),
  // Includes Teredo (2001::/32), whose relays could carry the packet on to an IPv4 host.
  range('2001::/23', 'reserved', 'reserved for IETF protocol assignments (RFC 2928)'),
  range('2001:db8::/32', 'reserved', 'reserved for documentation (RFC 3849)'),
  range('3fff::/20', 'reserved', 'reserved for documentation (RFC 9637)'),
  range('fc00::/7', 'unique_local', 'unique local (RFC 4193)'),
  range('fe80::/10', 'link_local', 'link-local (RFC 4291)'),
  range('fec0::/10', 'reserved', 'reserved (deprecated site-local, RFC 3879)'),
  range('ff00::/8', 'multicast', 'multicast (RFC 4291)'),
];

// Everything outside global unicast is unallocated or special, so it is refused unless allowed.
const IPV6_GLOBAL_UNICAST = parseCidr('2000::/3');

const PUBLIC: Verdict = { class: 'public', label: 'public' };

function classify(address: IpAddress): Verdict {
  if (address.family === 4) {
    return IPV4_RANGES.find((r) => cidrContains(r.cidr, address)) ?? PUBLIC;
  }
  const embedding = IPV4_EMBEDDING_RANGES.find((r) => cidrContains(r.cidr, address));
  if (embedding) {
    const embedded: IpAddress = { family: 4, value: (address.value >> embedding.shift) & 0xffffffffn };
    const inner = classify(embedded);
    if (inner.class === 'public') return PUBLIC;
    return { class: inner.class, label: `${inner.label}: it embeds ${formatIpv4(embedded.value)} through ${embedding.name}` };
  }
  const found = IPV6_RANGES.find((r) => cidrContains(r.cidr, address));
  if (found) return found;
  if (cidrContains(IPV6_GLOBAL_UNICAST, address)) return PUBLIC;
  return { class: 'reserved', label: 'reserved (outside the IPv6 global unicast range 2000::/3)' };
}

/**
 * Classifies an IP address literal (IPv4 dotted quad or IPv6, optionally with a %zone; no brackets,
 * no hostnames). Throws TypeError for anything else: a caller passing a hostname here has a bug that
 * a silent 'reserved' would hide. IPv4-mapped IPv6 is classified as its IPv4 address, and NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16) addresses as the IPv4 address they embed.
 */
export function classifyAddress(ip: string): AddressClass {
  const address = parseIpAddress(ip);
  if (address === null) throw new TypeError(`"${ip}" is not an IP address`);
  return classify(address).class;
}

/**
 * Whether a delivery may connect to the address: it is public, or the operator allowed it. Never
 * throws; anything that is not an IP address is refused. Allow entries match the address as written
 * (mapped IPv6 being IPv4): allowing 10.0.0.0/8 does not open 64:ff9b::a00:5, which needs its own entry.
 */
export function checkAddress(ip: string, allow: readonly Cidr[]): AddressCheck {
  const address = parseIpAddress(ip);
  if (address === null) return { allowed: false, reason: `"${ip}" is not an IP address` };
  const verdict = classify(address);
  if (verdict.class === 'public' || allow.some((cidr) => cidrContains(cidr, address))) return { allowed: true };
  return { allowed: false, reason: `address ${ip} is ${verdict.label}; allow it with ${ALLOW_SETTING}` };
}
