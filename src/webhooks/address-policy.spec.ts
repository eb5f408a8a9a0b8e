import { describe, expect, it } from '@jest/globals';
import { webhookUrlProblem } from './dto/webhook-endpoint.dto.js';
import { refusalOf } from './address-policy.js';

/**
 * Where webhooks may go, decided by the address alone: a pure function, tested
 * over addresses (never by sending anything anywhere).
 */
describe('refusalOf: the addresses webhooks may not reach', () => {
  it.each([
    // IPv4, every range refused, at both ends where it matters
    ['0.0.0.0', 'unspecified'],
    ['0.255.255.255', 'unspecified'],
    ['10.0.0.0', 'private'],
    ['10.255.255.255', 'private'],
    ['100.64.0.0', 'shared (CGNAT)'],
    ['100.127.255.255', 'shared (CGNAT)'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['169.254.0.1', 'link-local'],
    ['169.254.169.254', 'link-local'], // the clouds' metadata service
    ['172.16.0.0', 'private'],
    ['172.31.255.255', 'private'],
    ['192.0.0.8', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['192.88.99.1', 'reserved'],
    ['192.168.0.1', 'private'],
    ['192.168.255.255', 'private'],
    ['198.18.0.1', 'benchmarking'],
    ['198.19.255.255', 'benchmarking'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.255', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    // IPv6
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['::7f00:1', 'reserved'], // IPv4-compatible, deprecated
    ['64:ff9b:1::1', 'private'],
    ['100::1', 'reserved'],
    ['2001::1', 'reserved'], // Teredo
    ['2001:2::1', 'reserved'], // benchmarking, within the IETF block
    ['2001:db8::1', 'documentation'],
    ['3fff::1', 'documentation'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fec0::1', 'private'],
    ['ff02::1', 'multicast'],
    ['::2', 'reserved'], // outside global unicast (2000::/3)
    ['4000::1', 'reserved'],
    // IPv6 forms of IPv4 addresses, judged as the IPv4 address they carry
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::a00:1', 'private'],
    ['2002:7f00:1::1', 'loopback'], // 6to4
    ['2002:c0a8:101::', 'private'],
    // not addresses at all
    ['localhost', 'not an IP address'],
    ['example.com', 'not an IP address'],
    ['', 'not an IP address'],
  ])('%s: %s', (address, reason) => {
    expect(refusalOf(address)).toBe(reason);
  });

  it.each([
    '1.1.1.1',
    '8.8.8.8',
    '100.63.255.255', // just below the shared range
    '100.128.0.0', // just above it
    '172.15.255.255',
    '172.32.0.0',
    '192.169.0.1',
    '198.17.255.255',
    '198.20.0.0',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2a00:1450:4001:82b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808', // NAT64 of 8.8.8.8
    '2002:808:808::1', // 6to4 of 8.8.8.8
  ])('%s: allowed', (address) => {
    expect(refusalOf(address)).toBeUndefined();
  });

  // The odd spellings of loopback a client may send: the URL parser turns each into
  // the address it means, and that address is judged.
  it.each([
    ['http://0/', 'unspecified'],
    ['http://2130706433/', 'loopback'],
    ['http://0x7f.1/', 'loopback'],
    ['http://0x7f000001/', 'loopback'],
    ['http://0177.0.0.1/', 'loopback'],
    ['http://127.1/', 'loopback'],
    ['http://127.0.1/', 'loopback'],
    ['http://[::ffff:127.0.0.1]/', 'loopback'],
    ['http://[0:0:0:0:0:ffff:7f00:1]/', 'loopback'],
    ['http://[::1]:3000/', 'loopback'],
    ['http://10.0.0.1:5432/', 'private'],
  ])('%s, as a URL parser reads it: %s', (url, reason) => {
    expect(webhookUrlProblem(url)).toBeUndefined(); // well formed: the address decides
    expect(refusalOf(new URL(url).hostname)).toBe(reason);
  });
});

describe('webhookUrlProblem: a URL as written, or a 400', () => {
  it.each([
    'HTTP://127.0.0.1/',
    'Https://127.0.0.1/',
    ' http://127.0.0.1/',
    '\thttp://127.0.0.1/',
    'http://127.0.0.1/ ',
    'http:/127.0.0.1:3391',
    'http:127.0.0.1:3391',
    'http:\\\\127.0.0.1\\hooks',
    'http://127.0.0.1\\hooks',
    'http:///nohost',
    'http://',
    'ftp://127.0.0.1/',
    'http://user:pw@127.0.0.1/',
    'http://127.0.0.1/\u0000',
    'http://[::1/',
    `http://127.0.0.1/${'x'.repeat(2040)}`,
  ])('%j', (url) => {
    expect(webhookUrlProblem(url)).toEqual(expect.any(String));
  });

  it.each(['http://127.0.0.1:3391/hooks', 'https://example.com/webhooks?x=1', 'http://[::1]/'])(
    'accepts %s',
    (url) => {
      expect(webhookUrlProblem(url)).toBeUndefined();
    },
  );
});
