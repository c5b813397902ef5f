import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../src/config/config-error.js';
import { checkAddress, classifyAddress, type AddressClass } from '../src/transport/ssrf/address-classifier.js';
import { cidrContains, parseCidrList } from '../src/transport/ssrf/cidr.js';

// Pure functions only: nothing here opens a socket, so the public examples are never contacted.
const CASES: ReadonlyArray<readonly [string, AddressClass]> = [
  // 0.0.0.0/8
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['0.255.255.255', 'unspecified'],
  ['1.0.0.0', 'public'],
  // 10.0.0.0/8
  ['9.255.255.255', 'public'],
  ['10.0.0.0', 'private'],
  ['10.0.0.5', 'private'],
  ['10.255.255.255', 'private'],
  ['11.0.0.0', 'public'],
  // 100.64.0.0/10
  ['100.63.255.255', 'public'],
  ['100.64.0.0', 'cgnat'],
  ['100.100.100.200', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.0', 'public'],
  // 127.0.0.0/8
  ['126.255.255.255', 'public'],
  ['127.0.0.0', 'loopback'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['128.0.0.0', 'public'],
  // 169.254.0.0/16
  ['169.253.255.255', 'public'],
  ['169.254.0.0', 'link_local'],
  ['169.254.169.254', 'link_local'],
  ['169.254.255.255', 'link_local'],
  ['169.255.0.0', 'public'],
  // 172.16.0.0/12
  ['172.15.255.255', 'public'],
  ['172.16.0.0', 'private'],
  ['172.20.1.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  // 192.0.0.0/24 and 192.0.2.0/24
  ['191.255.255.255', 'public'],
  ['192.0.0.0', 'reserved'],
  ['192.0.0.255', 'reserved'],
  ['192.0.1.0', 'public'],
  ['192.0.2.0', 'reserved'],
  ['192.0.2.123', 'reserved'],
  ['192.0.2.255', 'reserved'],
  ['192.0.3.0', 'public'],
  // 192.88.99.0/24
  ['192.88.99.1', 'reserved'],
  // 192.168.0.0/16
  ['192.167.255.255', 'public'],
  ['192.168.0.0', 'private'],
  ['192.168.1.1', 'private'],
  ['192.168.255.255', 'private'],
  ['192.169.0.0', 'public'],
  // 198.18.0.0/15
  ['198.17.255.255', 'public'],
  ['198.18.0.0', 'reserved'],
  ['198.19.255.255', 'reserved'],
  ['198.20.0.0', 'public'],
  // 198.51.100.0/24
  ['198.51.99.255', 'public'],
  ['198.51.100.0', 'reserved'],
  ['198.51.100.255', 'reserved'],
  ['198.51.101.0', 'public'],
  // 203.0.113.0/24
  ['203.0.112.255', 'public'],
  ['203.0.113.0', 'reserved'],
  ['203.0.113.255', 'reserved'],
  ['203.0.114.0', 'public'],
  // 224.0.0.0/4
  ['223.255.255.255', 'public'],
  ['224.0.0.0', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['239.255.255.255', 'multicast'],
  // 240.0.0.0/4 and the limited broadcast address
  ['240.0.0.0', 'reserved'],
  ['250.1.2.3', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'reserved'],
  // Public IPv4
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.215.14', 'public'],

  // IPv6 special addresses
  ['::', 'unspecified'],
  ['0:0:0:0:0:0:0:0', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['::2', 'reserved'],
  ['::127.0.0.1', 'reserved'],
  // fe80::/10
  ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fe80::', 'link_local'],
  ['fe80::1', 'link_local'],
  ['fe80::1%eth0', 'link_local'],
  ['FE80::ABCD', 'link_local'],
  ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link_local'],
  ['fec0::1', 'reserved'],
  // fc00::/7
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fc00::', 'unique_local'],
  ['fd00:ec2::254', 'unique_local'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique_local'],
  ['fe00::', 'reserved'],
  // ff00::/8
  ['ff00::', 'multicast'],
  ['ff02::1', 'multicast'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
  // 2001:db8::/32
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'public'],
  ['2001:db8::', 'reserved'],
  ['2001:db8::1', 'reserved'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['2001:db9::', 'public'],
  // 100::/64
  ['100::', 'reserved'],
  ['100::ffff:ffff:ffff:ffff', 'reserved'],
  ['100:0:0:1::', 'reserved'],
  // 2001::/23 (IETF assignments, includes Teredo) and 3fff::/20 (documentation)
  ['2001::1', 'reserved'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['2001:200::1', 'public'],
  ['3fff::1', 'reserved'],
  ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['3fff:1000::', 'public'],
  // Outside 2000::/3
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['4000::1', 'reserved'],
  // Public IPv6
  ['2000::', 'public'],
  ['2606:4700::1111', 'public'],
  ['2001:4860:4860::8888', 'public'],
  ['2a00:1450:4001::1', 'public'],
  ['2c0f:fb50:4003::1', 'public'],

  // IPv4-mapped IPv6 (::ffff:0:0/96) is its IPv4 address, in either notation
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
  ['::FFFF:10.0.0.5', 'private'],
  ['::ffff:169.254.169.254', 'link_local'],
  ['::ffff:a9fe:a9fe', 'link_local'],
  ['::ffff:100.64.0.1', 'cgnat'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:224.0.0.1', 'multicast'],
  ['::ffff:255.255.255.255', 'reserved'],
  ['::ffff:8.8.8.8', 'public'],
  ['::fffe:7f00:1', 'reserved'],
  // NAT64 (64:ff9b::/96) is the IPv4 address it embeds
  ['64:ff9b::127.0.0.1', 'loopback'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a00:5', 'private'],
  ['64:ff9b::c0a8:101', 'private'],
  ['64:ff9b::a9fe:a9fe', 'link_local'],
  ['64:ff9b::0.0.0.0', 'unspecified'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['64:ff9b::808:808', 'public'],
  ['64:ff9b:1::a00:5', 'reserved'],
  // 6to4 (2002::/16) is the IPv4 address in bits 16-47
  ['2002:7f00:1::1', 'loopback'],
  ['2002:a9fe:a9fe::', 'link_local'],
  ['2002:808:808::1', 'public'],
];

test('classifyAddress puts every range boundary in the right class', () => {
  const wrong = CASES.filter(([ip, expected]) => classifyAddress(ip) !== expected).map(
    ([ip, expected]) => `${ip}: expected ${expected}, got ${classifyAddress(ip)}`,
  );
  assert.deepEqual(wrong, []);
});

test('classifyAddress throws TypeError for anything that is not a bare IP literal', () => {
  for (const bad of ['', 'localhost', 'example.com', '[::1]', '127.1', '2130706433', '0x7f.0.0.1', '010.0.0.1', '1.2.3.4.5', '256.0.0.1', '1::2::3', '127.0.0.1/32', ' 127.0.0.1']) {
    assert.throws(() => classifyAddress(bad), TypeError, bad);
  }
});

test('checkAddress allows public addresses with an empty allow list', () => {
  assert.deepEqual(checkAddress('8.8.8.8', []), { allowed: true });
  assert.deepEqual(checkAddress('2606:4700::1111', []), { allowed: true });
  assert.deepEqual(checkAddress('::ffff:8.8.8.8', []), { allowed: true });
});

test('checkAddress refuses non-public addresses with a reason naming the address, class and setting', () => {
  assert.deepEqual(checkAddress('10.0.0.5', []), {
    allowed: false,
    reason: 'address 10.0.0.5 is private (RFC 1918); allow it with HOOKRELAY_SSRF_ALLOW',
  });
  const metadata = checkAddress('169.254.169.254', []);
  assert.equal(metadata.allowed, false);
  assert.match(!metadata.allowed ? metadata.reason : '', /^address 169\.254\.169\.254 is link-local .*HOOKRELAY_SSRF_ALLOW$/);
  const nat64 = checkAddress('64:ff9b::a00:5', []);
  assert.match(!nat64.allowed ? nat64.reason : '', /private .*embeds 10\.0\.0\.5 through the NAT64 prefix/);
  const garbage = checkAddress('not-an-ip', []);
  assert.deepEqual(garbage, { allowed: false, reason: '"not-an-ip" is not an IP address' });
});

test('checkAddress lets the allow list open non-public addresses, and only those inside it', () => {
  const allow = parseCidrList('127.0.0.1/32,::1/128,10.0.0.0/8', 'HOOKRELAY_SSRF_ALLOW');
  for (const ip of ['127.0.0.1', '::1', '10.0.0.0', '10.1.2.3', '10.255.255.255', '::ffff:127.0.0.1', '::ffff:10.9.9.9']) {
    assert.deepEqual(checkAddress(ip, allow), { allowed: true }, ip);
  }
  for (const ip of ['127.0.0.2', '127.255.255.255', '100.64.0.1', '192.168.1.1', '::2', 'fe80::1', '169.254.169.254']) {
    assert.equal(checkAddress(ip, allow).allowed, false, ip);
  }
});

test('an allow entry written as IPv4-mapped IPv6 matches the IPv4 address, and the other way round', () => {
  const mapped = parseCidrList('::ffff:192.168.0.0/112', 'X');
  assert.deepEqual(mapped, parseCidrList('192.168.0.0/16', 'X'));
  assert.equal(checkAddress('192.168.4.4', mapped).allowed, true);
  assert.equal(checkAddress('::ffff:192.168.4.4', parseCidrList('192.168.4.4', 'X')).allowed, true);
  // A wide IPv6 network does not open IPv4 space through the mapped range.
  assert.equal(checkAddress('::ffff:10.0.0.1', parseCidrList('::/0', 'X')).allowed, false);
  assert.equal(checkAddress('fd00::1', parseCidrList('::/0', 'X')).allowed, true);
});

test('cidrContains checks prefix boundaries and never matches across families', () => {
  const [v4] = parseCidrList('172.16.0.0/12', 'X');
  const [v6] = parseCidrList('fe80::/10', 'X');
  assert.ok(v4 && v6);
  assert.equal(cidrContains(v4, '172.16.0.0'), true);
  assert.equal(cidrContains(v4, '172.31.255.255'), true);
  assert.equal(cidrContains(v4, '172.32.0.0'), false);
  assert.equal(cidrContains(v4, '172.15.255.255'), false);
  assert.equal(cidrContains(v4, '::ffff:172.20.0.1'), true);
  assert.equal(cidrContains(v4, 'garbage'), false);
  assert.equal(cidrContains(v6, 'febf::1'), true);
  assert.equal(cidrContains(v6, 'fec0::1'), false);
  assert.equal(cidrContains(v6, 'fe80::1%eth0'), true);
  assert.equal(cidrContains(v6, '172.16.0.1'), false);
  const [everything] = parseCidrList('0.0.0.0/0', 'X');
  assert.ok(everything);
  assert.equal(cidrContains(everything, '255.255.255.255'), true);
  assert.equal(cidrContains(everything, '::1'), false);
});

test('parseCidrList parses lists, bare addresses and whitespace', () => {
  assert.deepEqual(parseCidrList('', 'X'), []);
  assert.deepEqual(parseCidrList('   ', 'X'), []);
  assert.deepEqual(parseCidrList('127.0.0.1/32,::1/128,10.0.0.0/8', 'X'), [
    { family: 4, network: 0x7f000001n, prefix: 32 },
    { family: 6, network: 1n, prefix: 128 },
    { family: 4, network: 0x0a000000n, prefix: 8 },
  ]);
  assert.deepEqual(parseCidrList(' 127.0.0.1 , ::1 ,\t192.168.0.0/16 ', 'X'), [
    { family: 4, network: 0x7f000001n, prefix: 32 },
    { family: 6, network: 1n, prefix: 128 },
    { family: 4, network: 0xc0a80000n, prefix: 16 },
  ]);
  assert.deepEqual(parseCidrList('FD00::/8, 0.0.0.0/0, ::/0', 'X'), [
    { family: 6, network: 0xfdn << 120n, prefix: 8 },
    { family: 4, network: 0n, prefix: 0 },
    { family: 6, network: 0n, prefix: 0 },
  ]);
});

test('parseCidrList throws ConfigError naming the setting and the bad entry', () => {
  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ['10.0.0.300/8', /"10\.0\.0\.300\/8" is not an IPv4 or IPv6 address/],
    ['localhost', /"localhost" is not an IPv4 or IPv6 address/],
    ['127.0.0.1/33', /"127\.0\.0\.1\/33" has prefix length "33"/],
    ['::1/129', /"::1\/129" has prefix length "129"/],
    ['10.0.0.0/-1', /prefix length "-1"/],
    ['10.0.0.0/', /prefix length ""/],
    ['10.0.0.0/8/8', /more than one "\/"/],
    ['10.0.0.5/8', /"10\.0\.0\.5\/8" has host bits set .*did you mean 10\.0\.0\.0\/8\?/],
    ['fe80::1/10', /"fe80::1\/10" has host bits set/],
    ['fe80::1%eth0', /zone/],
    ['127.0.0.1/32,,::1', /entry 2 of .* is empty/],
    ['127.0.0.1/32,', /entry 2 of .* is empty/],
    ['127.0.0.1/32, 10.0.0.0/8, nope', /entry 3: "nope"/],
  ];
  for (const [raw, message] of bad) {
    assert.throws(
      () => parseCidrList(raw, 'HOOKRELAY_SSRF_ALLOW'),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, raw);
        assert.equal(error.setting, 'HOOKRELAY_SSRF_ALLOW');
        assert.match(error.message, /^Invalid setting HOOKRELAY_SSRF_ALLOW: /, raw);
        assert.match(error.message, message, raw);
        return true;
      },
    );
  }
});
