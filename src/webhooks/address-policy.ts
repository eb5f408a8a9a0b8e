import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * Where webhooks may go: public unicast addresses only (the Standard Webhooks
 * guidance, and what Svix does by default). A merchant chooses the URL, so a URL
 * that reaches inside the network the service runs in (its database, a metadata
 * service, an admin port) would make the dispatcher a scanner and a proxy for
 * anyone with an API key. Pure: an address in, a verdict out.
 */

/** Why an address is refused, in the words a delivery's error or a 400 shows. */
export type Refusal =
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'shared (CGNAT)'
  | 'multicast'
  | 'unspecified'
  | 'documentation'
  | 'benchmarking'
  | 'reserved'
  | 'not an IP address';

/** The ranges refused, IPv4 and IPv6, each under its reason (IANA's special-purpose registries). */
const RANGES: Array<[Refusal, 'ipv4' | 'ipv6', string, number]> = [
  ['unspecified', 'ipv4', '0.0.0.0', 8], // "this network"
  ['private', 'ipv4', '10.0.0.0', 8],
  ['shared (CGNAT)', 'ipv4', '100.64.0.0', 10],
  ['loopback', 'ipv4', '127.0.0.0', 8],
  ['link-local', 'ipv4', '169.254.0.0', 16],
  ['private', 'ipv4', '172.16.0.0', 12],
  ['reserved', 'ipv4', '192.0.0.0', 24], // IETF protocol assignments
  ['documentation', 'ipv4', '192.0.2.0', 24],
  ['reserved', 'ipv4', '192.88.99.0', 24], // 6to4 relay anycast
  ['private', 'ipv4', '192.168.0.0', 16],
  ['benchmarking', 'ipv4', '198.18.0.0', 15],
  ['documentation', 'ipv4', '198.51.100.0', 24],
  ['documentation', 'ipv4', '203.0.113.0', 24],
  ['multicast', 'ipv4', '224.0.0.0', 4],
  ['reserved', 'ipv4', '240.0.0.0', 4], // and 255.255.255.255, broadcast
  ['unspecified', 'ipv6', '::', 128],
  ['loopback', 'ipv6', '::1', 128],
  ['reserved', 'ipv6', '::', 96], // IPv4-compatible, deprecated
  ['private', 'ipv6', '64:ff9b:1::', 48], // local-use NAT64
  ['reserved', 'ipv6', '100::', 64], // discard-only
  ['reserved', 'ipv6', '2001::', 23], // IETF protocol assignments: Teredo, ORCHID, ...
  ['documentation', 'ipv6', '2001:db8::', 32],
  ['documentation', 'ipv6', '3fff::', 20],
  ['private', 'ipv6', 'fc00::', 7], // unique-local
  ['link-local', 'ipv6', 'fe80::', 10],
  ['private', 'ipv6', 'fec0::', 10], // site-local, deprecated
  ['multicast', 'ipv6', 'ff00::', 8],
];

const LISTS = new Map<Refusal, BlockList>();
for (const [reason, family, network, prefix] of RANGES) {
  if (!LISTS.has(reason)) LISTS.set(reason, new BlockList());
  LISTS.get(reason)!.addSubnet(network, prefix, family);
}
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet('2000::', 3, 'ipv6');

/**
 * Why `address` (an IP address, as a resolver or a URL parser gives it) may not be
 * sent to, or undefined when it may. An IPv6 address that carries an IPv4 one
 * (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged
 * by the IPv4 address it carries: `::ffff:127.0.0.1` is loopback.
 */
export function refusalOf(address: string): Refusal | undefined {
  const ip = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(ip)) return refusalAmong(ip, 'ipv4');
  if (!isIPv6(ip)) return 'not an IP address';
  const bytes = ipv6Bytes(ip);
  const carried = carriedIPv4(bytes);
  if (carried) return refusalAmong(carried, 'ipv4');
  const refusal = refusalAmong(ip, 'ipv6');
  if (refusal) return refusal;
  return GLOBAL_UNICAST.check(ip, 'ipv6') ? undefined : 'reserved';
}

function refusalAmong(ip: string, family: 'ipv4' | 'ipv6'): Refusal | undefined {
  for (const [reason, list] of LISTS) if (list.check(ip, family)) return reason;
  return undefined;
}

/** The IPv4 address an IPv6 one carries by one of the three standard embeddings, if any. */
function carriedIPv4(b: Uint8Array): string | undefined {
  const zero = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  const dotted = (at: number) => Array.from(b.subarray(at, at + 4)).join('.');
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return dotted(12); // ::ffff:a.b.c.d
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) {
    return dotted(12); // 64:ff9b::a.b.c.d, NAT64
  }
  if (b[0] === 0x20 && b[1] === 0x02) return dotted(2); // 2002:aabb:ccdd::, 6to4
  return undefined;
}

/** The 16 bytes of a valid IPv6 address (with `::`, and a dotted IPv4 tail). */
function ipv6Bytes(ip: string): Uint8Array {
  const address = ip.split('%')[0]; // a zone index (fe80::1%eth0) says nothing of the address
  const [head, tail = ''] = address.split('::');
  const words = (part: string) => (part ? part.split(':') : []);
  const groups = (parts: string[]) =>
    parts.flatMap((p) =>
      p.includes('.')
        ? (() => {
            const [a, b, c, d] = p.split('.').map(Number);
            return [(a << 8) | b, (c << 8) | d];
          })()
        : [parseInt(p, 16)],
    );
  const left = groups(words(head));
  const right = groups(words(tail));
  const all = address.includes('::')
    ? [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
    : left;
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}
